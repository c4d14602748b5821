"""RedisStore's read of a large value: straight from the socket into its own buffer.

The sync face reads a value of at least 1 MiB that starts an ``MGET`` reply
itself (`_read_large_value`): a one-part frame as a `frame.Split` (its part
in a `bytes` of its own), anything else as one `bytes`; the async face
reads it from the stream into one `bytearray`. These tests check
what must not change (damage and signature checks, the chunked layout, the
version read after the value, the connection left in step) on a real
redis-server, and that the path is the one taken.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

import proxystore.store.redis as sync_redis
from proxystore import frame
from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.exceptions import PayloadSignatureError, SerializationError
from proxystore.signing import SigningKeys
from proxystore.store.redis import RedisStore
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
BIG = 3 * MiB  # over the 1 MiB the socket read starts at
KEYS = SigningKeys([("k1", bytes(range(32)))])
OTHER_KEYS = SigningKeys([("k1", bytes(range(1, 33)))])


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """The replies the sync face's reader `name` returned (`_NOT_LARGE` too)."""
    seen: list[Any] = []
    original = getattr(sync_redis, name)

    def spy(connection: Any) -> Any:
        reply = original(connection)
        seen.append(reply)
        return reply

    monkeypatch.setattr(sync_redis, name, spy)
    return seen


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The replies `_read_large_value` returned."""
    return _spy(monkeypatch, "_read_large_value")


def _store(server: RedisServer, name: str, **options: Any) -> RedisStore:
    return RedisStore(name, server.host, server.port, cache_size=0, **options)


def _async_store(server: RedisServer, name: str, **options: Any) -> AsyncRedisStore:
    return AsyncRedisStore(name, server.host, server.port, cache_size=0, **options)


def test_large_bytes_come_back_split_without_a_copy(
    redis_server: RedisServer, store_name: str, raw: redis.Redis, counted: list[Any]
) -> None:
    store = _store(redis_server, store_name)
    obj = os.urandom(BIG)
    key = store.set(obj)
    found = store._get_versioned(key)
    assert found is not None
    data, version = found
    assert isinstance(data, frame.Split)
    assert type(data.body) is bytes
    assert len(data.head) == frame.head_size(data.head)
    assert data.head + data.body == frame.stored_bytes(data)
    # The version after the value (read by redis-py's parser) is the one
    # the write stored.
    assert version == int(raw.get(f"{{{key}}}:v") or b"0") > 0
    assert store.get(key) == obj
    assert [reply is not sync_redis._NOT_LARGE for reply in counted] == [True, True]
    # The connection is in step: small gets after the large ones work.
    small = store.set(b"small")
    assert store.get(small) == b"small"
    assert counted[-1] is sync_redis._NOT_LARGE
    store.close()


def test_large_numpy_round_trip_owns_its_memory(
    redis_server: RedisServer, store_name: str, counted: list[Any]
) -> None:
    store = _store(redis_server, store_name)
    array = np.frombuffer(os.urandom(BIG), dtype=np.float64).copy()
    key = store.set(array)
    first = store.get(key)
    second = store.get(key)
    np.testing.assert_array_equal(first, array)
    np.testing.assert_array_equal(second, array)
    # Each get has memory of its own: nothing shared with the caller's
    # array, with another get or with the store.
    assert not np.shares_memory(first, array)
    assert not np.shares_memory(first, second)
    assert not first.flags.writeable  # a view of the bytes read, as before
    assert sum(reply is not sync_redis._NOT_LARGE for reply in counted) == 2
    store.close()


def test_large_value_missing_version_reads_as_version_zero(
    redis_server: RedisServer, store_name: str, raw: redis.Redis
) -> None:
    store = _store(redis_server, store_name)
    obj = os.urandom(BIG)
    key = store.set(obj)
    raw.delete(f"{{{key}}}:v")
    found = store._get_versioned(key)
    assert found is not None
    assert found[1] == 0
    assert store.get(key) == obj
    store.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "length"])
def test_damaged_large_value_is_refused_and_the_connection_survives(
    redis_server: RedisServer, store_name: str, raw: redis.Redis, damage: str
) -> None:
    store = _store(redis_server, store_name, max_connections=1)
    key = store.set(os.urandom(BIG))
    data = bytearray(raw.get(key) or b"")
    if damage == "flip":
        data[BIG // 2] ^= 1
    elif damage == "truncate":
        del data[-1]
    elif damage == "append":
        data += b"junk"
    else:
        data[12] ^= 1  # the part's length in the frame header
    raw.set(key, bytes(data))
    with pytest.raises(SerializationError, match=key):
        store.get(key)
    # One connection: the next get reads its own reply, not leftovers.
    assert store.get(store.set("next")) == "next"
    store.close()


def test_signed_large_value_verifies_before_loading(
    redis_server: RedisServer, store_name: str, raw: redis.Redis
) -> None:
    store = _store(redis_server, store_name, signing_keys=KEYS)
    obj = os.urandom(BIG)
    array = np.arange(BIG // 8, dtype=np.int64)
    key = store.set(obj)
    array_key = store.set(array)
    assert store.get(key) == obj
    np.testing.assert_array_equal(store.get(array_key), array)
    other = _store(redis_server, store_name + "-other", signing_keys=OTHER_KEYS)
    with pytest.raises(PayloadSignatureError):
        other.get(key)
    with pytest.raises(PayloadSignatureError):
        other.get(array_key)
    # A flipped byte of the part is refused (the checksum, checked first,
    # or the MAC, which with sign_full_data covers the part too).
    full = _store(
        redis_server, store_name + "-full", signing_keys=KEYS, sign_full_data=True
    )
    full_key = full.set(obj)
    data = bytearray(raw.get(full_key) or b"")
    data[-1] ^= 1
    raw.set(full_key, bytes(data))
    with pytest.raises((PayloadSignatureError, SerializationError)):
        full.get(full_key)
    for each in (store, other, full):
        each.close()


def test_unframed_large_value_is_read_whole(
    redis_server: RedisServer, store_name: str, raw: redis.Redis, counted: list[Any]
) -> None:
    store = _store(redis_server, store_name)
    obj = b"\x89PXF" + os.urandom(BIG)  # starts like a frame, is not one
    key = store.set(obj, serialize=False)
    assert store.get(key, deserialize=False) == obj
    assert type(counted[-1][0]) is bytes
    raw.set("large-garbage", b"\xff" * BIG)
    with pytest.raises(SerializationError):
        store.get("large-garbage")
    raw.delete("large-garbage")
    store.close()


# -- chunked objects: the manifest and chunk keys, unchanged -----------------


@pytest.fixture
def chunked(redis_server: RedisServer, store_name: str) -> Iterator[RedisStore]:
    store = _store(redis_server, store_name, chunk_size=MiB)
    yield store
    store.close()


@pytest.fixture
def joined(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The replies `_read_large_chunks` returned."""
    return _spy(monkeypatch, "_read_large_chunks")


def _chunk(raw: redis.Redis, key: str, index: int) -> bytes:
    return raw.get(f"{{{key}}}:c:{index}") or b""


def test_chunked_large_value_round_trip(
    chunked: RedisStore, raw: redis.Redis, joined: list[Any]
) -> None:
    obj = os.urandom(BIG + 12345)
    array = np.frombuffer(os.urandom(BIG), dtype=np.uint8).copy()
    key = chunked.set(obj)
    array_key = chunked.set(array)
    assert raw.strlen(key) == 8  # the manifest
    assert raw.exists(f"{{{key}}}:c:3")
    assert not raw.exists(f"{{{key}}}:c:4")
    assert chunked.get(key) == obj
    first = chunked.get(array_key)
    second = chunked.get(array_key)
    np.testing.assert_array_equal(first, array)
    assert not np.shares_memory(first, second)
    assert [type(reply).__name__ for reply in joined] == ["_Joined"] * 3
    stored = b"".join(_chunk(raw, key, index) for index in range(4))
    assert chunked.get(key, deserialize=False) == stored


def test_chunks_longer_than_the_first_are_joined_too(
    chunked: RedisStore, raw: redis.Redis, joined: list[Any]
) -> None:
    obj = os.urandom(BIG)
    key = chunked.set(obj)
    # 4 chunks: 3 of 1 MiB, then the rest of the frame's header's length.
    data = b"".join(_chunk(raw, key, index) for index in range(4))
    # Another writer's layout: two chunks, the second one longer.
    raw.delete(*(f"{{{key}}}:c:{index}" for index in range(4)))
    raw.set(f"{{{key}}}:c:0", data[: MiB + 5])
    raw.set(f"{{{key}}}:c:1", data[MiB + 5 :])
    raw.set(key, b"\x00PXC" + (2).to_bytes(4, "little"))
    assert chunked.get(key) == obj
    assert type(joined[-1]).__name__ == "_Joined"


def test_missing_chunk_reads_as_missing(
    chunked: RedisStore, raw: redis.Redis, joined: list[Any]
) -> None:
    key = chunked.set(os.urandom(BIG))
    raw.delete(f"{{{key}}}:c:1")
    assert chunked.get(key) is None
    assert joined[-1].value is None
    assert not chunked.exists(key)
    # The connection is in step after the chunks that were read.
    assert chunked.get(chunked.set("next")) == "next"


def test_damaged_chunk_is_refused(chunked: RedisStore, raw: redis.Redis) -> None:
    key = chunked.set(os.urandom(BIG))
    chunk = f"{{{key}}}:c:2"
    data = bytearray(raw.get(chunk) or b"")
    data[100] ^= 1
    raw.set(chunk, bytes(data))
    with pytest.raises(SerializationError, match="checksum"):
        chunked.get(key)


@pytest.mark.parametrize("count", [2, 5])
def test_wrong_manifest_count_is_refused_or_missing(
    chunked: RedisStore, raw: redis.Redis, count: int
) -> None:
    key = chunked.set(os.urandom(BIG))  # 4 chunks (the last 28 bytes)
    raw.set(key, b"\x00PXC" + count.to_bytes(4, "little"))
    if count < 4:
        with pytest.raises(SerializationError, match="truncated"):
            chunked.get(key)
    else:
        assert chunked.get(key) is None  # a chunk it names does not exist


# -- the async face and a cluster: the same values, read by redis-py ------------


async def test_async_face_reads_a_large_value_into_one_buffer(
    redis_server: RedisServer, store_name: str, raw: redis.Redis
) -> None:
    obj = os.urandom(BIG)
    array = np.frombuffer(os.urandom(BIG), dtype=np.float64).copy()
    async with _async_store(redis_server, store_name, max_connections=1) as store:
        key = await store.aset(obj)
        array_key = await store.aset(array)
        found = await store._aget_versioned(key)
        assert found is not None
        data, version = found
        assert isinstance(data, frame.Split)
        assert type(data.body) is bytearray
        assert len(data.head) == frame.head_size(data.head)
        assert version == int(raw.get(f"{{{key}}}:v") or b"0") > 0
        assert await store.aget(key) == obj
        first = await store.aget(array_key)
        second = await store.aget(array_key)
        np.testing.assert_array_equal(first, array)
        assert not np.shares_memory(first, second)
        assert not np.shares_memory(first, array)
        # One connection, still in step: small gets, a missing key, an
        # unframed large value.
        assert await store.aget(await store.aset("small")) == "small"
        assert await store.aget("absent") is None
        unframed = b"\x89PXF" + os.urandom(BIG)
        raw_key = await store.aset(unframed, serialize=False)
        assert await store.aget(raw_key, deserialize=False) == unframed


@pytest.mark.parametrize("damage", ["flip", "truncate", "length"])
async def test_async_face_refuses_a_damaged_large_value(
    redis_server: RedisServer, store_name: str, raw: redis.Redis, damage: str
) -> None:
    async with _async_store(redis_server, store_name, max_connections=1) as store:
        key = await store.aset(os.urandom(BIG))
        data = bytearray(raw.get(key) or b"")
        if damage == "flip":
            data[BIG // 2] ^= 1
        elif damage == "truncate":
            del data[-1]
        else:
            data[12] ^= 1
        raw.set(key, bytes(data))
        with pytest.raises(SerializationError, match=key):
            await store.aget(key)
        assert await store.aget(await store.aset("next")) == "next"


async def test_async_face_signed_large_value(
    redis_server: RedisServer, store_name: str
) -> None:
    obj = os.urandom(BIG)
    async with (
        _async_store(redis_server, store_name, signing_keys=KEYS) as store,
        _async_store(redis_server, store_name + "-o", signing_keys=OTHER_KEYS) as other,
    ):
        key = await store.aset(obj)
        assert await store.aget(key) == obj
        with pytest.raises(PayloadSignatureError):
            await other.aget(key)


async def test_async_face_chunked_large_value(
    redis_server: RedisServer, store_name: str
) -> None:
    obj = os.urandom(BIG + 12345)
    async with _async_store(redis_server, store_name, chunk_size=MiB) as store:
        key = await store.aset(obj)
        assert await store.aget(key) == obj


def test_cluster_large_get(
    redis_cluster: RedisClusterNodes, store_name: str, counted: list[Any]
) -> None:
    store = RedisStore(store_name, cluster_nodes=redis_cluster.seeds[:1], cache_size=0)
    obj = os.urandom(BIG)
    array = np.arange(BIG // 8, dtype=np.int64)
    keys = [store.set(obj), store.set(array)]
    assert store.get(keys[0]) == obj
    np.testing.assert_array_equal(store.get(keys[1]), array)
    assert sum(reply is not sync_redis._NOT_LARGE for reply in counted) == 2
    assert store.get_batch(keys)[0] == obj
    store.close()
