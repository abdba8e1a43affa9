"""A software passkey authenticator: what a browser hands a relying party, built with `cryptography`.

It answers the options Keel sends (`PublicKeyCredentialCreationOptions` / `...RequestOptions` as
JSON) the way `navigator.credentials.create()` / `.get()` do, serialised with `toJSON()`: base64url
fields, a `clientDataJSON` naming the type, challenge and origin, `"none"` attestation, an ES256
(P-256) key in COSE form. Knobs make it misbehave one way at a time: another origin, another
challenge, no user verification, a counter set back, a signature by another key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

# authenticatorData flags (WebAuthn §6.1)
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes.fromhex("6b65656c2d736f66742d617574686e21")  # "keel-soft-authn!"
_KEEP = object()  # a knob left alone


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cose_key(public: ec.EllipticCurvePublicKey) -> bytes:
    """An ES256 public key as a COSE_Key (RFC 9053): kty EC2, alg -7, crv P-256, x, y."""
    numbers = public.public_numbers()
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


@dataclass
class SoftCredential:
    id: bytes
    rp_id: str
    user_handle: bytes
    key: ec.EllipticCurvePrivateKey
    sign_count: int = 0
    discoverable: bool = True

    @property
    def b64_id(self) -> str:
        return b64url(self.id)


@dataclass
class SoftAuthenticator:
    """A platform authenticator with user verification; `counting=False` is one that keeps no counter
    (sign count always 0, as synced passkeys report); `backup_eligible`/`backed_up` set BE/BS."""

    origin: str
    counting: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    resident_keys: bool = True
    transports: tuple[str, ...] = ("hybrid", "internal")
    credentials: list[SoftCredential] = field(default_factory=list)

    # --- navigator.credentials.create() ---------------------------------------------------------
    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        challenge: str | None = None,
        user_verified: bool = True,
        rp_id: str | None = None,
        client_type: str = "webauthn.create",
        cross_origin: bool = False,
        reuse: SoftCredential | None = None,
    ) -> dict[str, Any]:
        """A new credential for the options' RP and user; `reuse` attests an existing one again
        (what a relying party must refuse when it is already registered)."""
        excluded = {item["id"] for item in options.get("excludeCredentials", [])}
        target_rp = options["rp"]["id"]
        if any(cred.b64_id in excluded and cred.rp_id == target_rp for cred in self.credentials):
            raise ExcludedCredentialError("this authenticator already holds one of the excluded credentials")
        credential = reuse or SoftCredential(
            id=secrets.token_bytes(16),
            rp_id=target_rp,
            user_handle=unb64url(options["user"]["id"]),
            key=ec.generate_private_key(ec.SECP256R1()),
            discoverable=self.resident_keys and options["authenticatorSelection"]["residentKey"] != "discouraged",
        )
        if reuse is None:
            self.credentials.append(credential)
        client_data = self._client_data(
            client_type, challenge or options["challenge"], origin or self.origin, cross_origin=cross_origin
        )
        attested = (
            AAGUID + struct.pack(">H", len(credential.id)) + credential.id + cose_key(credential.key.public_key())
        )
        auth_data = self._auth_data(rp_id or target_rp, AT | self._flags(user_verified), credential.sign_count)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data + attested})
        return {
            "id": credential.b64_id,
            "rawId": credential.b64_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": list(self.transports),
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }

    # --- navigator.credentials.get() ------------------------------------------------------------
    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        challenge: str | None = None,
        user_verified: bool = True,
        rp_id: str | None = None,
        sign_count: int | None = None,
        wrong_key: bool = False,
        user_handle: Any = _KEEP,
        client_type: str = "webauthn.get",
        cross_origin: bool = False,
    ) -> dict[str, Any]:
        """An assertion from the first of this authenticator's credentials the options allow (any
        discoverable one of the RP when they allow none). `sign_count` forces the counter's value;
        `user_handle` replaces the one returned (None: none)."""
        credential = self.pick(options)
        if sign_count is not None:
            credential.sign_count = sign_count
        elif self.counting:
            credential.sign_count += 1
        client_data = self._client_data(
            client_type, challenge or options["challenge"], origin or self.origin, cross_origin=cross_origin
        )
        auth_data = self._auth_data(rp_id or credential.rp_id, self._flags(user_verified), credential.sign_count)
        key = ec.generate_private_key(ec.SECP256R1()) if wrong_key else credential.key
        signature = key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        handle = (credential.user_handle if credential.discoverable else None) if user_handle is _KEEP else user_handle
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if handle is not None:
            response["userHandle"] = b64url(handle)
        return {
            "id": credential.b64_id,
            "rawId": credential.b64_id,
            "type": "public-key",
            "response": response,
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }

    def pick(self, options: dict[str, Any]) -> SoftCredential:
        allowed = [item["id"] for item in options.get("allowCredentials") or []]
        for credential in self.credentials:
            if credential.rp_id != options["rpId"]:
                continue
            if (credential.b64_id in allowed) if allowed else credential.discoverable:
                return credential
        raise NoCredentialError("no credential of this authenticator is allowed")

    # --- the pieces ---------------------------------------------------------------------------
    def _flags(self, user_verified: bool) -> int:
        flags = UP | (UV if user_verified else 0)
        flags |= BE if self.backup_eligible else 0
        flags |= BS if self.backed_up else 0
        return flags

    @staticmethod
    def _auth_data(rp_id: str, flags: int, sign_count: int) -> bytes:
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)

    @staticmethod
    def _client_data(client_type: str, challenge: str, origin: str, *, cross_origin: bool) -> bytes:
        data = {"type": client_type, "challenge": challenge, "origin": origin, "crossOrigin": cross_origin}
        return json.dumps(data, separators=(",", ":")).encode()


class ExcludedCredentialError(Exception):
    """What a browser reports as InvalidStateError: the authenticator is already registered."""


class NoCredentialError(Exception):
    """What a browser reports as NotAllowedError: nothing to sign in with."""
