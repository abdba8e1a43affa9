"""Recovery codes: random enough, easy to type back, and stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import Counter
from collections.abc import Sequence

import pytest

from keel.core import recovery_codes
from keel.core.recovery_codes import ALPHABET, BITS, generate, hash_code, normalize, verify

SECRET = b"unit-test-secret-key-that-is-long-enough-42"
OTHER_SECRET = b"another-unit-test-secret-key-long-enough-43"
FORMAT = re.compile(rf"[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}")


class TestGenerate:
    def test_ten_codes_by_default_in_two_groups_of_five(self) -> None:
        codes = generate()
        assert len(codes) == 10
        assert all(FORMAT.fullmatch(code) for code in codes), codes

    def test_codes_are_distinct(self) -> None:
        codes = generate(200)
        assert len(set(codes)) == 200

    def test_count(self) -> None:
        assert len(generate(3)) == 3
        assert generate(0) == []

    def test_at_least_50_bits_each(self) -> None:
        assert len(set(ALPHABET)) == len(ALPHABET) == 32
        assert BITS == 10 * math.log2(len(ALPHABET)) >= 50

    def test_the_alphabet_has_no_look_alikes(self) -> None:
        assert set(ALPHABET).isdisjoint("ilou")
        assert ALPHABET.lower() == ALPHABET

    def test_every_symbol_is_used_everywhere(self) -> None:
        # 10,000 characters: a symbol never drawn, or a position always the same, would show.
        codes = [code.replace("-", "") for code in generate(1000)]
        assert set("".join(codes)) == set(ALPHABET)
        for position in range(10):
            assert len({code[position] for code in codes}) == 32
        counts = Counter("".join(codes))
        assert max(counts.values()) < 2 * min(counts.values())

    def test_a_repeated_draw_is_replaced(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class Repeating:
            """Draws aaaaa-aaaaa twice, then bbbbb-bbbbb."""

            draws = iter("a" * 20 + "b" * 10)

            @classmethod
            def choice(cls, alphabet: Sequence[str]) -> str:
                return next(cls.draws)

        monkeypatch.setattr(recovery_codes, "secrets", Repeating)
        assert generate(2) == ["aaaaa-aaaaa", "bbbbb-bbbbb"]


class TestNormalize:
    @pytest.mark.parametrize(
        "typed",
        ["abcde-fghjk", "ABCDE-FGHJK", "abcdefghjk", " abcde fghjk ", "ab-cde-fg-hjk", "AbCdE - fGhJk"],
    )
    def test_case_spaces_and_dashes_do_not_matter(self, typed: str) -> None:
        assert normalize(typed) == "abcdefghjk"

    def test_look_alikes_are_read_as_crockford_intends(self) -> None:
        assert normalize("IiLlO-o0123") == "1111000123"

    @pytest.mark.parametrize(
        "typed",
        [
            "",
            "abcde-fghj",  # 9
            "abcde-fghjkm",  # 11
            "abcde-fghju",  # u is not in the alphabet
            "abcde_fghjk",
            "abcde-fghj\u212a",  # the Kelvin sign lower-cases to k
            "abcde-fghjk\x00",
            "abcdé-fghjk",
            "a" * 10 + " " * 100,
        ],
    )
    def test_what_cannot_be_a_code_is_none(self, typed: str) -> None:
        assert normalize(typed) is None


class TestHash:
    def test_is_hex_sha256_size(self) -> None:
        assert re.fullmatch(r"[0-9a-f]{64}", hash_code(SECRET, "abcde-fghjk"))

    def test_is_keyed_not_a_plain_hash(self) -> None:
        digest = hash_code(SECRET, "abcde-fghjk")
        assert digest not in {hashlib.sha256(code.encode()).hexdigest() for code in ("abcdefghjk", "abcde-fghjk")}
        assert hash_code(OTHER_SECRET, "abcde-fghjk") != digest

    def test_spellings_of_one_code_hash_alike(self) -> None:
        assert hash_code(SECRET, "ABCDE FGHJK") == hash_code(SECRET, "abcde-fghjk") == hash_code(SECRET, "abcdefghjk")

    def test_different_codes_hash_differently(self) -> None:
        codes = generate(50)
        assert len({hash_code(SECRET, code) for code in codes}) == 50

    def test_hashing_a_non_code_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="not a recovery code"):
            hash_code(SECRET, "hunter2")


class TestVerify:
    def test_the_right_code_in_any_spelling(self) -> None:
        code = generate(1)[0]
        stored = hash_code(SECRET, code)
        assert verify(SECRET, code, stored)
        assert verify(SECRET, f"  {code.upper()} ", stored)
        assert verify(SECRET, code.replace("-", ""), stored)

    def test_a_wrong_code_is_refused(self) -> None:
        code, other = generate(2)
        assert not verify(SECRET, other, hash_code(SECRET, code))

    def test_one_character_off_is_refused(self) -> None:
        stored = hash_code(SECRET, "abcde-fghjk")
        assert not verify(SECRET, "abcde-fghjm", stored)

    def test_another_secret_key_is_refused(self) -> None:
        assert not verify(OTHER_SECRET, "abcde-fghjk", hash_code(SECRET, "abcde-fghjk"))

    @pytest.mark.parametrize("code", ["", "abcde", "u" * 10, "١٢٣٤٥-٦٧٨٩٠", "x" * 10_000])
    def test_malformed_codes_are_refused_without_raising(self, code: str) -> None:
        assert not verify(SECRET, code, hash_code(SECRET, "abcde-fghjk"))

    @pytest.mark.parametrize("stored", ["", "not hex", "é" * 64, "\ud800" * 64])
    def test_a_malformed_stored_hash_is_refused_without_raising(self, stored: str) -> None:
        assert not verify(SECRET, "abcde-fghjk", stored)

    def test_the_stored_hash_is_compared_in_constant_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        compared: list[tuple[bytes, bytes]] = []

        def spy(a: bytes, b: bytes) -> bool:
            compared.append((a, b))
            return a == b

        stored = hash_code(SECRET, "abcde-fghjk")
        monkeypatch.setattr(hmac, "compare_digest", spy)
        assert verify(SECRET, "abcde-fghjk", stored)
        assert compared == [(stored.encode(), stored.encode())]
