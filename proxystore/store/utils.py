"""Small helpers for code that handles proxies made by stores."""

from __future__ import annotations

from typing import Any

from proxystore.exceptions import ProxyStoreError
from proxystore.proxy import Proxy, get_factory
from proxystore.store.factory import StoreFactory


def get_key(proxy: Proxy[Any]) -> Any:
    """Return the key of the object a store proxy refers to (never resolves it).

    Raises:
        ProxyStoreError: If the proxy was not made by a store.
    """
    factory = get_factory(proxy)
    if not isinstance(factory, StoreFactory):
        raise ProxyStoreError(
            f"proxy was not made by a store (its factory is {type(factory).__name__})"
        )
    return factory.key
