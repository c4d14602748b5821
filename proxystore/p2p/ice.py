"""Which local addresses WebRTC offers as ICE host candidates.

aioice offers every interface address except 127.0.0.1. Endpoints that only
ever peer on one host (tests, single-node deployments, sandboxes where only
loopback traffic is allowed) can keep ICE on loopback by listing addresses in
``PROXYSTORE_P2P_ICE_ADDRESSES`` (comma-separated, e.g. ``127.0.0.1``).
"""

from __future__ import annotations

import os
from typing import Any

import aioice.ice

ICE_ADDRESSES_ENV = "PROXYSTORE_P2P_ICE_ADDRESSES"

_default_host_addresses = aioice.ice.get_host_addresses


def configured_addresses() -> list[str] | None:
    """Return the addresses set in the environment, or None for aioice's default."""
    value = os.environ.get(ICE_ADDRESSES_ENV, "").strip()
    if not value:
        return None
    return [address.strip() for address in value.split(",") if address.strip()]


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = configured_addresses()
    if addresses is None:
        return _default_host_addresses(use_ipv4, use_ipv6)
    return [
        address
        for address in addresses
        if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


def apply_address_policy() -> None:
    """Make aioice gather host candidates from the configured addresses.

    Idempotent; without ``PROXYSTORE_P2P_ICE_ADDRESSES`` aioice's own choice
    is kept.
    """
    aioice.ice.get_host_addresses = _host_addresses


def selected_local_address(pc: Any) -> str | None:
    """Return our address on the ICE candidate pair ``pc`` selected, if known.

    That is the address the peer reaches us at, so the one worth advertising
    for the fast path. aiortc does not expose the pair publicly; this reads
    aioice's nominated pair and returns ``None`` if that is not available.
    """
    try:
        connection = pc.sctp.transport.transport._connection
        nominated = connection._nominated
        pair = nominated.get(1) or next(iter(nominated.values()))
        host = pair.local_candidate.host
    except (AttributeError, StopIteration, TypeError):
        return None
    return host if isinstance(host, str) and host else None
