"""The endpoint HTTP API, served in-process without peers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from proxystore.endpoint.config import EndpointConfig, endpoint_dir
from proxystore.endpoint.credentials import create_api_token, read_api_token
from proxystore.endpoint.endpoint import Endpoint
from proxystore.endpoint.server import (
    EndpointServer,
    create_app,
    serve,
    signaling_state,
)
from proxystore.endpoint.storage import ObjectStorage
from proxystore.exceptions import ConfigurationError

pytestmark = pytest.mark.timeout(30)

MAX_OBJECT_SIZE = 64 * 1024
TOKEN = "ab" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EndpointServer]:
    config = EndpointConfig(
        name="solo",
        uuid=str(uuid.uuid4()),
        port=0,
        max_memory=1024,
        spill_dir=str(tmp_path / "spill"),
        max_object_size=MAX_OBJECT_SIZE,
    )
    async with EndpointServer(config, api_token=TOKEN) as running:
        yield running


@pytest.fixture
async def client(server: EndpointServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=AUTH) as http:
        yield http


async def test_describe_names_the_endpoint(
    server: EndpointServer, client: httpx.AsyncClient
) -> None:
    response = await client.get("/endpoint")
    assert response.status_code == 200
    description = response.json()
    handoff = description.pop("handoff")
    assert Path(handoff["dir"], "nonce").read_text() == handoff["nonce"]
    assert description == {
        "uuid": server.config.uuid,
        "name": "solo",
        "max_object_size": MAX_OBJECT_SIZE,
        "peering": False,
        "signaling": False,
    }


@pytest.mark.parametrize("size", [0, 1, 1024, 4096])
async def test_put_get_exists_delete(
    server: EndpointServer, client: httpx.AsyncClient, size: int
) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    owner = {"endpoint": server.config.uuid}
    assert (
        await client.put("/objects/k1", content=data, params=owner)
    ).status_code == 204
    got = await client.get("/objects/k1", params=owner)
    assert got.status_code == 200
    assert got.content == data
    assert (await client.get("/objects/k1/exists")).json() == {"exists": True}
    assert (await client.delete("/objects/k1")).status_code == 204
    assert (await client.delete("/objects/k1")).status_code == 204
    assert (await client.get("/objects/k1/exists")).json() == {"exists": False}
    missing = await client.get("/objects/k1")
    assert missing.status_code == 404
    assert missing.json()["error"] == "MissingKey"


async def test_bad_key_is_400_naming_the_reason(client: httpx.AsyncClient) -> None:
    response = await client.put("/objects/a%20b", content=b"x")
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidKeyError"
    assert "A-Z a-z 0-9" in response.json()["message"]
    long_key = "k" * 200
    response = await client.get(f"/objects/{long_key}")
    assert response.status_code == 400
    assert "1-128 characters" in response.json()["message"]


async def test_bad_owner_uuid_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/objects/k", params={"endpoint": "not-a-uuid"})
    assert response.status_code == 400
    assert "endpoint uuid is not a UUID" in response.json()["message"]


async def test_other_owner_without_peering_is_502(client: httpx.AsyncClient) -> None:
    other = str(uuid.uuid4())
    response = await client.get("/objects/k", params={"endpoint": other})
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "PeerConnectionError"
    assert "no signaling server configured" in body["message"]


@pytest.mark.parametrize("size", [MAX_OBJECT_SIZE + 1, 8 * 1024 * 1024])
async def test_oversized_body_is_413_with_clear_message(
    client: httpx.AsyncClient, size: int
) -> None:
    response = await client.put("/objects/big", content=b"x" * size)
    assert response.status_code == 413
    message = response.json()["message"]
    assert f"{size} bytes" in message
    assert f"max_object_size of {MAX_OBJECT_SIZE}" in message
    assert (await client.get("/objects/big/exists")).json() == {"exists": False}


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * MAX_OBJECT_SIZE

    response = await client.put("/objects/big", content=chunks())
    assert response.status_code == 413
    assert "max_object_size" in response.json()["message"]


async def test_objects_beyond_memory_spill_and_read_back(
    server: EndpointServer, client: httpx.AsyncClient
) -> None:
    data = b"s" * 4096
    assert (await client.put("/objects/spilled", content=data)).status_code == 204
    assert (await client.get("/objects/spilled")).content == data
    spill = Path(server.config.spill_dir or "")
    files = [p.name for p in spill.rglob("*") if p.is_file() and p.name != "owner"]
    assert files == ["spilled"]


async def test_stalled_request_body_times_out_with_504() -> None:
    endpoint = Endpoint(str(uuid.uuid4()), "stalled", ObjectStorage())
    runner = web.AppRunner(
        create_app(endpoint, 1024, body_idle_timeout=0.3, api_token=TOKEN)
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /objects/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
            + b"x" * 10
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 504")
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = next(
            int(line.split(b":")[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        message = json.loads(body)["message"]
        assert message == (
            "request body of PUT /objects/slow on client 127.0.0.1 "
            "did not finish within 0.3s"
        )
        writer.close()
        await writer.wait_closed()
        assert not await endpoint.exists("slow")
    finally:
        await runner.cleanup()


async def test_default_server_reads_its_token_and_refuses_unauthenticated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path))
    config = EndpointConfig(name="secure", uuid=str(uuid.uuid4()), port=0)
    token = read_api_token(create_api_token(endpoint_dir("secure")))
    async with (
        EndpointServer(config) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        anonymous = await http.get("/endpoint")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "AuthenticationError"
        put = await http.put("/objects/k", content=b"x")
        assert put.status_code == 401
        wrong = await http.get("/endpoint", headers=AUTH)
        assert wrong.status_code == 403
        right = await http.get(
            "/endpoint", headers={"Authorization": f"Bearer {token}"}
        )
        assert right.status_code == 200


async def test_default_server_without_a_token_file_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path))
    config = EndpointConfig(name="tokenless", uuid=str(uuid.uuid4()), port=0)
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(ConfigurationError, match="no API token file"):
        await serve(config, stop)
    with pytest.raises(ConfigurationError, match="non-empty API token"):
        create_app(Endpoint(config.uuid, "x", ObjectStorage(1024)), 1024, api_token="")


@pytest.mark.parametrize(
    ("peering", "connected", "attempted", "refused", "state"),
    [
        (False, False, False, None, "off"),
        (True, False, False, None, "connecting"),
        (True, True, True, None, "connected"),
        (True, False, True, "wrong secret", "refused"),
        (True, False, True, None, "retrying"),
    ],
)
def test_signaling_state_names(
    peering: bool, connected: bool, attempted: bool, refused: str | None, state: str
) -> None:
    assert signaling_state(peering, connected, attempted, refused) == state
