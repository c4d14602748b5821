from __future__ import annotations

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from proxystore.p2p.ice import ICE_ADDRESSES_ENV, apply_address_policy


def test_unset_keeps_aioice_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ICE_ADDRESSES_ENV, raising=False)
    apply_address_policy()
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_configured_addresses_filtered_by_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ICE_ADDRESSES_ENV, "127.0.0.1, ::1")
    apply_address_policy()
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == ["::1"]


async def test_offer_carries_only_loopback_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ICE_ADDRESSES_ENV, "127.0.0.1")
    apply_address_policy()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("probe")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line
            for line in pc.localDescription.sdp.splitlines()
            if line.startswith("a=candidate")
        ]
        assert candidates
        assert all(" 127.0.0.1 " in line for line in candidates)
    finally:
        await pc.close()
