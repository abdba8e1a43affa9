"""The secret box: what it seals opens only with the same key, for the same purpose and user."""

from __future__ import annotations

import base64
import re

import pytest

from keel.core.secret_box import SecretBoxError, seal, sealed_length, unseal

SECRET = b"unit-test-secret-key-that-is-long-enough-42"
OTHER_SECRET = b"another-unit-test-secret-key-long-enough-43"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def sealed(plaintext: str = TOTP_SECRET) -> str:
    return seal(SECRET, plaintext, purpose="totp", user_id=7)


def opened(value: str, *, secret: bytes = SECRET, purpose: str = "totp", user_id: int = 7) -> str:
    return unseal(secret, value, purpose=purpose, user_id=user_id)


class TestRoundTrip:
    @pytest.mark.parametrize("plaintext", [TOTP_SECRET, "", "x", "ünïcødé ✓", "a" * 1000])
    def test_what_is_sealed_opens(self, plaintext: str) -> None:
        assert opened(sealed(plaintext)) == plaintext

    def test_is_versioned_base64url_of_a_known_length(self) -> None:
        value = sealed()
        assert re.fullmatch(r"v1\.[A-Za-z0-9_-]+", value)
        assert len(value) == sealed_length(len(TOTP_SECRET)) == 83

    @pytest.mark.parametrize("size", range(8))
    def test_sealed_length_is_exact_for_every_remainder(self, size: int) -> None:
        assert len(sealed("z" * size)) == sealed_length(size)

    def test_does_not_contain_the_plaintext(self) -> None:
        value = sealed()
        raw = base64.urlsafe_b64decode(value[3:] + "==")
        assert TOTP_SECRET not in value
        assert TOTP_SECRET.encode() not in raw

    def test_a_fresh_nonce_every_time(self) -> None:
        values = {sealed() for _ in range(20)}
        assert len(values) == 20
        assert len({value[3:19] for value in values}) == 20  # the nonce leads


class TestRefusals:
    def test_every_changed_character_is_detected(self) -> None:
        # 31 bytes of plaintext: the last base64 character carries unused bits, which must count too.
        value = sealed("q" * 31)
        for index in range(3, len(value)):
            replacement = "A" if value[index] != "A" else "B"
            with pytest.raises(SecretBoxError):
                opened(value[:index] + replacement + value[index + 1 :])

    def test_a_flipped_bit_in_the_ciphertext_is_detected(self) -> None:
        raw = bytearray(base64.urlsafe_b64decode(sealed()[3:] + "=="))
        for index in (0, 12, len(raw) // 2, len(raw) - 1):  # nonce, ciphertext, tag
            tampered = raw.copy()
            tampered[index] ^= 0x01
            with pytest.raises(SecretBoxError, match="does not open"):
                opened("v1." + base64.urlsafe_b64encode(tampered).rstrip(b"=").decode())

    def test_another_users_row_does_not_open(self) -> None:
        with pytest.raises(SecretBoxError, match="does not open"):
            opened(sealed(), user_id=8)
        with pytest.raises(SecretBoxError, match="does not open"):
            opened(sealed(), user_id=77)  # not a prefix match either

    def test_another_purpose_does_not_open(self) -> None:
        with pytest.raises(SecretBoxError, match="does not open"):
            opened(sealed(), purpose="webauthn")

    def test_another_secret_key_does_not_open(self) -> None:
        with pytest.raises(SecretBoxError, match="does not open"):
            opened(sealed(), secret=OTHER_SECRET)

    def test_each_secret_key_opens_its_own(self) -> None:
        mine = seal(OTHER_SECRET, "mine", purpose="totp", user_id=7)
        assert opened(mine, secret=OTHER_SECRET) == "mine"
        with pytest.raises(SecretBoxError):
            opened(mine)

    def test_swapped_nonces_do_not_open(self) -> None:
        a, b = sealed(), sealed()
        with pytest.raises(SecretBoxError, match="does not open"):
            opened(a[:19] + b[19:])

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "v1.",
            "v1.AAAA",
            "v2." + "A" * 80,
            TOTP_SECRET,
            "v1.abcde",  # a length base64 cannot have
            "v1.é" + "A" * 80,
            "v1.!!!!" + "A" * 80,
        ],
    )
    def test_malformed_values_raise_secret_box_error(self, value: str) -> None:
        with pytest.raises(SecretBoxError):
            opened(value)

    @pytest.mark.parametrize("edit", ["{}\n", " {}", "{}=", "{}==", "{}.", "{}A"])
    def test_other_spellings_of_a_sealed_value_are_refused(self, edit: str) -> None:
        with pytest.raises(SecretBoxError):
            opened(edit.format(sealed()))

    def test_base64_with_plus_and_slash_is_refused(self) -> None:
        value = sealed()
        standard = value.replace("-", "+").replace("_", "/")
        if standard == value:  # no '-' or '_' this time: make one up
            standard = value[:-1] + "+"
        with pytest.raises(SecretBoxError):
            opened(standard)

    @pytest.mark.parametrize("purpose", ["", "to\x00tp"])
    def test_an_unusable_purpose_is_a_programming_error(self, purpose: str) -> None:
        with pytest.raises(ValueError, match="purpose"):
            seal(SECRET, "x", purpose=purpose, user_id=1)
        with pytest.raises(ValueError, match="purpose"):
            unseal(SECRET, sealed(), purpose=purpose, user_id=1)
