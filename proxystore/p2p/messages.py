"""The message type exchanged between peers and the handler that answers it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any


@dataclasses.dataclass
class PeerMessage:
    """A request or response sent to another endpoint.

    Attributes:
        header: JSON-serializable metadata (operation, key, status...).
        body: Raw payload bytes; never interpreted or unpickled by the p2p layer.
    """

    header: dict[str, Any]
    body: bytes | bytearray | memoryview = b""


Handler = Callable[[str, PeerMessage], Awaitable[PeerMessage]]
"""Answers a peer's request: ``(peer_uuid, request) -> response``."""
