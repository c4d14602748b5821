"""The exceptions proxystore raises, rooted at `ProxyStoreError`.

Catch `ProxyStoreError` to handle anything the library raises on purpose.
Errors from a driver's client library are wrapped in one of these with
``raise ... from err`` so the original stays available as ``__cause__``.
"""

from __future__ import annotations

from typing import Any


class ProxyStoreError(Exception):
    """Base class of every error proxystore raises on purpose."""


class ConfigurationError(ProxyStoreError, ValueError):
    """A store or endpoint was configured with values that cannot work."""


class UnknownStoreTypeError(ConfigurationError):
    """`init_store` was given a store type that is not registered."""

    def __init__(self, store_type: object, known: list[str]) -> None:
        self.store_type = store_type
        self.known = known
        super().__init__(
            f"unknown store type {store_type!r}; known types: {', '.join(known)}"
        )


class StoreExistsError(ProxyStoreError):
    """A store with this name is already registered with another configuration."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a store named {name!r} is already registered; pick another name, "
            "pass exist_ok=True, or unregister_store() it first"
        )


class StoreNotFoundError(ProxyStoreError, LookupError):
    """No store is registered under the requested name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no store named {name!r} is registered")


class StoreClosedError(ProxyStoreError):
    """An operation was attempted on a store after it was closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"store {name!r} is closed")


class InvalidKeyError(ProxyStoreError, ValueError):
    """A key is malformed or unsafe for the store it was given to."""

    def __init__(self, key: object, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid key {key!r}: {reason}")


class MissingKeyError(ProxyStoreError, LookupError):
    """The object for a key is not in the store (never set, or evicted)."""

    def __init__(self, key: object, store: str) -> None:
        self.key = key
        self.store = store
        super().__init__(
            f"key {key!r} is not in store {store!r} (never set or evicted)"
        )


class ProxyResolveError(ProxyStoreError):
    """A proxy's factory failed in a way that must not look like a missing attribute.

    Raised when a factory raises `AttributeError` (which Python would
    otherwise swallow in `hasattr` or turn into a misleading message). The
    original error is the ``__cause__``.
    """


class SerializationError(ProxyStoreError):
    """An object could not be serialized, or a payload is corrupt."""


class PayloadSignatureError(SerializationError):
    """A payload's signature is missing, made with an unknown key, or wrong.

    Also raised for a signed payload read by a store that has no signing
    keys to check it with. The payload is never deserialized.
    """


class StoreConnectionError(ProxyStoreError, ConnectionError):
    """A store's server or peer could not be reached, or dropped the connection."""

    def __init__(self, target: str, detail: str = "") -> None:
        self.target = target
        message = f"cannot reach {target}"
        super().__init__(f"{message}: {detail}" if detail else message)


class StoreTimeoutError(ProxyStoreError, TimeoutError):
    """An operation on a store did not finish within its timeout."""

    def __init__(self, target: str, timeout: float, operation: str = "") -> None:
        self.target = target
        self.timeout = timeout
        what = f"{operation} on {target}" if operation else target
        super().__init__(f"{what} did not finish within {timeout:g}s")


class PeerError(ProxyStoreError):
    """Base class of errors talking to another endpoint (peer)."""


class PeerUnknownError(PeerError, LookupError):
    """No endpoint with this UUID is known to the signaling server."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        super().__init__(
            f"no endpoint {peer!r} is registered with the signaling server"
        )


class PeerConnectionError(PeerError, StoreConnectionError):
    """A peer could not be reached, refused us, or went away mid-request."""


class StoreOperationError(ProxyStoreError):
    """The store's server refused or failed an operation (other than a missing key)."""


def describe(value: Any, limit: int = 80) -> str:
    """Return a short, safe repr of a value for use in error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
