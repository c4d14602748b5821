"""Globus support for `GlobusStore`: endpoint configuration, login, transfers.

The store driver itself is `proxystore.aio.globus.GlobusStore` (async) and its
generated twin `proxystore.store.globus.GlobusStore` (blocking).
"""

from proxystore.globus.endpoints import GlobusEndpoint, GlobusEndpoints
from proxystore.globus.key import GlobusKey
from proxystore.globus.tokens import TokenFile

__all__ = ["GlobusEndpoint", "GlobusEndpoints", "GlobusKey", "TokenFile"]
