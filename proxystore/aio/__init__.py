"""The async face: every store as an asyncio driver.

Example:
    ```python
    from proxystore import aio

    store = aio.init_store("file", name="my-store", store_dir="/tmp/ps")
    p = await store.aproxy([1, 2, 3])
    assert await aio.resolve(p) == [1, 2, 3]
    ```

Store classes (the same names as in `proxystore.store`) are imported on
first use, so a missing optional extra (say ``redis``) only matters to code
that uses that store, which gets a `MissingExtraError` naming the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxystore import registry
from proxystore._store_names import store_attribute
from proxystore.aio.resolve import resolve, resolve_all
from proxystore.proxy import Proxy
from proxystore.registry import STORES
from proxystore.store_factory import store_of_proxy

if TYPE_CHECKING:
    from proxystore.aio.base import Store
    from proxystore.aio.endpoint import EndpointStore
    from proxystore.aio.file import FileStore
    from proxystore.aio.globus import GlobusStore
    from proxystore.aio.local import LocalStore
    from proxystore.aio.redis import RedisStore

__all__ = [
    "STORES",
    "EndpointStore",
    "FileStore",
    "GlobusStore",
    "LocalStore",
    "RedisStore",
    "Store",
    "get_store",
    "init_store",
    "register_store",
    "resolve",
    "resolve_all",
    "unregister_store",
]


def __getattr__(name: str) -> Any:
    return store_attribute(__name__, name)


def init_store(
    store_type: str | STORES | type[Store[Any]],
    name: str,
    *,
    replace: bool = False,
    **kwargs: Any,
) -> Store[Any]:
    """Create an async store and register it under `name`.

    The same as `proxystore.store.init_store`, for the async face. Creating a
    store does no I/O, so this is a plain function.

    Raises:
        UnknownStoreTypeError: If `store_type` names no store.
        StoreExistsError: If `name` is registered as another store (naming
            both) and not `replace`.
    """
    store: Store[Any] = registry.init_store(
        store_type, name, "async", replace=replace, **kwargs
    )
    return store


def get_store(name_or_proxy: str | Proxy[Any]) -> Store[Any] | None:
    """Return the async face of a registered store, or of the store a proxy uses.

    Returns:
        The async store, or None if no store has this name.

    Raises:
        NotAStoreProxyError: If a proxy was given that no store made.
    """
    if isinstance(name_or_proxy, Proxy):
        store: Store[Any] = store_of_proxy(name_or_proxy, "async")
        return store
    found: Store[Any] | None = registry.find(name_or_proxy, "async")
    return found


def register_store(store: Store[Any], exist_ok: bool = False) -> None:
    """Register an async store instance under its name.

    Raises:
        StoreExistsError: If the name is taken and not `exist_ok`.
    """
    registry.register(store, "async", exist_ok=exist_ok)


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
