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


class MissingExtraError(ProxyStoreError, ImportError):
    """A store class was used whose optional extra is not installed."""


class StoreExistsError(ProxyStoreError):
    """A store with this name is already registered with another configuration.

    Attributes:
        name: The store name.
        registered: The registered store's configuration, described.
        requested: The configuration that was asked for, described.
    """

    def __init__(
        self, name: str, registered: str | None = None, requested: str | None = None
    ) -> None:
        self.name = name
        self.registered = registered
        self.requested = requested
        if registered is None or requested is None:
            message = f"a store named {name!r} is already registered"
        else:
            message = (
                f"a store named {name!r} is already registered as {registered}, "
                f"not {requested}"
            )
        super().__init__(
            f"{message}; pick another name, pass replace=True (init_store) or "
            "exist_ok=True (register_store), or unregister_store() it first"
        )


class UntrustedProxyError(ProxyStoreError):
    """A received proxy names something this process will not build, import or reach.

    Raised while unpickling a store proxy (before anything is built, imported
    or connected) when its store class is neither built in nor registered
    with `register_store_class`, when its configuration carries an argument
    the class does not declare, a secret, or anything but plain data, or when
    the proxy policy (`proxystore.policy`) does not allow its configuration.
    """


class StoreIdentityError(UntrustedProxyError, ValueError):
    """A proxy names a store that differs from the one registered under its name.

    Also a `ValueError`, as ProxyStore 0.4 raised for a factory whose store
    type differed from the store registered under its name.

    Attributes:
        name: The store name.
        registered: The registered store's configuration, described.
        carried: The configuration the proxy carries, described.
    """

    def __init__(self, name: str, registered: str, carried: str) -> None:
        self.name = name
        self.registered = registered
        self.carried = carried
        super().__init__(
            f"a proxy names store {name!r} as {carried}, but this process "
            f"registered {name!r} as a store of type {registered}; refusing to "
            "resolve it "
            "through either (one owner per store name)"
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

    @property
    def store_name(self) -> str:
        """The store's name (0.4's `ProxyResolveMissingKey.store_name`)."""
        return self.store


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


class NotBytesError(SerializationError, TypeError):
    """Bytes were required (``serialize=False`` stores bytes as given), not this.

    Also a `TypeError`, as ProxyStore 0.4 raised.
    """


class NotAPayloadError(SerializationError, ValueError):
    """`deserialize` was given something that is not bytes-like.

    Also a `ValueError`, as ProxyStore 0.4 raised.
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


class LimitExceededError(StoreOperationError):
    """An endpoint refused an operation because it would pass one of its limits.

    Attributes:
        limit: Name of the limit (``max_object_size``, ``max_memory``,
            ``max_spill``, ``max_requests``...), as in the endpoint's
            configuration.
    """

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


class AuthenticationError(ProxyStoreError):
    """A server refused our credentials, or we have none to present."""


class BatchWriteError(StoreOperationError):
    """A batch write failed part-way; what it wrote was removed, or is listed.

    Attributes:
        store: The store's name.
        remaining: Keys (or a description) of what it wrote and could not
            remove; empty when nothing it wrote is left.

    The first error the batch hit is the ``__cause__``.
    """

    def __init__(
        self,
        store: str,
        operation: str,
        count: int,
        error: BaseException,
        *,
        written: int,
        remaining: list[Any],
        detail: str = "",
    ) -> None:
        self.store = store
        self.remaining = remaining
        if remaining:
            outcome = (
                f"{len(remaining)} objects it wrote could not be removed and may "
                f"remain: {describe(remaining, 400)}"
            )
        elif written:
            outcome = f"the {written} objects it wrote were removed"
        else:
            outcome = "nothing it wrote remains"
        if detail:
            outcome += f"; {detail}"
        super().__init__(
            f"{operation} of {count} objects on store {store!r} failed "
            f"({outcome}): {error}"
        )


class InvalidArgumentError(ProxyStoreError, TypeError):
    """An operation was given an argument of the wrong type or form."""


class FutureError(ProxyStoreError):
    """The producer of a future set an exception instead of a result.

    Carries the remote exception's type and message as text: the exception
    itself is never pickled, so a consumer never unpickles what a producer
    chose to raise.

    Attributes:
        remote_type: ``module.QualName`` of the producer's exception.
        remote_message: ``str()`` of the producer's exception.
        key: The future's key.
        store: The store's name.
    """

    def __init__(
        self, remote_type: str, remote_message: str, key: object, store: str
    ) -> None:
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.key = key
        self.store = store
        super().__init__(
            f"future {key!r} of store {store!r} failed in its producer: "
            f"{remote_type}: {remote_message}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.remote_type, self.remote_message, self.key, self.store),
        )


class FutureStateError(ProxyStoreError):
    """A future object was set twice."""


class LifetimeEndedError(ProxyStoreError):
    """An object was added to a lifetime that already ended (closed or expired)."""


class StreamError(ProxyStoreError):
    """A stream of proxies (`proxystore.stream`) cannot go on."""


class MalformedEventError(StreamError, SerializationError):
    """A stream event is not one a producer makes; names the stream and entry id."""

    def __init__(self, stream: str, entry: str, problem: str) -> None:
        self.stream = stream
        self.entry = entry
        self.problem = problem
        super().__init__(f"stream {stream!r} entry {entry!r}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stream, self.entry, self.problem))


class StreamFullError(StreamError):
    """A producer found more unconsumed items in a stream than it may leave there."""


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
