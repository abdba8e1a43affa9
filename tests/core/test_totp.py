"""TOTP: the codes authenticator apps make, one step of drift either way, each code once, and the
setup URI and QR code."""

from __future__ import annotations

import base64
import hmac
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from keel.core import totp

# RFC 6238 appendix B: the SHA-1 seed is the ASCII "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
STEP = 1_700_000_000 // 30  # a step well after the epoch
T0 = datetime.fromtimestamp(STEP * 30, UTC)  # the first instant of STEP


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def code_of(step: int, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


class TestKnownAnswers:
    @pytest.mark.parametrize(
        ("unix_time", "code"),
        # The RFC's 8-digit SHA-1 values, cut to the last 6 digits as a 6-digit TOTP is.
        [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924")],
    )
    def test_rfc_6238_vectors_match_at_their_step(self, unix_time: int, code: str) -> None:
        step = totp.matching_step(RFC_SECRET, code, now=at(unix_time), last_used_step=None)
        assert step == unix_time // 30

    def test_the_code_of_now_matches_now(self) -> None:
        assert totp.matching_step(SECRET, code_of(STEP), now=T0, last_used_step=None) == STEP

    def test_a_wrong_code_does_not_match(self) -> None:
        nearby = {code_of(step) for step in range(STEP - 1, STEP + 2)}
        wrong = next(code for code in ("000000", "111111", "222222") if code not in nearby)
        assert totp.matching_step(SECRET, wrong, now=T0, last_used_step=None) is None

    def test_another_secrets_code_does_not_match(self) -> None:
        other = totp.new_secret()
        assert code_of(STEP, other) != code_of(STEP)  # so the test below means something
        assert totp.matching_step(SECRET, code_of(STEP, other), now=T0, last_used_step=None) is None


class TestWindow:
    @pytest.mark.parametrize("offset", [-1, 0, 1])
    def test_one_step_either_side_is_accepted(self, offset: int) -> None:
        code = code_of(STEP + offset)
        assert totp.matching_step(SECRET, code, now=T0, last_used_step=None) == STEP + offset

    @pytest.mark.parametrize("offset", [-3, -2, 2, 3])
    def test_two_steps_away_is_refused(self, offset: int) -> None:
        code = code_of(STEP + offset)
        # A code two steps away could equal one within the window by chance; not with this secret.
        assert code not in {code_of(STEP + near) for near in (-1, 0, 1)}
        assert totp.matching_step(SECRET, code, now=T0, last_used_step=None) is None

    def test_at_the_first_instant_of_a_step_the_one_before_last_is_refused(self) -> None:
        assert totp.matching_step(SECRET, code_of(STEP - 1), now=T0, last_used_step=None) == STEP - 1
        assert totp.matching_step(SECRET, code_of(STEP - 2), now=T0, last_used_step=None) is None
        assert totp.matching_step(SECRET, code_of(STEP + 1), now=T0, last_used_step=None) == STEP + 1

    def test_at_the_last_instant_of_a_step_the_window_has_not_moved_yet(self) -> None:
        last = T0 + timedelta(seconds=30, microseconds=-1)
        assert totp.step_at(last) == STEP
        assert totp.matching_step(SECRET, code_of(STEP - 1), now=last, last_used_step=None) == STEP - 1
        assert totp.matching_step(SECRET, code_of(STEP + 2), now=last, last_used_step=None) is None

    def test_one_microsecond_later_it_has(self) -> None:
        next_step = T0 + timedelta(seconds=30)
        assert totp.step_at(next_step) == STEP + 1
        assert totp.matching_step(SECRET, code_of(STEP - 1), now=next_step, last_used_step=None) is None
        assert totp.matching_step(SECRET, code_of(STEP + 2), now=next_step, last_used_step=None) == STEP + 2

    def test_any_time_zone_is_the_same_instant(self) -> None:
        elsewhere = T0.astimezone(timezone(timedelta(hours=-7)))
        assert totp.matching_step(SECRET, code_of(STEP), now=elsewhere, last_used_step=None) == STEP

    def test_a_naive_time_is_refused_rather_than_read_as_local_time(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            totp.matching_step(SECRET, code_of(STEP), now=T0.replace(tzinfo=None), last_used_step=None)

    def test_at_the_epoch_there_is_no_step_before(self) -> None:
        assert totp.matching_step(RFC_SECRET, code_of(0, RFC_SECRET), now=at(0), last_used_step=None) == 0
        assert totp.matching_step(RFC_SECRET, code_of(1, RFC_SECRET), now=at(0), last_used_step=None) == 1


class TestReplay:
    def test_a_used_code_is_refused_the_second_time(self) -> None:
        code = code_of(STEP)
        used = totp.matching_step(SECRET, code, now=T0, last_used_step=None)
        assert used == STEP
        assert totp.matching_step(SECRET, code, now=T0, last_used_step=used) is None
        assert totp.matching_step(SECRET, code, now=T0 + timedelta(seconds=31), last_used_step=used) is None

    def test_an_earlier_steps_code_is_refused_after_a_later_one_was_used(self) -> None:
        used = totp.matching_step(SECRET, code_of(STEP + 1), now=T0, last_used_step=None)
        assert used == STEP + 1
        assert totp.matching_step(SECRET, code_of(STEP), now=T0, last_used_step=used) is None
        assert totp.matching_step(SECRET, code_of(STEP - 1), now=T0, last_used_step=used) is None

    def test_the_next_steps_code_still_works(self) -> None:
        later = T0 + timedelta(seconds=30)
        assert totp.matching_step(SECRET, code_of(STEP + 1), now=later, last_used_step=STEP) == STEP + 1

    def test_a_code_right_for_two_steps_uses_up_the_later(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Two steps with the same code happen once in a million; make them happen here.
        monkeypatch.setattr(pyotp.TOTP, "generate_otp", lambda self, step: "123456" if step != STEP else "654321")
        assert totp.matching_step(SECRET, "123456", now=T0, last_used_step=None) == STEP + 1
        assert totp.matching_step(SECRET, "123456", now=T0, last_used_step=STEP - 1) == STEP + 1
        assert totp.matching_step(SECRET, "123456", now=T0, last_used_step=STEP + 1) is None

    def test_codes_are_compared_in_constant_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        compared: list[tuple[str, str]] = []

        def spy(a: str, b: str) -> bool:
            compared.append((a, b))
            return a == b

        monkeypatch.setattr(hmac, "compare_digest", spy)
        assert totp.matching_step(SECRET, code_of(STEP), now=T0, last_used_step=None) == STEP
        assert len(compared) == 3  # every candidate step, not only up to the match


class TestInput:
    @pytest.mark.parametrize(
        "typed",
        # {0} is the code, {1} to {6} its digits.
        ["{0}", " {0} ", "{1}{2}{3} {4}{5}{6}", "{1} {2} {3} {4} {5} {6}", "\t{0}\n", "{1}{2}{3}\u00a0{4}{5}{6}"],
    )
    def test_spaces_are_ignored(self, typed: str) -> None:
        code = code_of(STEP)
        assert totp.matching_step(SECRET, typed.format(code, *code), now=T0, last_used_step=None) == STEP

    @pytest.mark.parametrize(
        "code",
        [
            "",
            "      ",
            "abcdef",
            "12345a",
            "12345",
            "1234567",
            "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() says yes
            "\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width digits
            "123-456",
            "+12345",
            "12345\x00",
            "¹²³⁴⁵⁶",
            " " * 100 + "123456",
            "1" * 10_000,
        ],
    )
    def test_malformed_input_is_none_without_raising(self, code: str) -> None:
        assert totp.normalize(code) is None
        assert totp.matching_step(SECRET, code, now=T0, last_used_step=None) is None

    def test_a_non_ascii_code_whose_digits_would_match_is_refused(self) -> None:
        code = code_of(STEP)
        arabic = code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        assert int(arabic) == int(code)  # Python reads it as the same number
        assert totp.matching_step(SECRET, arabic, now=T0, last_used_step=None) is None


class TestSecret:
    def test_a_new_secret_is_160_bits_of_base32(self) -> None:
        secret = totp.new_secret()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20

    def test_new_secrets_differ(self) -> None:
        assert len({totp.new_secret() for _ in range(50)}) == 50


class TestProvisioningUri:
    EMAIL = "ada+mfa@example.com"

    def test_label_issuer_and_secret(self) -> None:
        uri = totp.provisioning_uri(SECRET, self.EMAIL)
        parts = urlsplit(uri)
        assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
        # '+' read as a space by some decoders and '@' as a userinfo separator: both escaped.
        assert parts.path == "/Keel:ada%2Bmfa%40example.com"
        assert unquote(parts.path) == "/Keel:" + self.EMAIL
        query = parse_qs(parts.query, strict_parsing=True)
        assert query["secret"] == [SECRET]
        assert query["issuer"] == ["Keel"]
        # The defaults (SHA1, 6 digits, 30 s) are what apps assume; any other value would be stated.
        assert set(query) <= {"secret", "issuer", "algorithm", "digits", "period"}
        assert query.get("algorithm", ["SHA1"]) == ["SHA1"]
        assert query.get("digits", ["6"]) == ["6"]
        assert query.get("period", ["30"]) == ["30"]

    def test_pyotp_reads_it_back_and_makes_the_same_codes(self) -> None:
        parsed = pyotp.parse_uri(totp.provisioning_uri(SECRET, self.EMAIL))
        assert isinstance(parsed, pyotp.TOTP)
        assert (parsed.name, parsed.issuer, parsed.secret) == (self.EMAIL, "Keel", SECRET)
        assert (parsed.digits, parsed.interval) == (6, 30)
        assert totp.matching_step(SECRET, parsed.at(T0), now=T0, last_used_step=None) == STEP


class TestQrSvg:
    def test_is_a_standalone_svg_with_a_path(self) -> None:
        svg = totp.qr_svg(totp.provisioning_uri(totp.new_secret(), "ada+mfa@example.com"))
        assert svg.startswith("<svg ")
        assert "<?xml" not in svg
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        paths = root.findall(".//{http://www.w3.org/2000/svg}path")
        assert any(len(path.get("d", "")) > 100 for path in paths)
        # A whole number of pixels a module, square, with a light background behind the quiet zone.
        assert root.get("width") == root.get("height")
        assert int(root.get("width", "0")) % 4 == 0
        assert any(path.get("fill") == "#fff" for path in paths)

    def test_is_small(self) -> None:
        svg = totp.qr_svg(totp.provisioning_uri(totp.new_secret(), "a.rather.long.address+tag@example.com"))
        assert len(svg) < 8_000

    def test_different_uris_make_different_codes(self) -> None:
        assert totp.qr_svg("otpauth://totp/Keel:a?secret=A") != totp.qr_svg("otpauth://totp/Keel:b?secret=A")
