"""Peering between endpoints: signaling, WebRTC data channels and a TCP fast path.

`PeerManager` is the entry point: it registers with a signaling server
(`proxystore.p2p.signaling`), opens one WebRTC connection per peer on demand
and moves large bodies over a direct TCP stream when both sides allow it.
"""

from __future__ import annotations

from proxystore.p2p.manager import PeerManager
from proxystore.p2p.messages import Handler, PeerMessage

__all__ = ["Handler", "PeerManager", "PeerMessage"]
