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


class NotAStoreProxyError(StoreNotFoundError):
    """A proxy was given where a store's proxy is needed, but a store did not make it.

    ProxyStore 0.4 called this `ProxyStoreFactoryError`.
    """

    def __init__(self, factory: object) -> None:
        self.factory_type = type(factory).__name__
        super().__init__(f"<proxy whose factory is {self.factory_type}>")
        self.args = (
            f"the proxy was not made by a store: its factory is a "
            f"{self.factory_type}, not a StoreFactory",
        )


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


class MissingKeyError(ProxyStoreError, KeyError):
    """The object for a key is not in the store (never set, or evicted).

    A `KeyError` (hence a `LookupError`), as ProxyStore 0.4's
    `get_timestamp` raised, and its `ProxyResolveMissingKey`.
    """

    def __init__(self, key: object, store: str) -> None:
        self.key = key
        self.store = store
        super().__init__(
            f"key {key!r} is not in store {store!r} (never set or evicted)"
        )

    def __str__(self) -> str:
        # KeyError's own __str__ would quote the message like a key.
        return str(self.args[0])


class ProxyResolveError(ProxyStoreError):
    """A proxy's factory failed in a way that must not look like a missing attribute.

    Raised when a factory raises `AttributeError` (which Python would
    otherwise swallow in `hasattr` or turn into a misleading message). The
    original error is the ``__cause__``.
    """


class SerializationError(ProxyStoreError):
    """An object could not be serialized, or a payload is corrupt."""


class NotBytesError(SerializationError, TypeError):
    """Bytes were required (``serialize=False`` stores bytes as given), not this.

    Also a `TypeError`, as ProxyStore 0.4 raised.
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


# ProxyStore 0.4's names for errors of this hierarchy (see docs/migrating.md).
StoreError = ProxyStoreError
"""0.4's base class of store errors: every error here."""
UnknownStoreError = UnknownStoreTypeError
"""0.4's name for `UnknownStoreTypeError`."""
ProxyStoreFactoryError = NotAStoreProxyError
"""0.4's name for `NotAStoreProxyError`."""
ProxyResolveMissingKey = MissingKeyError
"""0.4's name for `MissingKeyError` raised when a proxy resolves."""
EndpointStoreError = StoreOperationError
"""0.4's error for an endpoint that refused or failed a request."""


def describe(value: Any, limit: int = 80) -> str:
    """Return a short, safe repr of a value for use in error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
