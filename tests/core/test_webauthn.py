"""Passkey ceremonies against a software authenticator: what succeeds, and every way one is refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from webauthn.helpers import decode_credential_public_key

from keel.core import webauthn
from keel.core.errors import InvalidCredential
from keel.core.webauthn import KnownCredential, RelyingParty
from tests.conftest import base_settings
from tests.webauthn_authenticator import (
    AAGUID,
    ExcludedCredentialError,
    NoCredentialError,
    SoftAuthenticator,
    b64url,
    unb64url,
)

ORIGIN = "https://keel.example.com"
USER_ID = 42


@pytest.fixture
def rp(tmp_path: Path) -> RelyingParty:
    settings = base_settings(
        tmp_path,
        public_url=f"{ORIGIN}/",
        webauthn_extra_origins="https://app.keel.example.com, https://keel.example.com",
    )
    return RelyingParty.from_settings(settings)


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    return SoftAuthenticator(origin=ORIGIN)


def register(rp: RelyingParty, authenticator: SoftAuthenticator, **knobs: Any) -> webauthn.NewCredential:
    ceremony = webauthn.registration_options(rp, user_id=USER_ID, user_name="ada@example.com", display_name="ada")
    response = authenticator.create(ceremony.options, **knobs)
    return webauthn.verify_registration(rp, credential=response, challenge=ceremony.challenge)


def sign_in(
    rp: RelyingParty,
    stored: webauthn.NewCredential,
    response: dict[str, Any],
    challenge: str,
    *,
    sign_count: int | None = None,
    discoverable: bool = True,
    user_id: int = USER_ID,
) -> webauthn.VerifiedAssertion:
    assertion = webauthn.parse_assertion(response)
    assert assertion.credential_id == stored.credential_id
    return webauthn.verify_authentication(
        rp,
        assertion=assertion,
        challenge=challenge,
        public_key=stored.public_key,
        sign_count=stored.sign_count if sign_count is None else sign_count,
        user_id=user_id,
        discoverable=discoverable,
    )


def verify_as_the_service_does(
    rp: RelyingParty, stored: webauthn.NewCredential, response: dict[str, Any], challenge: str
) -> None:
    """Read the challenge claimed, find the passkey, verify: each step may refuse."""
    assert webauthn.claimed_challenge(response) == challenge
    assertion = webauthn.parse_assertion(response)
    webauthn.verify_authentication(
        rp,
        assertion=assertion,
        challenge=challenge,
        public_key=stored.public_key,
        sign_count=0,
        user_id=USER_ID,
        discoverable=True,
    )


class TestRelyingParty:
    def test_its_id_is_the_public_urls_host_and_its_origins_add_the_extra_ones(self, rp: RelyingParty) -> None:
        assert rp.id == "keel.example.com"
        assert rp.name == "Keel"
        assert rp.origins == (ORIGIN, "https://app.keel.example.com")  # the public one not twice

    def test_a_port_stays_in_the_origin_but_not_in_the_id(self, tmp_path: Path) -> None:
        rp = RelyingParty.from_settings(base_settings(tmp_path, public_url="http://localhost:8000"))
        assert (rp.id, rp.origins) == ("localhost", ("http://localhost:8000",))


class TestRegistrationOptions:
    def test_they_ask_for_a_verified_discoverable_credential_without_attestation(self, rp: RelyingParty) -> None:
        ceremony = webauthn.registration_options(
            rp,
            user_id=USER_ID,
            user_name="ada@example.com",
            display_name="Ada",
            exclude=[KnownCredential("AAEC", ("usb", "bogus")), KnownCredential("AwQF")],
        )
        options = ceremony.options
        json.dumps(options)  # JSON-ready as it is
        assert options["rp"] == {"id": "keel.example.com", "name": "Keel"}
        assert options["user"] == {
            "id": b64url(USER_ID.to_bytes(8, "big")),
            "name": "ada@example.com",
            "displayName": "Ada",
        }
        assert options["challenge"] == ceremony.challenge
        assert len(unb64url(ceremony.challenge)) == 32
        assert [param["alg"] for param in options["pubKeyCredParams"]] == [-7, -8, -257]
        assert options["authenticatorSelection"]["residentKey"] == "preferred"
        assert options["authenticatorSelection"]["userVerification"] == "required"
        assert options["attestation"] == "none"
        assert options["timeout"] == 300_000
        assert options["excludeCredentials"] == [
            {"id": "AAEC", "type": "public-key", "transports": ["usb"]},
            {"id": "AwQF", "type": "public-key"},
        ]

    def test_each_has_its_own_challenge(self, rp: RelyingParty) -> None:
        challenges = {
            webauthn.registration_options(rp, user_id=1, user_name="a", display_name="a").challenge for _ in range(5)
        }
        assert len(challenges) == 5

    def test_an_excluded_credential_is_not_registered_twice(
        self, rp: RelyingParty, authenticator: SoftAuthenticator
    ) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.registration_options(
            rp, user_id=USER_ID, user_name="a", display_name="a", exclude=[KnownCredential(stored.credential_id)]
        )
        with pytest.raises(ExcludedCredentialError):
            authenticator.create(ceremony.options)


class TestRegistration:
    def test_a_verified_registration_gives_what_to_store(
        self, rp: RelyingParty, authenticator: SoftAuthenticator
    ) -> None:
        stored = register(rp, authenticator)
        credential = authenticator.credentials[0]
        assert stored.credential_id == credential.b64_id
        assert decode_credential_public_key(unb64url(stored.public_key)).alg == -7
        assert stored.sign_count == 0
        assert stored.aaguid.replace("-", "") == AAGUID.hex()
        assert stored.backed_up is False
        assert stored.transports == ("hybrid", "internal")

    def test_backup_state_and_transports_are_read(self, rp: RelyingParty) -> None:
        synced = SoftAuthenticator(origin=ORIGIN, backup_eligible=True, backed_up=True, transports=("usb", "telepathy"))
        stored = register(rp, synced)
        assert stored.backed_up is True
        assert stored.transports == ("usb",)  # unknown transports are dropped

    def test_an_extra_origin_may_register(self, rp: RelyingParty) -> None:
        assert register(rp, SoftAuthenticator(origin="https://app.keel.example.com")).sign_count == 0

    @pytest.mark.parametrize(
        "knobs",
        [
            pytest.param({"origin": "https://evil.example"}, id="another origin"),
            pytest.param({"origin": "http://keel.example.com"}, id="plain http"),
            pytest.param({"challenge": b64url(b"\x00" * 32)}, id="another challenge"),
            pytest.param({"user_verified": False}, id="no user verification"),
            pytest.param({"rp_id": "example.com"}, id="another relying party"),
            pytest.param({"client_type": "webauthn.get"}, id="an assertion's client data"),
            pytest.param({"cross_origin": True}, id="from a frame of another site"),
        ],
    )
    def test_refused(self, rp: RelyingParty, authenticator: SoftAuthenticator, knobs: dict[str, Any]) -> None:
        with pytest.raises(InvalidCredential) as caught:
            register(rp, authenticator, **knobs)
        assert (caught.value.status, caught.value.code) == (400, "invalid_credential")

    def test_an_id_other_than_the_one_the_authenticator_signed_is_refused(
        self, rp: RelyingParty, authenticator: SoftAuthenticator
    ) -> None:
        ceremony = webauthn.registration_options(rp, user_id=USER_ID, user_name="a", display_name="a")
        response = authenticator.create(ceremony.options)
        response["id"] = response["rawId"] = b64url(b"someone else's credential")
        with pytest.raises(InvalidCredential):
            webauthn.verify_registration(rp, credential=response, challenge=ceremony.challenge)


class TestAuthenticationOptions:
    def test_without_credentials_any_discoverable_passkey_may_answer(self, rp: RelyingParty) -> None:
        ceremony = webauthn.authentication_options(rp)
        assert ceremony.options == {
            "challenge": ceremony.challenge,
            "timeout": 300_000,
            "rpId": "keel.example.com",
            "allowCredentials": [],
            "userVerification": "required",
        }

    def test_with_credentials_only_those_may(self, rp: RelyingParty) -> None:
        options = webauthn.authentication_options(rp, allow=[KnownCredential("AAEC", ("internal",))]).options
        assert options["allowCredentials"] == [{"id": "AAEC", "type": "public-key", "transports": ["internal"]}]


class TestAuthentication:
    def test_a_discoverable_sign_in_names_its_user(self, rp: RelyingParty, authenticator: SoftAuthenticator) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp)
        response = authenticator.get(ceremony.options)
        assert webauthn.claimed_challenge(response) == ceremony.challenge
        assert webauthn.parse_assertion(response).user_handle == webauthn.user_handle(USER_ID)
        verified = sign_in(rp, stored, response, ceremony.challenge)
        assert verified == webauthn.VerifiedAssertion(stored.credential_id, sign_count=1, backed_up=False)

    def test_a_second_factor_may_come_without_a_user_handle(
        self, rp: RelyingParty, authenticator: SoftAuthenticator
    ) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp, allow=[KnownCredential(stored.credential_id)])
        response = authenticator.get(ceremony.options, user_handle=None)
        assert sign_in(rp, stored, response, ceremony.challenge, discoverable=False).sign_count == 1

    def test_the_counter_moves_forward_each_time(self, rp: RelyingParty, authenticator: SoftAuthenticator) -> None:
        stored = register(rp, authenticator)
        count = stored.sign_count
        for expected in (1, 2, 3):
            ceremony = webauthn.authentication_options(rp)
            verified = sign_in(rp, stored, authenticator.get(ceremony.options), ceremony.challenge, sign_count=count)
            assert verified.sign_count == count + 1 == expected
            count = verified.sign_count

    def test_an_authenticator_without_a_counter_signs_in_again_and_again(self, rp: RelyingParty) -> None:
        synced = SoftAuthenticator(origin=ORIGIN, counting=False, backup_eligible=True, backed_up=True)
        stored = register(rp, synced)
        for _ in range(2):
            ceremony = webauthn.authentication_options(rp)
            verified = sign_in(rp, stored, synced.get(ceremony.options), ceremony.challenge, sign_count=0)
            assert (verified.sign_count, verified.backed_up) == (0, True)

    @pytest.mark.parametrize(
        "knobs",
        [
            pytest.param({"origin": "https://evil.example"}, id="another origin"),
            pytest.param({"challenge": b64url(b"\x01" * 32)}, id="another challenge"),
            pytest.param({"user_verified": False}, id="no user verification"),
            pytest.param({"rp_id": "evil.example"}, id="another relying party"),
            pytest.param({"wrong_key": True}, id="signed by another key"),
            pytest.param({"user_handle": (7).to_bytes(8, "big")}, id="another user's handle"),
            pytest.param({"user_handle": None}, id="no user handle in a discoverable sign-in"),
            pytest.param({"client_type": "webauthn.create"}, id="a registration's client data"),
            pytest.param({"cross_origin": True}, id="from a frame of another site"),
        ],
    )
    def test_refused(self, rp: RelyingParty, authenticator: SoftAuthenticator, knobs: dict[str, Any]) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp)
        response = authenticator.get(ceremony.options, **knobs)
        with pytest.raises(InvalidCredential):
            sign_in(rp, stored, response, ceremony.challenge)

    @pytest.mark.parametrize(
        ("stored_count", "presented"),
        [
            pytest.param(5, 5, id="the same count: a replay"),
            pytest.param(5, 4, id="a lower count: a clone"),
            pytest.param(5, 0, id="a counter that stopped: a clone"),
        ],
    )
    def test_a_counter_that_did_not_move_forward_is_refused(
        self, rp: RelyingParty, authenticator: SoftAuthenticator, stored_count: int, presented: int
    ) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp)
        response = authenticator.get(ceremony.options, sign_count=presented)
        with pytest.raises(InvalidCredential):
            sign_in(rp, stored, response, ceremony.challenge, sign_count=stored_count)

    def test_the_same_response_twice_is_refused_once_its_count_is_stored(
        self, rp: RelyingParty, authenticator: SoftAuthenticator
    ) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp)
        response = authenticator.get(ceremony.options)
        first = sign_in(rp, stored, response, ceremony.challenge)
        with pytest.raises(InvalidCredential):
            sign_in(rp, stored, response, ceremony.challenge, sign_count=first.sign_count)

    def test_another_credentials_key_does_not_verify(self, rp: RelyingParty, authenticator: SoftAuthenticator) -> None:
        stored = register(rp, authenticator)
        other = register(rp, SoftAuthenticator(origin=ORIGIN))
        ceremony = webauthn.authentication_options(rp, allow=[KnownCredential(stored.credential_id)])
        response = authenticator.get(ceremony.options)
        assertion = webauthn.parse_assertion(response)
        with pytest.raises(InvalidCredential):
            webauthn.verify_authentication(
                rp,
                assertion=assertion,
                challenge=ceremony.challenge,
                public_key=other.public_key,
                sign_count=0,
                user_id=USER_ID,
                discoverable=False,
            )

    def test_no_allowed_credential_means_nothing_to_answer_with(
        self, rp: RelyingParty, authenticator: SoftAuthenticator
    ) -> None:
        register(rp, authenticator)
        with pytest.raises(NoCredentialError):
            authenticator.get(webauthn.authentication_options(rp, allow=[KnownCredential("AAEC")]).options)


# --- malformed input: always InvalidCredential, never anything else -----------------------------------
def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(response: dict[str, Any]) -> None:
        target = response
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(response: dict[str, Any]) -> None:
        target = response
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _client_data(value: Any) -> Callable[[dict[str, Any]], None]:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return _set(("response", "clientDataJSON"), b64url(raw))


_GARBAGE: list[Any] = [None, 7, 1.5, True, [], {}, "", "%%%", "a", "!!not base64!!", "A" * 5000]
_COMMON: list[Any] = [
    *(pytest.param(_set(("id",), value), id=f"id={value!r:.20}") for value in _GARBAGE),
    *(pytest.param(_set(("rawId",), value), id=f"rawId={value!r:.20}") for value in _GARBAGE),
    *(pytest.param(_set(("type",), value), id=f"type={value!r:.20}") for value in [*_GARBAGE, "password"]),
    *(pytest.param(_set(("response",), value), id=f"response={value!r:.20}") for value in _GARBAGE),
    *(
        pytest.param(_set(("response", "clientDataJSON"), value), id=f"clientDataJSON={value!r:.20}")
        for value in _GARBAGE
    ),
    pytest.param(_drop(("response", "clientDataJSON")), id="no clientDataJSON"),
    pytest.param(_drop(("id",)), id="no id"),
    pytest.param(_client_data(b"\xff\xfe not json"), id="clientDataJSON not JSON"),
    pytest.param(_client_data([1, 2]), id="clientDataJSON a list"),
    pytest.param(_client_data({"type": "webauthn.get"}), id="clientDataJSON without challenge"),
    pytest.param(_client_data({"type": 1, "challenge": 2, "origin": 3}), id="clientDataJSON of numbers"),
    pytest.param(_client_data({"type": "x", "challenge": "%%", "origin": "o"}), id="clientDataJSON bad challenge"),
    pytest.param(
        _client_data({"type": "x", "challenge": "AA", "origin": "o", "tokenBinding": {"status": "bogus"}}),
        id="clientDataJSON bad token binding",
    ),
]


def _auth_data(value: bytes) -> Callable[[dict[str, Any]], None]:
    return _set(("response", "authenticatorData"), b64url(value))


class TestMalformed:
    @pytest.mark.parametrize(
        "mutate",
        [
            *_COMMON,
            *(
                pytest.param(_set(("response", "attestationObject"), value), id=f"attestationObject={value!r:.20}")
                for value in _GARBAGE
            ),
            pytest.param(_set(("response", "attestationObject"), b64url(b"\xff\x00")), id="attestation not CBOR"),
            pytest.param(_set(("response", "attestationObject"), b64url(cbor2.dumps([1]))), id="attestation a list"),
            pytest.param(
                _set(("response", "attestationObject"), b64url(cbor2.dumps({"fmt": "none", "attStmt": {}}))),
                id="attestation without authData",
            ),
            pytest.param(
                _set(
                    ("response", "attestationObject"),
                    b64url(cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": b"\x00" * 40})),
                ),
                id="authData too short",
            ),
            pytest.param(
                _set(
                    ("response", "attestationObject"),
                    b64url(cbor2.dumps({"fmt": "packed", "attStmt": {"alg": -7, "sig": b"x"}, "authData": b"\x00"})),
                ),
                id="packed attestation that proves nothing",
            ),
        ],
    )
    def test_a_registration_response(
        self, rp: RelyingParty, authenticator: SoftAuthenticator, mutate: Callable[[dict[str, Any]], None]
    ) -> None:
        ceremony = webauthn.registration_options(rp, user_id=USER_ID, user_name="a", display_name="a")
        response = copy.deepcopy(authenticator.create(ceremony.options))
        mutate(response)
        with pytest.raises(InvalidCredential):
            webauthn.verify_registration(rp, credential=response, challenge=ceremony.challenge)

    @pytest.mark.parametrize("transports", [7, "usb", [None, 3], {"a": 1}, None])
    def test_transports_that_make_no_sense_are_ignored(
        self, rp: RelyingParty, authenticator: SoftAuthenticator, transports: Any
    ) -> None:
        ceremony = webauthn.registration_options(rp, user_id=USER_ID, user_name="a", display_name="a")
        response = authenticator.create(ceremony.options)
        response["response"]["transports"] = transports
        stored = webauthn.verify_registration(rp, credential=response, challenge=ceremony.challenge)
        assert (stored.credential_id, stored.transports) == (authenticator.credentials[0].b64_id, ())

    @pytest.mark.parametrize("credential", [None, "{}", 7, [], {}, {"response": {}}])
    def test_not_a_response_at_all(self, rp: RelyingParty, credential: Any) -> None:
        with pytest.raises(InvalidCredential):
            webauthn.verify_registration(rp, credential=credential, challenge=b64url(b"\x00" * 32))
        with pytest.raises(InvalidCredential):
            webauthn.parse_assertion(credential)
        with pytest.raises(InvalidCredential):
            webauthn.claimed_challenge(credential)

    @pytest.mark.parametrize(
        "mutate",
        [
            *_COMMON,
            *(
                pytest.param(_set(("response", field), value), id=f"{field}={value!r:.20}")
                for field in ("authenticatorData", "signature", "userHandle")
                for value in _GARBAGE
            ),
            pytest.param(_auth_data(b""), id="authenticatorData empty"),
            pytest.param(_auth_data(b"\x00" * 36), id="authenticatorData short"),
            pytest.param(_auth_data(b"\x00" * 37 + b"\xff" * 300), id="authenticatorData with trailing junk"),
            pytest.param(_set(("response", "signature"), b64url(b"\x30\x02\x00\x00")), id="signature not a point"),
            pytest.param(_set(("authenticatorAttachment",), "bogus"), id="bad attachment"),
        ],
    )
    def test_an_assertion(
        self, rp: RelyingParty, authenticator: SoftAuthenticator, mutate: Callable[[dict[str, Any]], None]
    ) -> None:
        stored = register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp)
        response = copy.deepcopy(authenticator.get(ceremony.options))
        mutate(response)
        with pytest.raises(InvalidCredential):
            verify_as_the_service_does(rp, stored, response, ceremony.challenge)

    @pytest.mark.parametrize("public_key", ["", "%%", b64url(b"\xa0"), b64url(cbor2.dumps({1: 2, 3: -7}))])
    def test_a_broken_stored_key(self, rp: RelyingParty, authenticator: SoftAuthenticator, public_key: str) -> None:
        register(rp, authenticator)
        ceremony = webauthn.authentication_options(rp)
        assertion = webauthn.parse_assertion(authenticator.get(ceremony.options))
        with pytest.raises(InvalidCredential):
            webauthn.verify_authentication(
                rp,
                assertion=assertion,
                challenge=ceremony.challenge,
                public_key=public_key,
                sign_count=0,
                user_id=USER_ID,
                discoverable=True,
            )

    def test_a_challenge_of_another_length_is_not_one_of_ours(self, rp: RelyingParty) -> None:
        authenticator = SoftAuthenticator(origin=ORIGIN)
        register(rp, authenticator)
        response = authenticator.get(webauthn.authentication_options(rp).options, challenge=b64url(b"\x00" * 16))
        with pytest.raises(InvalidCredential):
            webauthn.claimed_challenge(response)
