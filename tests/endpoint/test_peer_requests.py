"""How an endpoint answers its peers' requests and routes requests by owner."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from proxystore.endpoint.endpoint import Endpoint
from proxystore.endpoint.storage import ObjectStorage
from proxystore.exceptions import PeerConnectionError, StoreOperationError
from proxystore.p2p.messages import PeerMessage

PEER = str(uuid.uuid4())


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint(str(uuid.uuid4()), "here", ObjectStorage())


async def _ask(
    endpoint: Endpoint, header: dict[str, object], body: bytes = b""
) -> PeerMessage:
    return await endpoint.handle_peer_request(PEER, PeerMessage(header, body))


async def test_peer_set_get_exists_evict(endpoint: Endpoint) -> None:
    assert (await _ask(endpoint, {"op": "set", "key": "k"}, b"data")).header == {
        "ok": True
    }
    got = await _ask(endpoint, {"op": "get", "key": "k"})
    assert got.header == {"ok": True, "found": True}
    assert bytes(got.body) == b"data"
    exists = await _ask(endpoint, {"op": "exists", "key": "k"})
    assert exists.header == {"ok": True, "exists": True}
    assert (await _ask(endpoint, {"op": "evict", "key": "k"})).header == {"ok": True}
    missing = await _ask(endpoint, {"op": "get", "key": "k"})
    assert missing.header == {"ok": True, "found": False}


@pytest.mark.parametrize(
    ("header", "error", "text"),
    [
        ({"op": "steal", "key": "k"}, "StoreOperationError", "unknown peer operation"),
        ({"op": "get", "key": "../k"}, "InvalidKeyError", "may only use"),
        ({"op": "get"}, "InvalidKeyError", "must be a str"),
    ],
)
async def test_bad_peer_requests_get_error_answers(
    endpoint: Endpoint, header: dict[str, object], error: str, text: str
) -> None:
    answer = await _ask(endpoint, header)
    assert answer.header["ok"] is False
    assert answer.header["error"]["error"] == error
    assert text in answer.header["error"]["message"]


async def test_storage_failure_is_an_error_answer(tmp_path: Path) -> None:
    storage = ObjectStorage(max_memory=0, spill_dir=tmp_path)
    endpoint = Endpoint(str(uuid.uuid4()), "here", storage)
    for spill in tmp_path.iterdir():
        shutil.rmtree(spill)
    answer = await _ask(endpoint, {"op": "set", "key": "k"}, b"data")
    assert answer.header["error"]["error"] == "StoreOperationError"
    assert "cannot spill object 'k'" in answer.header["error"]["message"]
    with pytest.raises(StoreOperationError, match="cannot spill"):
        await storage.set("k", b"data")


async def test_own_uuid_is_local_and_others_need_peering(endpoint: Endpoint) -> None:
    await endpoint.set("k", b"v", owner=endpoint.uuid.upper())
    assert await endpoint.get("k") == b"v"
    with pytest.raises(PeerConnectionError, match="no signaling server configured"):
        await endpoint.get("k", owner=PEER)
