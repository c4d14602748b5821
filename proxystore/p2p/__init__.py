"""Peering between endpoints: signaling, WebRTC data channels and a TLS fast path.

`PeerManager` is the entry point: it registers with a signaling server
(`proxystore.p2p.signaling`) proving its identity key
(`proxystore.endpoint.identity`), opens one WebRTC connection per allowed
peer on demand from signed offers and answers, and moves large bodies over a
direct TLS stream pinned to the peer's key when both sides allow it.
"""

from __future__ import annotations

from proxystore.p2p.manager import PeerManager
from proxystore.p2p.messages import Handler, PeerMessage

__all__ = ["Handler", "PeerManager", "PeerMessage"]
