"""ProxyStore 0.4's `proxystore.store.exceptions`: names of `proxystore.exceptions`."""

from __future__ import annotations

from proxystore.exceptions import (
    NotAStoreProxyError,
    ProxyResolveMissingKey,
    ProxyStoreFactoryError,
    StoreError,
    StoreExistsError,
    UnknownStoreError,
)

__all__ = [
    "NotAStoreProxyError",
    "ProxyResolveMissingKey",
    "ProxyStoreFactoryError",
    "StoreError",
    "StoreExistsError",
    "UnknownStoreError",
]
