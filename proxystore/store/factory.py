"""`StoreFactory` under its ProxyStore 0.4 path.

The factory is face-neutral and lives in `proxystore.store_factory`; this
module re-exports it, and pickled proxies name `_rebuild` here.
"""

from __future__ import annotations

from proxystore.store_factory import StoreFactory, find_type, type_path
from proxystore.store_factory import _rebuild as _rebuild

__all__ = ["StoreFactory", "find_type", "type_path"]
