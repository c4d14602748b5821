"""proxystore: move large objects between processes through lazy transparent proxies.

``store.proxy(obj)`` puts an object in a store and returns a small proxy that
can be pickled and sent anywhere; the first real use of the proxy fetches the
object, and from then on it behaves exactly like it.
"""

from __future__ import annotations

from proxystore import store
from proxystore.proxy import Proxy, extract, is_resolved, resolve

__all__ = ["Proxy", "extract", "is_resolved", "resolve", "store"]
__version__ = "0.1.0"
