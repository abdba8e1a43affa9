"""Passkeys (WebAuthn) with Keel as the relying party: typed wrappers over py_webauthn.

The relying party comes from the settings: its ID is the host of `KEEL_PUBLIC_URL`, and the
origins a ceremony may come from are that URL's origin plus `KEEL_WEBAUTHN_EXTRA_ORIGINS`.
Every ceremony requires user verification, so a passkey alone proves possession and a PIN or
biometric. Whatever is wrong with what a client sends (malformed JSON, bad base64, broken CBOR,
a wrong challenge, origin or signature, a counter that went backwards) raises `InvalidCredential`,
never anything else. Challenges are made here; keeping them single-use is the caller's job.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_client_data_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keel.core.config import Settings
from keel.core.errors import InvalidCredential
from keel.core.logging import get_logger
from keel.core.urls import origin_of

log = get_logger("keel.webauthn")

RP_NAME = "Keel"
CHALLENGE_TTL_SECONDS = 5 * 60
CHALLENGE_BYTES = 32
# The spec's upper bound on a credential ID; beyond it, a response is no credential.
MAX_CREDENTIAL_ID_BYTES = 1023
ALGORITHMS = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)
_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str
    name: str
    origins: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> RelyingParty:
        own = origin_of(settings.public_url)
        host = urlsplit(settings.public_url).hostname
        if own is None or not host:  # pragma: no cover - the settings only hold an http(s) URL here
            raise ValueError(f"KEEL_PUBLIC_URL {settings.public_url!r} names no host for passkeys")
        extra = tuple(origin for origin in settings.webauthn_extra_origins if origin != own)
        return cls(id=host, name=RP_NAME, origins=(own, *extra))


@dataclass(frozen=True, slots=True)
class KnownCredential:
    """A registered credential as options name it (to exclude or to allow)."""

    id: str  # base64url
    transports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ceremony:
    """Options for the browser (`PublicKeyCredential*Options` as JSON) and the challenge in them."""

    options: dict[str, Any]
    challenge: str  # base64url


@dataclass(frozen=True, slots=True)
class NewCredential:
    """A verified registration: what to store for the passkey."""

    credential_id: str  # base64url
    public_key: str  # the COSE key, base64url
    sign_count: int
    aaguid: str
    backed_up: bool
    transports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Assertion:
    """A sign-in response, parsed but not verified: enough to find the passkey it claims to be."""

    credential_id: str  # base64url
    user_handle: bytes | None
    credential: AuthenticationCredential


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    credential_id: str
    sign_count: int
    backed_up: bool


def user_handle(user_id: int) -> bytes:
    """The WebAuthn user handle of an account: its id as 8 bytes, which names no person.

    Derived rather than stored, and not keyed with the secret key: a key rotation must not
    orphan every discoverable passkey.
    """
    return user_id.to_bytes(8, "big")


def new_challenge() -> str:
    return bytes_to_base64url(secrets.token_bytes(CHALLENGE_BYTES))


def registration_options(
    rp: RelyingParty, *, user_id: int, user_name: str, display_name: str, exclude: Sequence[KnownCredential] = ()
) -> Ceremony:
    """Options for `navigator.credentials.create()`: a discoverable credential if the authenticator
    can make one, user verification required, no attestation, none of the user's existing ones again."""
    challenge = new_challenge()
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_handle(user_id),
        user_name=user_name,
        user_display_name=display_name,
        challenge=base64url_to_bytes(challenge),
        timeout=CHALLENGE_TTL_SECONDS * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude),
        supported_pub_key_algs=list(ALGORITHMS),
    )
    return Ceremony(options=options_to_json_dict(options), challenge=challenge)


def verify_registration(rp: RelyingParty, *, credential: object, challenge: str) -> NewCredential:
    """Check a `navigator.credentials.create()` response against the challenge it was given."""
    with _refused("registration"):
        if not isinstance(credential, dict):
            raise InvalidCredential
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            require_user_presence=True,
            require_user_verification=True,
            supported_pub_key_algs=list(ALGORITHMS),
        )
        # The ID the authenticator signed for must be the one the response names.
        if bytes_to_base64url(verified.credential_id) != credential["id"]:
            raise InvalidCredential
        if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
            raise InvalidCredential
        _refuse_cross_origin(credential)
        transports = credential["response"].get("transports")
        return NewCredential(
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            backed_up=verified.credential_backed_up,
            transports=tuple(
                sorted({t for t in transports if isinstance(t, str) and t in _TRANSPORTS})
                if isinstance(transports, list)
                else ()
            ),
        )


def authentication_options(rp: RelyingParty, *, allow: Sequence[KnownCredential] = ()) -> Ceremony:
    """Options for `navigator.credentials.get()`: for any discoverable passkey of this site when
    `allow` is empty (passkey-first sign-in), else for one of the credentials it names."""
    challenge = new_challenge()
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=base64url_to_bytes(challenge),
        timeout=CHALLENGE_TTL_SECONDS * 1000,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return Ceremony(options=options_to_json_dict(options), challenge=challenge)


def claimed_challenge(credential: object) -> str:
    """The challenge a response says it answers (base64url), to look up and consume before verifying.

    Only a claim: verification then checks it, and the store that issued it says for whom.
    """
    with _refused("challenge"):
        if not isinstance(credential, dict):
            raise InvalidCredential
        response = credential["response"]
        client_data = parse_client_data_json(base64url_to_bytes(response["clientDataJSON"]))
        challenge = bytes_to_base64url(client_data.challenge)
        if len(client_data.challenge) != CHALLENGE_BYTES:  # not one of ours: skip the lookup
            raise InvalidCredential
        return challenge


def parse_assertion(credential: object) -> Assertion:
    """Read which credential a `navigator.credentials.get()` response claims to come from."""
    with _refused("assertion"):
        if not isinstance(credential, dict):
            raise InvalidCredential
        parsed = parse_authentication_credential_json(credential)
        credential_id = bytes_to_base64url(parsed.raw_id)
        if credential_id != parsed.id or not parsed.raw_id or len(parsed.raw_id) > MAX_CREDENTIAL_ID_BYTES:
            raise InvalidCredential
        return Assertion(credential_id=credential_id, user_handle=parsed.response.user_handle, credential=parsed)


def verify_authentication(
    rp: RelyingParty,
    *,
    assertion: Assertion,
    challenge: str,
    public_key: str,
    sign_count: int,
    user_id: int,
    discoverable: bool,
) -> VerifiedAssertion:
    """Check a sign-in response against the challenge and the stored passkey of user `user_id`.

    `discoverable`: the user was not known before the ceremony, so the response must name them
    (`userHandle`). A signature counter that did not move forward, once either side is non-zero,
    is refused: a cloned authenticator, or a replayed response.
    """
    handle = assertion.user_handle
    if (handle is None and discoverable) or (handle is not None and handle != user_handle(user_id)):
        log.info("webauthn_refused", ceremony="authentication", reason="user handle")
        raise InvalidCredential
    with _refused("authentication"):
        verified = verify_authentication_response(
            credential=assertion.credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            credential_public_key=base64url_to_bytes(public_key),
            # Checked below, once the signature has shown the counter is the authenticator's own.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
        _refuse_cross_origin_of(assertion.credential.response.client_data_json)
    new_count = verified.new_sign_count
    if (new_count > 0 or sign_count > 0) and new_count <= sign_count:
        log.warning("webauthn_counter_regressed", stored=sign_count, presented=new_count)
        raise InvalidCredential
    return VerifiedAssertion(
        credential_id=assertion.credential_id, sign_count=new_count, backed_up=verified.credential_backed_up
    )


def _descriptors(credentials: Sequence[KnownCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(known.id),
            transports=[AuthenticatorTransport(t) for t in known.transports if t in _TRANSPORTS] or None,
        )
        for known in credentials
    ]


def _refuse_cross_origin(credential: dict[str, Any]) -> None:
    _refuse_cross_origin_of(base64url_to_bytes(credential["response"]["clientDataJSON"]))


def _refuse_cross_origin_of(client_data_json: bytes) -> None:
    # A ceremony run in a frame embedded by another site: Keel is never embedded (and says so).
    if parse_client_data_json(client_data_json).cross_origin:
        raise InvalidCredential


@contextmanager
def _refused(ceremony: str) -> Iterator[None]:
    """Turn any failure to verify into `InvalidCredential`.

    Broad on purpose: py_webauthn's parsers raise whatever the bytes provoke (binascii, CBOR,
    struct, KeyError on a COSE key without its members, ...), and all of it means "not a valid
    response", never a 500.
    """
    try:
        yield
    except InvalidCredential:
        log.info("webauthn_refused", ceremony=ceremony, reason="invalid")
        raise
    except Exception as exc:
        log.info("webauthn_refused", ceremony=ceremony, reason=type(exc).__name__, detail=str(exc)[:200])
        raise InvalidCredential from None
