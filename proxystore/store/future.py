# Generated from proxystore/aio/future.py by scripts/generate_sync.py: DO NOT EDIT.
"""`Future`: a key whose value a producer sets later (``store.future()``).

A future is one store key that is empty until `set_result` or
`set_exception` writes it. Consumers wait with `result` (on an event loop,
``fut`` does too), or take `proxy`: a proxy that can be pickled and sent
before the value exists and resolves once it arrives. A future itself can
be pickled and sent to the process that will set it.

Waiters are woken by the store where it can: `LocalStore` wakes waiting
threads and tasks of its process directly, `RedisStore` blocks on its wake
list ``{K}:w`` (pushed in the same transaction as the value); other stores
poll with backoff (see `Store._exists_within`).
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

from proxystore import registry
from proxystore.exceptions import ConfigurationError, FutureStateError
from proxystore.proxy import Proxy
from proxystore.store_factory import _carried_config


_IS_SYNC = True

T = TypeVar("T")

_UNSET: Any = object()


class Future(Generic[T]):
    """A value a producer sets later, that consumers wait for.

    Made by `Store.future`.

    Args:
        store: The store holding the value.
        key: The (still empty) key the value goes to.
        timeout: Default seconds `result` and `proxy` wait; None waits
            without limit.
    """

    def __init__(
        self,
        store: Any,  # a Store: its class imports this module, not the reverse
        key: Any,
        *,
        timeout: float | None = None,
    ) -> None:
        _check_timeout(timeout, "timeout")
        self.store = store
        self.key = key
        self.timeout = timeout
        self._set = False

    def set_result(self, obj: T) -> None:
        """Store the value and wake every waiter.

        Raises:
            FutureStateError: If this future object was already set.
        """
        self._check_unset()
        self.store._check_open()
        payload = self.store._dump(obj, None)
        self.store._set_future(self.key, payload)
        self._set = True

    def set_exception(self, error: BaseException) -> None:
        """Fail the future: waiters raise `FutureError` with its type and message.

        The exception is sent as text (type name and message), never
        pickled.

        Raises:
            FutureStateError: If this future object was already set.
        """
        if not isinstance(error, BaseException):
            raise ConfigurationError(
                f"set_exception() takes an exception, got {type(error).__name__}"
            )
        self._check_unset()
        self.store._check_open()
        payload = self.store._future_error_payload(error)
        self.store._set_future(self.key, payload)
        self._set = True

    def done(self) -> bool:
        """Return whether a value or an error was set (one store round trip)."""
        if self._set:
            return True
        self.store._check_open()
        exists: bool = self.store._exists(self.key)
        return exists

    def result(self, timeout: float | None = _UNSET) -> T:
        """Wait for the value and return it.

        Args:
            timeout: Seconds to wait (default: the future's `timeout`);
                None waits without limit.

        Raises:
            FutureError: If the producer set an exception.
            StoreTimeoutError: If no value arrived within `timeout`.
        """
        wait = self.timeout if timeout is _UNSET else timeout
        _check_timeout(wait, "timeout")
        obj: T = self.store._resolve_future(self.key, wait)
        return obj

    def proxy(
        self,
        *,
        timeout: float | None = _UNSET,
        prefetch: bool = False,
        evict: bool = False,
    ) -> Proxy[T]:
        """Return a proxy of the value, usable before the value exists.

        Args:
            timeout: Seconds its first use waits for the value (default:
                the future's `timeout`); None waits without limit.
            prefetch: Start waiting (in the background) as soon as the
                proxy is unpickled in a consumer.
            evict: Delete the value from the store once the proxy resolved.
        """
        wait = self.timeout if timeout is _UNSET else timeout
        _check_timeout(wait, "timeout")
        self.store._check_open()
        proxy: Proxy[T] = self.store._make_proxy(
            self.key,
            evict,
            None,
            prefetch,
            None,
            False,
            math.inf if wait is None else float(wait),
        )
        return proxy


    def __reduce__(self) -> tuple[Any, ...]:
        config = self.store.store_config
        return (
            _rebuild_future,
            (config.kind, config.kwargs, self.key, self.timeout, _IS_SYNC),
        )

    def __repr__(self) -> str:
        return f"Future(store={self.store.name!r}, key={self.key!r})"

    def _check_unset(self) -> None:
        if self._set:
            raise FutureStateError(
                f"future {self.key!r} of store {self.store.name!r} is already set"
            )


def _check_timeout(timeout: Any, name: str) -> None:
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not timeout >= 0
    ):
        raise ConfigurationError(
            f"{name} must be seconds >= 0 or None, got {timeout!r}"
        )


def _rebuild_future(
    kind: Any, kwargs: Any, key: Any, timeout: Any, sync: Any
) -> Future[Any]:
    # Arrived from whoever sent the future: admitted like a proxy's store.
    config = _carried_config(kind, kwargs)
    registry.admit(config)
    _check_timeout(timeout, "timeout")
    store = registry.lookup_or_build(config, "sync" if sync is True else "async")
    return Future(store, store._validate_key(key), timeout=timeout)
