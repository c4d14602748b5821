"""The blocking store API: `init_store`, `get_store` and the sync stores.

The store classes in this package (`proxystore.store.base.Store`,
`proxystore.store.local.LocalStore`, `proxystore.store.file.FileStore`,
`proxystore.store.redis.RedisStore`...) are generated from `proxystore.aio`
by ``scripts/generate_sync.py``; this module and `utils` are hand-written.
The store classes are exported here under the names `proxystore.aio` uses
(`from proxystore.store import RedisStore`), imported on first use: a store
whose optional extra is missing raises `MissingExtraError` naming it.

Example:
    ```python
    import proxystore as ps

    store = ps.store.init_store("file", name="my-store", store_dir="/tmp/ps")
    p = store.proxy([1, 2, 3])
    assert p == [1, 2, 3]
    ```
"""

from __future__ import annotations

import copyreg
import importlib
import sys
import types
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxystore import registry
from proxystore._store_names import store_attribute
from proxystore.exceptions import (
    ConfigurationError,
    ProxyStoreFactoryError,
    StoreError,
    StoreExistsError,
    UnknownStoreError,
)
from proxystore.proxy import Proxy
from proxystore.registry import STORES
from proxystore.store_factory import StoreFactory, store_of_proxy

if TYPE_CHECKING:
    from proxystore.store.base import Store
    from proxystore.store.endpoint import EndpointStore
    from proxystore.store.file import FileStore
    from proxystore.store.globus import GlobusStore
    from proxystore.store.local import LocalStore
    from proxystore.store.redis import RedisStore

__all__ = [
    "STORES",
    "EndpointStore",
    "FileStore",
    "GlobusStore",
    "LocalStore",
    "ProxyStoreFactoryError",
    "RedisStore",
    "Store",
    "StoreError",
    "StoreExistsError",
    "StoreFactory",
    "UnknownStoreError",
    "get_store",
    "init_store",
    "register_store",
    "register_store_class",
    "unregister_store",
]


def init_store(
    store_type: str | STORES | type[Store[Any]],
    name: str,
    *,
    replace: bool = False,
    **kwargs: Any,
) -> Store[Any]:
    """Create a store and register it under `name`.

    Calling it again for the same store (same type, name and identity
    arguments: the server, directory or endpoints it reaches) returns the
    store already registered, whatever the tuning arguments (cache size,
    timeouts...). A store registered only because a received proxy named it
    is replaced.

    Args:
        store_type: A type name (``'local'``, ``'file'``, ``'redis'``,
            ``'globus'``, ``'endpoint'``), a `STORES` member, or a `Store`
            subclass (which becomes trusted, see `register_store_class`).
        name: The name to register the store under.
        replace: Register this store even if `name` is registered as another
            store (the old one is not closed).
        kwargs: The store's own arguments (see each store class).

    Returns:
        The (sync) store.

    Raises:
        UnknownStoreTypeError: If `store_type` names no store.
        StoreExistsError: If `name` is registered as another store (naming
            both) and not `replace`.
    """
    store: Store[Any] = registry.init_store(
        store_type, name, "sync", replace=replace, **kwargs
    )
    return store


def get_store(name_or_proxy: str | Proxy[Any]) -> Store[Any] | None:
    """Return the registered store with this name, or the store a proxy uses.

    For a proxy whose store this process has not seen yet, the store is
    rebuilt from the configuration the proxy carries and registered.

    Returns:
        The (sync) store, or None if no store has this name (as in
        ProxyStore 0.4).

    Raises:
        NotAStoreProxyError: If a proxy was given that no store made.
    """
    if isinstance(name_or_proxy, Proxy):
        store: Store[Any] = store_of_proxy(name_or_proxy, "sync")
        return store
    found: Store[Any] | None = registry.find(name_or_proxy, "sync")
    return found


def register_store(store: Store[Any], exist_ok: bool = False) -> None:
    """Register a store instance under its name.

    Raises:
        StoreExistsError: If the name is taken and not `exist_ok`.
    """
    registry.register(store, "sync", exist_ok=exist_ok)


def register_store_class(cls: type[Store[Any]]) -> None:
    """Trust a store class: received proxies naming it may build it here.

    Built-in stores are always trusted. Unpickling a proxy of any other
    class raises `UntrustedProxyError` (and imports nothing) unless the class
    was registered here, or this process passed it to `init_store`,
    registered an instance of it or created one.

    Raises:
        ConfigurationError: If `cls` is not a store class.
    """
    registry.register_store_class(cls)


def unregister_store(name: str) -> None:
    """Forget the store registered under `name`, both faces (no-op if unknown)."""
    registry.unregister(name)


_SUBMODULES = frozenset(
    [
        "base",
        "endpoint",
        "exceptions",
        "factory",
        "file",
        "globus",
        "local",
        "redis",
        "utils",
    ]
)


def __getattr__(name: str) -> Any:
    # `ps.store.redis.RedisStore` works as in 0.4 (which imported every store
    # module eagerly) while a store's extra is still imported only on use.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "_stores":
        _warn_private_stores()
        return {n: registry.lookup(n, "sync") for n in registry.registered_names()}
    return store_attribute(__name__, name)


def _warn_private_stores() -> None:
    warnings.warn(
        "proxystore.store._stores was ProxyStore 0.4's private registry; use "
        "get_store(name), register_store(store) and unregister_store(name)",
        DeprecationWarning,
        stacklevel=3,
    )


class _StoreModule(types.ModuleType):
    """This module, letting 0.4 code that reset `_stores` keep working."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_stores":
            super().__setattr__(name, value)
            return
        _warn_private_stores()
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                "proxystore.store._stores must be a mapping of name to store, "
                f"got {type(value).__name__}"
            )
        for registered in registry.registered_names():
            registry.unregister(registered)
        for store in value.values():
            register_store(store)


def _reduce_module(module: _StoreModule) -> tuple[Any, tuple[str]]:
    # Pickled by name like any module (cloudpickle, used by Dask, looks up
    # reducers by exact type).
    return importlib.import_module, (module.__name__,)


copyreg.pickle(_StoreModule, _reduce_module)
sys.modules[__name__].__class__ = _StoreModule
