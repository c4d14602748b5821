"""The Redis key layout of ARCHITECTURE.md, seen from a plain redis client."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20


def commands_processed(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_commands_processed"])


@pytest.fixture
def store(redis_server: RedisServer, store_name: str) -> Iterator[RedisStore]:
    store = RedisStore(store_name, redis_server.host, redis_server.port, chunk_size=MiB)
    yield store
    store.close()


@pytest.fixture
def small_bulk_limit(raw: redis.Redis) -> Iterator[None]:
    old = str(raw.config_get("proto-max-bulk-len")["proto-max-bulk-len"])
    raw.config_set("proto-max-bulk-len", "1mb")
    yield
    raw.config_set("proto-max-bulk-len", old)


def test_value_and_version_keys(store: RedisStore, raw: redis.Redis) -> None:
    store.set(b"payload", key="plain", serialize=False)
    assert raw.get("plain") == b"payload"
    version = int(raw.get("{plain}:v"))
    assert store.get_timestamp("plain") == version / 1e9
    # Every key of the object hashes to K's cluster slot.
    assert key_slot(b"{plain}:v") == key_slot(b"plain")
    assert key_slot(b"{plain}:c:7") == key_slot(b"plain")


def test_chunked_layout_and_manifest(
    store: RedisStore, raw: redis.Redis, small_bulk_limit: None
) -> None:
    data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: 3 chunks of 1 MiB
    store.set(data, key="big", serialize=False)
    assert raw.get("big") == b"\x00PXC" + struct.pack("<I", 3)
    chunks = [raw.get(f"{{big}}:c:{index}") for index in range(3)]
    assert b"".join(chunks) == data
    assert raw.exists("{big}:v")
    assert store.get("big", deserialize=False) == data
    assert store.exists("big")
    raw.delete("{big}:c:2")
    assert not store.exists("big")
    assert store.get("big", default="gone") == "gone"
    store.evict("big")
    assert raw.keys("*big*") == []


def test_overwrite_drops_the_old_chunks(
    store: RedisStore, raw: redis.Redis, small_bulk_limit: None
) -> None:
    array = np.arange(400_000, dtype=np.int64)  # 3.2 MB: 4 chunks
    store.set(array, key="model")
    assert len(raw.keys("{model}:c:*")) == 4
    store.set(np.arange(200_000, dtype=np.int64), key="model")  # 2 chunks
    assert sorted(raw.keys("{model}:c:*")) == [b"{model}:c:0", b"{model}:c:1"]
    store.set("small", key="model")
    assert raw.keys("{model}:c:*") == []
    assert store.get("model", strict=True) == "small"
    store.evict("model")
    assert raw.keys("*model*") == []


def test_unchunked_set_and_get_are_one_round_trip_each(
    store: RedisStore, raw: redis.Redis
) -> None:
    store.exists("warm-up")
    before = commands_processed(raw)
    key = store.set([1, 2, 3])
    # One MSET of value and version (atomic), and the INFO of the first count.
    assert commands_processed(raw) - before == 2
    before = commands_processed(raw)
    assert store.get(key) == [1, 2, 3]
    assert commands_processed(raw) - before == 2  # MGET K {K}:v, and INFO


def test_minted_keys_fit_the_user_key_rule(store: RedisStore) -> None:
    from proxystore._shared import USER_KEY_PATTERN

    key = store.set("x")
    assert USER_KEY_PATTERN.fullmatch(key)


def test_user_key_overwrite_is_one_round_trip(
    store: RedisStore, raw: redis.Redis
) -> None:
    store.set("first", key="again")
    before = commands_processed(raw)
    store.set("second", key="again")
    # MULTI, GETRANGE of what the key held, MSET, EXEC; and INFO.
    assert commands_processed(raw) - before == 5
    assert store.get("again") == "second"


def test_stale_chunks_of_a_newer_write_are_kept(
    store: RedisStore, raw: redis.Redis, small_bulk_limit: None
) -> None:
    store.set(np.arange(400_000, dtype=np.int64), key="raced")  # 4 chunks
    chunks = [f"{{raced}}:c:{index}" for index in range(4)]
    # As if another writer replaced the object after this store's write.
    raw.set("{raced}:v", b"1")
    store._evict_stale_chunks("raced", b"2", chunks[2:])
    assert raw.exists(*chunks) == 4
    store._evict_stale_chunks("raced", b"1", chunks[2:])
    assert raw.exists(*chunks) == 2
