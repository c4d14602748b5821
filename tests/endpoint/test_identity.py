from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path

import pytest

from proxystore.endpoint.identity import (
    IDENTITY_FILE,
    Identity,
    IdentityError,
    ReplayGuard,
    check_identity,
    open_signed,
    public_key_of_certificate,
    read_identity,
    uuid_from_public_key,
    write_identity,
)
from proxystore.endpoint.peers import PeerAllowlist, read_peers, write_peers
from proxystore.exceptions import ConfigurationError


def test_uuid_is_derived_from_the_public_key_as_documented() -> None:
    identity = Identity.generate()
    digest = hashlib.sha256(identity.public_bytes).digest()
    derived = uuid.UUID(identity.uuid)
    assert derived.version == 8
    assert derived.variant == uuid.RFC_4122
    raw = derived.bytes
    # Only the version nibble and the variant bits differ from the hash.
    assert raw[:6] == digest[:6]
    assert raw[9:] == digest[9:16]
    assert raw[6] & 0x0F == digest[6] & 0x0F
    assert raw[8] & 0x3F == digest[8] & 0x3F
    assert uuid_from_public_key(identity.public_bytes) == identity.uuid
    assert Identity.generate().uuid != identity.uuid
    with pytest.raises(IdentityError, match="32 bytes"):
        uuid_from_public_key(b"short")


def test_identity_file_is_private_and_round_trips(tmp_path: Path) -> None:
    identity = write_identity(tmp_path)
    path = tmp_path / IDENTITY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_identity(tmp_path).uuid == identity.uuid
    assert check_identity(tmp_path, identity.uuid).uuid == identity.uuid
    with pytest.raises(ConfigurationError, match="already exists"):
        write_identity(tmp_path)
    with pytest.raises(ConfigurationError, match="does not match its identity"):
        check_identity(tmp_path, str(uuid.uuid4()))
    path.chmod(0o640)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        read_identity(tmp_path)
    path.chmod(0o600)
    path.write_text("not a key")
    with pytest.raises(ConfigurationError, match="not a private key"):
        read_identity(tmp_path)
    with pytest.raises(ConfigurationError, match="configured again"):
        read_identity(tmp_path / "missing")


def test_signed_message_checks_signature_and_sender() -> None:
    identity = Identity.generate()
    message = identity.sign(identity.new_body("someone", kind="offer", sdp="v=0"))
    body, public = open_signed(message)
    assert body["kind"] == "offer"
    assert public == identity.public_bytes

    tampered = {**message, "body": {**message["body"], "sdp": "v=1"}}
    with pytest.raises(IdentityError, match="bad signature"):
        open_signed(tampered)

    # A body claiming another sender, correctly signed by the wrong key.
    other = Identity.generate()
    forged = identity.sign({**message["body"], "from": other.uuid})
    with pytest.raises(IdentityError, match="not the uuid of the signing key"):
        open_signed(forged)

    # Someone else's signature under the original key.
    swapped = {**message, "pub": base64.b64encode(other.public_bytes).decode()}
    with pytest.raises(IdentityError, match="bad signature"):
        open_signed(swapped)

    for bad in [None, {}, {**message, "sig": "!!"}, {**message, "pub": "AAAA"}]:
        with pytest.raises(IdentityError):
            open_signed(bad)


def test_replay_guard_refuses_wrong_recipient_stale_and_repeated() -> None:
    identity = Identity.generate()
    guard = ReplayGuard(window=120)
    body = identity.new_body("me")
    guard.check(body, to="me")
    with pytest.raises(IdentityError, match="nonce already seen"):
        guard.check(body, to="me")
    with pytest.raises(IdentityError, match="addressed to 'me'"):
        guard.check(identity.new_body("me"), to="you")
    stale = {**identity.new_body("me"), "ts": time.time() - 121}
    with pytest.raises(IdentityError, match="window"):
        guard.check(stale, to="me")
    future = {**identity.new_body("me"), "ts": time.time() + 121}
    with pytest.raises(IdentityError, match="window"):
        guard.check(future, to="me")
    with pytest.raises(IdentityError, match="nonce"):
        guard.check({**identity.new_body("me"), "nonce": ""}, to="me")


def test_replay_guard_fails_closed_when_full() -> None:
    identity = Identity.generate()
    guard = ReplayGuard(window=120, max_nonces=3)
    for _ in range(3):
        guard.check(identity.new_body("me"), to="me")
    with pytest.raises(IdentityError, match="over 3 signed messages"):
        guard.check(identity.new_body("me"), to="me")


def test_certificate_carries_the_identity_key() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    identity = Identity.generate()
    certificate = x509.load_pem_x509_certificate(identity.certificate_pem())
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert public_key_of_certificate(der) == identity.public_bytes
    with pytest.raises(IdentityError, match="malformed"):
        public_key_of_certificate(b"junk")


def test_allowlist_file_defaults_to_nobody_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "peers.allow"
    allow = PeerAllowlist(path)
    peer = str(uuid.uuid4())
    assert not allow(peer)
    write_peers(path, [peer])
    assert path.stat().st_mode & 0o777 == 0o600
    assert allow(peer)
    assert not allow(str(uuid.uuid4()))
    path.write_text(f"# comment\n{peer.upper()}  # trailing\n\n*\n")
    assert read_peers(path) == [peer, "*"]
    assert allow(str(uuid.uuid4()))
    path.write_text("not-a-uuid\n")
    with pytest.raises(ConfigurationError, match=r"peers\.allow:1"):
        read_peers(path)
    # A broken edit keeps the last good list rather than opening up or crashing.
    assert allow(peer)
    path.unlink()
    assert not allow(peer)
