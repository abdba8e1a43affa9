"""The personal access token's shape: recognisable, self-checking, stored only as a hash."""

from __future__ import annotations

import pytest

from keel.core import personal_token
from keel.core.personal_token import PREFIX, TOKEN_LENGTH, format_scopes, new_token, token_hash, well_formed


def test_a_new_token_is_prefixed_and_checks_itself() -> None:
    token = new_token()
    assert token.startswith(PREFIX)
    assert len(token) == TOKEN_LENGTH == len(PREFIX) + 36
    assert well_formed(token)
    assert new_token() != token


def test_every_single_character_typo_is_caught_by_the_checksum() -> None:
    token = new_token()
    body_start = len(PREFIX)
    for index in range(body_start, len(token)):
        replacement = "a" if token[index] != "a" else "b"
        assert not well_formed(token[:index] + replacement + token[index + 1 :]), index


@pytest.mark.parametrize(
    "value",
    ["", PREFIX, "keel_pat", "ghp_" + "a" * 36, PREFIX + "a" * 35, PREFIX + "a" * 37, PREFIX + "-" * 36],
)
def test_malformed_tokens_are_refused(value: str) -> None:
    assert not well_formed(value)


def test_transposed_random_and_checksum_parts_are_refused() -> None:
    token = new_token()
    body = token[len(PREFIX) :]
    swapped = PREFIX + body[1] + body[0] + body[2:]
    assert body[0] == body[1] or not well_formed(swapped)


def test_only_a_sha256_is_kept() -> None:
    token = new_token()
    digest = token_hash(token)
    assert len(digest) == 64
    assert token not in digest
    assert digest == token_hash(token)


def test_scopes_are_written_in_one_order() -> None:
    assert format_scopes(["todos:write", "profile:read", "todos:read"]) == "profile:read todos:read todos:write"
    assert personal_token.parse_scopes("todos:read posts:read") == {"todos:read", "posts:read"}
