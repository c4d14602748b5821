"""The JSON messages spoken between endpoints and the signaling server.

Every message is a JSON object with a ``type``::

    server -> client  {"type": "challenge", "nonce": str}
    client -> server  {"type": "register", "uuid": str, "name": str, "auth": str,
                       "identity": signed}
    server -> client  {"type": "registered"}
    client -> server  {"type": "relay", "target": uuid, "payload": {...}}
    server -> client  {"type": "relay", "source": uuid, "source_name": str,
                       "payload": {...}}
    server -> client  {"type": "unknown_peer", "target": uuid, "payload": {...}}
    server -> client  {"type": "peer_gone", "uuid": uuid}
    server -> client  {"type": "error", "reason": str}

``auth`` is an HMAC-SHA256 of the nonce and UUID keyed by the shared secret,
so the secret never crosses the wire and a recorded registration cannot be
replayed against a new challenge. ``identity`` is a signed message
(`proxystore.endpoint.identity`) with body ``{"from": uuid, "to":
"signaling", "nonce": <the challenge nonce>, "ts", "name"}``: it proves the
endpoint holds the private key its UUID derives from, so knowing the shared
secret is not enough to register as another endpoint.

Peers relay signed session descriptions to each other in ``payload``
(``{"signed": signed}``); the server cannot read them or forge them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from proxystore.exceptions import PeerError

CLOSE_AUTH_FAILED = 4001
CLOSE_REPLACED = 4002
CLOSE_PROTOCOL_ERROR = 4003
SERVER_IDENTITY = "signaling"
"""The ``to`` of registration bodies: the server has no key of its own."""


class SignalingProtocolError(PeerError):
    """A signaling message is not valid JSON or lacks a required field."""


def auth_digest(secret: str, nonce: str, uuid: str) -> str:
    """Return the proof that the registering endpoint knows the shared secret."""
    message = f"{nonce}:{uuid}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_auth(secret: str, nonce: str, uuid: str, proof: str) -> bool:
    """Check a registration's proof in constant time."""
    return hmac.compare_digest(auth_digest(secret, nonce, uuid), proof)


def encode(message: dict[str, Any]) -> str:
    """Serialize a signaling message."""
    return json.dumps(message, separators=(",", ":"))


def decode(raw: str | bytes) -> dict[str, Any]:
    """Parse a signaling message.

    Raises:
        SignalingProtocolError: If ``raw`` is not a JSON object with a string
            ``type``.
    """
    try:
        message = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise SignalingProtocolError("signaling message is not valid JSON") from err
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise SignalingProtocolError("signaling message has no string 'type'")
    return message


def require_str(message: dict[str, Any], field: str) -> str:
    """Return a required string field of a message.

    Raises:
        SignalingProtocolError: If the field is missing or not a string.
    """
    value = message.get(field)
    if not isinstance(value, str) or not value:
        raise SignalingProtocolError(
            f"signaling message {message.get('type')!r} lacks string field {field!r}"
        )
    return value


def verify_registration(message: dict[str, Any], nonce: str, window: float) -> str:
    """Check a registration's identity proof against the challenge ``nonce``.

    Returns:
        The UUID the registration proves (derived from its public key).

    Raises:
        SignalingProtocolError: If the proof is missing or malformed, the
            signature is wrong, the UUID is not derived from the key, or the
            proof answers another challenge or is too old.
    """
    from proxystore.endpoint.identity import IdentityError, open_signed

    uuid = require_str(message, "uuid")
    try:
        body, _ = open_signed(message.get("identity"))
    except IdentityError as err:
        raise SignalingProtocolError(f"identity proof for {uuid}: {err}") from err
    if body.get("from") != uuid:
        raise SignalingProtocolError(
            f"identity proof is for {body.get('from')!r}, not {uuid!r}"
        )
    if body.get("to") != SERVER_IDENTITY or body.get("nonce") != nonce:
        raise SignalingProtocolError("identity proof answers another challenge")
    ts = body.get("ts")
    if not isinstance(ts, (int, float)) or abs(time.time() - ts) > window:
        raise SignalingProtocolError("identity proof is outside the time window")
    return uuid
