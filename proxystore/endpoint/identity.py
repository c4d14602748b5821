"""An endpoint's Ed25519 identity, signed messages, and its peer allowlist.

Each endpoint directory holds ``identity.pem`` (the private key, PKCS8 PEM,
mode 0600) and ``peers.allow`` (UUIDs of the endpoints it talks to). An
endpoint's UUID is derived from its public key (`uuid_from_public_key`), so
anyone holding the public key can check the UUID, and nobody can claim a UUID
without the matching private key.

Signed messages (registration, session descriptions) are JSON objects
``{"body": {...}, "pub": base64(raw public key), "sig": base64(signature)}``
where the signature covers the canonical JSON of ``body`` (`canonical_json`)
and every body carries ``from``, ``to``, a random ``nonce`` and a ``ts``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import os
import secrets
import stat
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import NameOID

from proxystore.exceptions import ConfigurationError, PeerError

IDENTITY_FILE = "identity.pem"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
REPLAY_WINDOW = 120.0
MAX_NONCES = 100_000
MAX_SIGNED_MESSAGE = 64 * 1024
"""Largest signed message accepted (base64 and JSON overhead included)."""


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class IdentityError(PeerError):
    """A signed message or identity does not check out."""


class ReplayError(IdentityError):
    """A signed message is not for us, outside the time window, or replayed."""


def uuid_from_public_key(public: bytes) -> str:
    """Return the endpoint UUID of a raw 32-byte Ed25519 public key.

    The first 16 bytes of SHA-256(public) with the version nibble set to 8
    and the RFC 4122 variant bits, as a canonical lower-case UUID string.

    Raises:
        IdentityError: If ``public`` is not 32 bytes.
    """
    if len(public) != PUBLIC_KEY_SIZE:
        raise IdentityError(
            f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public)}"
        )
    digest = bytearray(hashlib.sha256(public).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """Return the bytes a signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


class Identity:
    """An endpoint's private key and the UUID derived from it.

    Args:
        key: The Ed25519 private key.
    """

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_bytes = _raw(key.public_key())
        """The raw 32-byte public key."""
        self.uuid = uuid_from_public_key(self.public_bytes)
        """The endpoint UUID this key proves."""

    def __repr__(self) -> str:
        return f"Identity(uuid={self.uuid!r})"

    @classmethod
    def generate(cls) -> Identity:
        """Return a fresh identity (not written anywhere)."""
        return cls(Ed25519PrivateKey.generate())

    def private_pem(self) -> bytes:
        """Return the private key as unencrypted PKCS8 PEM."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``body`` as a signed message."""
        signature = self._key.sign(canonical_json(body))
        return {
            "body": dict(body),
            "pub": base64.b64encode(self.public_bytes).decode(),
            "sig": base64.b64encode(signature).decode(),
        }

    def sign_bytes(self, data: bytes) -> bytes:
        """Return the Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def new_body(self, to: str, **fields: Any) -> dict[str, Any]:
        """Return a message body from this endpoint to ``to`` with a fresh nonce."""
        return {
            **fields,
            "from": self.uuid,
            "to": to,
            "nonce": secrets.token_hex(16),
            "ts": time.time(),
        }

    def certificate_pem(self) -> bytes:
        """Return a self-signed X.509 certificate of this key (for TLS).

        The subject is the UUID; peers ignore names and validity and pin the
        certificate's public key to the identity they expect instead.
        """
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.uuid)])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(self._key, None)
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def load_into(self, context: Any) -> None:
        """Load this identity's certificate and key into an `ssl.SSLContext`.

        The stdlib only loads them from files: they go through a private
        temporary directory that is removed before returning.
        """
        with tempfile.TemporaryDirectory(prefix="proxystore-tls-") as directory:
            cert = Path(directory) / "cert.pem"
            key = Path(directory) / "key.pem"
            for path, data in (
                (cert, self.certificate_pem()),
                (key, self.private_pem()),
            ):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
            context.load_cert_chain(cert, key)


def public_key_of_certificate(der: bytes) -> bytes:
    """Return the raw Ed25519 public key of a DER certificate.

    Raises:
        IdentityError: If the certificate is malformed or its key is not Ed25519.
    """
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as err:
        raise IdentityError(f"malformed certificate: {err}") from err
    if not isinstance(key, Ed25519PublicKey):
        raise IdentityError(
            f"certificate key is {type(key).__name__}, not an Ed25519 identity"
        )
    return _raw(key)


def verify_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """Return whether ``signature`` is ``public``'s Ed25519 signature of ``data``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64(message: Mapping[str, Any], field: str, size: int) -> bytes:
    value = message.get(field)
    if not isinstance(value, str) or len(value) > 2 * size:
        raise IdentityError(f"signed message has no valid {field!r}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise IdentityError(f"signed message field {field!r} is not base64") from err
    if len(raw) != size:
        raise IdentityError(f"signed message field {field!r} has the wrong length")
    return raw


def open_signed(message: object) -> tuple[dict[str, Any], bytes]:
    """Check a signed message's signature and sender; return (body, public key).

    Checks only what the message says about itself: the signature over the
    body by ``pub``, and that ``from`` is the UUID of ``pub``. Recipients
    also check ``to``, the time and the nonce (`ReplayGuard.check`).

    Raises:
        IdentityError: If the message is malformed, the signature is wrong,
            or ``from`` is not the UUID of the key that signed it.
    """
    if not isinstance(message, Mapping):
        raise IdentityError("signed message is not an object")
    body = message.get("body")
    if not isinstance(body, dict):
        raise IdentityError("signed message has no body object")
    public = _b64(message, "pub", PUBLIC_KEY_SIZE)
    signature = _b64(message, "sig", SIGNATURE_SIZE)
    data = canonical_json(body)
    if len(data) > MAX_SIGNED_MESSAGE:
        raise IdentityError(f"signed message body is over {MAX_SIGNED_MESSAGE} bytes")
    if not verify_signature(public, signature, data):
        raise IdentityError("bad signature")
    sender = body.get("from")
    if sender != uuid_from_public_key(public):
        raise IdentityError(f"sender {sender!r} is not the uuid of the signing key")
    return body, public


class ReplayGuard:
    """Refuses stale, future-dated and repeated signed messages.

    A body is fresh when its ``ts`` is within ``window`` seconds of now and
    its ``nonce`` was not seen in that window.

    Args:
        window: Seconds a message stays valid either side of now.
        max_nonces: Most messages remembered in one window; more are refused.
    """

    def __init__(
        self, window: float = REPLAY_WINDOW, max_nonces: int = MAX_NONCES
    ) -> None:
        self._window = window
        self._max_nonces = max_nonces
        self._seen: dict[str, float] = {}

    def check(self, body: Mapping[str, Any], *, to: str) -> None:
        """Accept ``body`` once if it is addressed to ``to`` and fresh.

        Raises:
            ReplayError: If ``to`` differs, the time is outside the window,
                or the nonce was already seen.
        """
        if body.get("to") != to:
            raise ReplayError(f"message is addressed to {body.get('to')!r}")
        ts, nonce = body.get("ts"), body.get("nonce")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool):
            raise ReplayError("message has no numeric 'ts'")
        if not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
            raise ReplayError("message has no valid 'nonce'")
        now = time.time()
        if abs(now - ts) > self._window:
            raise ReplayError(
                f"message time is {now - ts:+.0f}s off (window {self._window:g}s)"
            )
        self._prune(now)
        if nonce in self._seen:
            raise ReplayError("replayed message (nonce already seen)")
        if len(self._seen) >= self._max_nonces:
            # Fail closed: forgetting nonces still in the window would let
            # their messages be replayed.
            raise ReplayError(
                f"over {self._max_nonces} signed messages in {self._window:g}s"
            )
        self._seen[nonce] = float(ts)

    def _prune(self, now: float) -> None:
        if len(self._seen) < 1024:
            return
        self._seen = {
            n: ts for n, ts in self._seen.items() if abs(now - ts) <= self._window
        }


def write_identity(directory: Path, identity: Identity | None = None) -> Identity:
    """Create ``identity.pem`` in ``directory`` (mode 0600) and return it.

    Raises:
        ConfigurationError: If the file already exists.
    """
    identity = identity or Identity.generate()
    path = directory / IDENTITY_FILE
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        raise ConfigurationError(f"identity {path} already exists") from err
    with os.fdopen(fd, "wb") as file:
        file.write(identity.private_pem())
    return identity


def read_identity(directory: Path) -> Identity:
    """Read ``identity.pem`` from ``directory``.

    Raises:
        ConfigurationError: If it is missing, readable by group or others,
            or not an Ed25519 private key.
    """
    path = directory / IDENTITY_FILE
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigurationError(
            f"no endpoint identity at {path}; endpoints configured by an older "
            "proxystore must be configured again"
        ) from err
    except OSError as err:
        raise ConfigurationError(f"cannot read identity {path}: {err}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"identity {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigurationError(f"identity {path} is not a private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"identity {path} is not an Ed25519 key")
    return Identity(key)


def check_identity(directory: Path, endpoint_uuid: str) -> Identity:
    """Read the identity in ``directory`` and check it proves ``endpoint_uuid``.

    Raises:
        ConfigurationError: If the identity cannot be read or its UUID differs.
    """
    identity = read_identity(directory)
    if identity.uuid != endpoint_uuid:
        raise ConfigurationError(
            f"endpoint uuid {endpoint_uuid} in {directory} does not match its "
            f"identity key (which proves {identity.uuid}); refusing to start"
        )
    return identity
