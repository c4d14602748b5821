"""proxystore: move large objects between processes through lazy transparent proxies.

``store.proxy(obj)`` puts an object in a store and returns a small proxy that
can be pickled and sent anywhere; the first real use of the proxy fetches the
object, and from then on it behaves exactly like it.
"""

from __future__ import annotations

import importlib
from typing import Any

from proxystore import store
from proxystore.proxy import Proxy, extract, is_resolved, resolve

__all__ = ["Proxy", "extract", "is_resolved", "resolve", "store"]
__version__ = "0.1.0"

_SUBMODULES = frozenset({"aio", "exceptions", "factory", "proxy", "serialize"})


def __getattr__(name: str) -> Any:
    # `ps.serialize.serialize(...)` works as in ProxyStore 0.4 without
    # importing every module up front.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
