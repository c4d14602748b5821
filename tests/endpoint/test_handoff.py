"""Large GET bodies handed to same-host clients as shared-memory files."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from proxystore.aio.endpoint import EndpointStore
from proxystore.endpoint.config import EndpointConfig, free_port
from proxystore.endpoint.credentials import create_api_token, read_api_token
from proxystore.endpoint.handoff import (
    HANDOFF_HEADER,
    HANDOFF_THRESHOLD,
    LENGTH_HEADER,
    HandoffDir,
    take_handoff,
    verify_handoff,
)
from proxystore.endpoint.server import EndpointServer
from proxystore.exceptions import SerializationError, StoreOperationError
from proxystore.frame import Split, head_size
from proxystore.serialize import deserialize, serialize

pytestmark = pytest.mark.timeout(60)

BIG = 3 * HANDOFF_THRESHOLD + 17


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[EndpointServer, str]]:
    config = EndpointConfig(name="shm", uuid=str(uuid.uuid4()), port=0)
    token_file = str(create_api_token(tmp_path))
    async with EndpointServer(config, api_token=read_api_token(token_file)) as server:
        yield server, token_file


def _handoff_dir(server: EndpointServer) -> Path:
    handoff = server._handoff
    assert handoff is not None
    return handoff.path


async def test_large_get_comes_as_a_file_that_is_then_gone(
    site: tuple[EndpointServer, str],
) -> None:
    server, token_file = site
    store = EndpointStore("shm", url=server.url, token_file=token_file)
    try:
        data = os.urandom(BIG)
        key = await store.aset(data)
        assert await store.aget(key) == data
        assert store._handoff == _handoff_dir(server)
        small = await store.aset(b"small")
        assert await store.aget(small) == b"small"
    finally:
        await store.aclose()
    left = sorted(path.name for path in _handoff_dir(server).iterdir())
    assert left == ["nonce", "owner"]


async def test_http_answers_with_the_file_or_the_whole_body(
    site: tuple[EndpointServer, str],
) -> None:
    server, token_file = site
    auth = {"Authorization": f"Bearer {read_api_token(token_file)}"}
    data = os.urandom(BIG)
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
        put = await http.put("/objects/big", content=data)
        assert put.status_code == 204
        handed = await http.get("/objects/big", headers={HANDOFF_HEADER: "1"})
        assert handed.status_code == 200
        assert handed.content == b""
        assert int(handed.headers[LENGTH_HEADER]) == BIG
        name = handed.headers[HANDOFF_HEADER]
        view = take_handoff(_handoff_dir(server), name, BIG)
        assert view == data
        assert view.readonly
        assert not (_handoff_dir(server) / name).exists()
        # Without the header (e.g. a client on another host): in the body,
        # written in pieces.
        whole = await http.get("/objects/big")
        assert whole.content == data


async def test_client_uses_files_only_when_it_sees_the_endpoints_nonce(
    tmp_path: Path,
) -> None:
    handoff = HandoffDir(str(uuid.uuid4()), ttl=5, base=tmp_path)
    try:
        assert verify_handoff({"handoff": handoff.describe()}) == handoff.path
        other = {"dir": str(handoff.path), "nonce": "00" * 32}
        assert verify_handoff({"handoff": other}) is None
        missing = {"dir": str(tmp_path / "elsewhere"), "nonce": handoff.nonce}
        assert verify_handoff({"handoff": missing}) is None
        assert verify_handoff({}) is None
    finally:
        handoff.close()
    assert not handoff.path.exists()


async def test_take_refuses_bad_names_sizes_and_links(tmp_path: Path) -> None:
    handoff = HandoffDir(str(uuid.uuid4()), ttl=5, base=tmp_path)
    try:
        with pytest.raises(StoreOperationError, match="malformed"):
            take_handoff(handoff.path, "../owner", 1)
        file = handoff.new(10)
        file.write(b"0123456789")
        name = handoff.publish(file)
        with pytest.raises(StoreOperationError, match="not a 11-byte regular file"):
            take_handoff(handoff.path, name, 11)
        link = "ab" * 16
        (handoff.path / link).symlink_to(handoff.path / name)
        with pytest.raises(StoreOperationError, match="cannot open"):
            take_handoff(handoff.path, link, 10)
        assert take_handoff(handoff.path, name, 10) == b"0123456789"
    finally:
        handoff.close()


def _publish(handoff: HandoffDir, data: bytes) -> str:
    file = handoff.new(len(data))
    file.write(data)
    return handoff.publish(file)


async def test_large_frames_are_taken_as_header_and_body_without_a_copy(
    tmp_path: Path,
) -> None:
    handoff = HandoffDir(str(uuid.uuid4()), ttl=5, base=tmp_path)
    try:
        data = os.urandom(BIG)
        framed = serialize(data)
        taken = take_handoff(
            handoff.path, _publish(handoff, framed), len(framed), head_size
        )
        assert isinstance(taken, tuple)
        split = Split(*taken)
        assert bytes(split.head) + split.body == framed
        # The bytes object read from the file is the one returned.
        assert deserialize(split) is split.body
        # A body that is not a one-part frame is mapped as before.
        plain = take_handoff(handoff.path, _publish(handoff, data), BIG, head_size)
        assert isinstance(plain, memoryview)
        assert plain == data
        # Damage in the body is caught when the split is decoded.
        damaged = bytearray(framed)
        damaged[-1] ^= 1
        name = _publish(handoff, bytes(damaged))
        taken = take_handoff(handoff.path, name, len(damaged), head_size)
        assert isinstance(taken, tuple)
        with pytest.raises(SerializationError, match="checksum"):
            deserialize(Split(*taken))
    finally:
        handoff.close()


async def test_store_get_of_a_large_bytes_reads_it_split(
    site: tuple[EndpointServer, str],
) -> None:
    server, token_file = site
    store = EndpointStore("shm", url=server.url, token_file=token_file)
    try:
        data = os.urandom(BIG)
        key = await store.aset(data)
        raw = await store._aget_bytes(key)
        assert isinstance(raw, Split)
        key = await store.aset(data)
        assert await store.aget(key) == data
    finally:
        await store.aclose()


async def test_untaken_files_expire_and_stale_dirs_are_swept(tmp_path: Path) -> None:
    endpoint = str(uuid.uuid4())
    stale = tmp_path / f"proxystore-handoff-{endpoint}-crashed"
    stale.mkdir()
    (stale / "owner").write_text("not a live process\n")
    handoff = HandoffDir(endpoint, ttl=0.05, base=tmp_path)
    try:
        assert not stale.exists()
        file = handoff.new(5)
        assert file is not None
        file.write(b"hello")
        name = handoff.publish(file)
        deadline = time.monotonic() + 10
        while (handoff.path / name).exists():
            assert time.monotonic() < deadline, "handed-off file never expired"
            await asyncio.sleep(0.02)
        assert handoff.outstanding == 0  # an expired file no longer counts
    finally:
        handoff.close()


async def test_client_follows_a_restarted_endpoint_to_its_new_directory(
    tmp_path: Path,
) -> None:
    config = EndpointConfig(name="again", uuid=str(uuid.uuid4()), port=free_port())
    token_file = str(create_api_token(tmp_path))
    token = read_api_token(token_file)
    store = EndpointStore("again", url=config.url, token_file=token_file)
    try:
        async with EndpointServer(config, api_token=token) as first:
            key = await store.aset(b"a" * BIG)
            assert await store.aget(key) == b"a" * BIG
            old = _handoff_dir(first)
        async with EndpointServer(config, api_token=token) as second:
            assert _handoff_dir(second) != old
            key = await store.aset(b"b" * BIG)
            assert await store.aget(key) == b"b" * BIG
            assert store._handoff == _handoff_dir(second)
    finally:
        await store.aclose()


async def test_untaken_files_count_against_the_cap(tmp_path: Path) -> None:
    handoff = HandoffDir(str(uuid.uuid4()), ttl=600.0, base=tmp_path, max_bytes=10)
    try:
        first = handoff.new(6)
        assert first is not None
        assert handoff.new(5) is None  # 11 > 10 while the first is outstanding
        discarded = handoff.new(4)
        assert discarded is not None
        discarded.discard()
        assert handoff.outstanding == 6
        first.write(b"x" * 6)
        name = handoff.publish(first)
        assert handoff.new(5) is None  # published and not taken: still counted
        take_handoff(handoff.path, name, 6).release()
        second = handoff.new(10)  # the taken file is noticed at the cap
        assert second is not None
        assert handoff.outstanding == 10
        second.discard()
        assert handoff.outstanding == 0
    finally:
        handoff.close()


async def test_gets_beyond_the_cap_come_in_the_response(tmp_path: Path) -> None:
    # Untaken files count up to max_memory: room for one of them, not two.
    config = EndpointConfig(
        name="cap", uuid=str(uuid.uuid4()), port=0, max_memory=BIG + 1
    )
    token_file = str(create_api_token(tmp_path))
    auth = {"Authorization": f"Bearer {read_api_token(token_file)}"}
    data = os.urandom(BIG)
    token = read_api_token(token_file)
    async with (
        EndpointServer(config, api_token=token) as server,
        httpx.AsyncClient(base_url=server.url, headers=auth) as http,
    ):
        put = await http.put("/objects/a", content=data)
        assert put.status_code == 204
        handed = await http.get("/objects/a", headers={HANDOFF_HEADER: "1"})
        assert handed.status_code == 200
        name = handed.headers[HANDOFF_HEADER]
        # A client that never takes its files gets bodies in the response.
        for key in ("a", "a", "a"):
            inline = await http.get(f"/objects/{key}", headers={HANDOFF_HEADER: "1"})
            assert inline.status_code == 200
            assert HANDOFF_HEADER not in inline.headers
            assert inline.content == data
        files = [p.name for p in _handoff_dir(server).iterdir()]
        assert sorted(files) == sorted(["nonce", "owner", name])
        # Once the file is taken, large bodies are handed off again.
        take_handoff(_handoff_dir(server), name, BIG).release()
        again = await http.get("/objects/a", headers={HANDOFF_HEADER: "1"})
        assert again.status_code == 200
        assert again.content == b""
        view = take_handoff(_handoff_dir(server), again.headers[HANDOFF_HEADER], BIG)
        assert view == data
        view.release()
