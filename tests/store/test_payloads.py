"""Framed payloads on real stores: corruption is refused, signatures are enforced.

Stores are real: FileStore in a temporary directory, RedisStore on the
private redis-server, LocalStore. An "attacker" writes bytes straight into
the directory, the Redis server or the local store's memory. `Trap` objects
leave a marker file when unpickled, so a test proves a refused payload was
never deserialized.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pickle
import random
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import xxhash

import proxystore as ps
from proxystore import aio, frame
from proxystore._shared import local_objects, new_object_id
from proxystore.aio.file import FileStore as AsyncFileStore
from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.exceptions import (
    ConfigurationError,
    PayloadSignatureError,
    SerializationError,
)
from proxystore.serialize import deserialize, frame_custom, serialize
from proxystore.signing import ENV_KEYS, ENV_KEYS_FILE, SigningKeys
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer
from tests.traps import Trap

pytestmark = pytest.mark.timeout(120)

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
KEYS = SigningKeys([("k1", KEY1)])
ENTRY1 = f"k1:{base64.b64encode(KEY1).decode()}"


@pytest.fixture(autouse=True)
def _no_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEYS, raising=False)
    monkeypatch.delenv(ENV_KEYS_FILE, raising=False)


class Place:
    """A store kind, its raw storage, and a way to build stores over it."""

    def __init__(
        self,
        kind: str,
        make: Callable[..., Store[Any]],
        read: Callable[[str], bytes],
        write: Callable[[str, bytes], None],
    ) -> None:
        self.kind = kind
        self.make = make
        self.read = read
        self.write = write


@pytest.fixture
def raw_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _place(
    kind: str,
    store_name: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Place:
    if kind == "file":
        directory = tmp_path / "objects"

        def make_file(name: str = store_name, **options: Any) -> Store[Any]:
            return FileStore(name, directory, cache_size=0, **options)

        return Place(
            kind,
            make_file,
            lambda key: (directory / key).read_bytes(),
            lambda key, data: (directory / key).write_bytes(data),
        )
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        client: redis.Redis = request.getfixturevalue("raw_redis")

        def make_redis(name: str = store_name, **options: Any) -> Store[Any]:
            return RedisStore(name, server.host, server.port, cache_size=0, **options)

        def read_redis(key: str) -> bytes:
            value = client.get(key)
            assert isinstance(value, bytes)
            return value

        return Place(kind, make_redis, read_redis, lambda k, d: client.set(k, d))
    objects = local_objects(store_name)

    def make_local(name: str = store_name, **options: Any) -> Store[Any]:
        return LocalStore(name, cache_size=0, **options)

    return Place(kind, make_local, objects.__getitem__, objects.__setitem__)


@pytest.fixture(params=["file", "redis", "local"])
def place(request: pytest.FixtureRequest, store_name: str, tmp_path: Path) -> Place:
    return _place(request.param, store_name, tmp_path, request)


@pytest.fixture(params=["file", "redis"])
def shared_place(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> Place:
    """Stores whose bytes leave the process (so they carry a checksum)."""
    return _place(request.param, store_name, tmp_path, request)


# -- corruption ----------------------------------------------------------------


def _truncate(data: bytes) -> bytes:
    return data[:-1]


def _append(data: bytes) -> bytes:
    return data + b"\x00junk"


def _flip_header(data: bytes) -> bytes:
    # The first part length: both the checksum and the length check see it.
    return data[:12] + bytes([data[12] ^ 0x04]) + data[13:]


@pytest.mark.parametrize(
    "damage", [_truncate, _append, _flip_header], ids=["truncated", "junk", "flip"]
)
def test_damaged_payload_names_store_and_key(
    place: Place, damage: Callable[[bytes], bytes]
) -> None:
    store = place.make()
    key = store.set({"answer": 42, "text": "x" * 100})
    place.write(key, damage(place.read(key)))
    with pytest.raises(SerializationError) as info:
        store.get(key)
    assert repr(key) in str(info.value)
    assert repr(store.name) in str(info.value)
    with pytest.raises(SerializationError, match=key):
        store.proxy_from_key(key)["answer"]


def test_body_bit_flip_is_caught_by_the_checksum(shared_place: Place) -> None:
    store = shared_place.make()
    key = store.set(b"payload bytes" * 10)
    data = bytearray(shared_place.read(key))
    data[-5] ^= 0x10
    shared_place.write(key, bytes(data))
    with pytest.raises(SerializationError, match="checksum mismatch"):
        store.get(key)


def test_local_store_frames_without_checksum_others_with(place: Place) -> None:
    store = place.make()
    key = store.set([1, 2, 3])
    flags = frame.decode(place.read(key)).flags
    assert bool(flags & frame.CHECKSUM) == (place.kind != "local")


def _objects() -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    """Objects of several payload types and how to compare a read-back one."""
    array = np.random.default_rng(1).random(3000)
    return {
        "bytes": (os.urandom(2000), lambda got: got),
        "str": ("caf\u00e9 " * 300, lambda got: got),
        "pickle": ({"n": list(range(300)), "s": "v"}, lambda got: got),
        "numpy": (array, lambda got: got.tobytes()),
        "dill": (lambda x: x * 7 + 1, lambda got: got(3)),
    }


def test_corruption_campaign_never_returns_a_wrong_value(
    shared_place: Place,
) -> None:
    rng = random.Random(20261202)
    store = shared_place.make()
    raised = returned_equal = 0
    for label, (obj, view_of) in _objects().items():
        key = store.set(obj)
        original = shared_place.read(key)
        expected = view_of(obj)
        for _ in range(80):
            data = bytearray(original)
            mode = rng.random()
            if mode < 0.7:
                for _ in range(rng.randint(1, 3)):
                    data[rng.randrange(len(data))] ^= rng.randint(1, 255)
            elif mode < 0.85:
                del data[rng.randrange(len(data)) :]
            else:
                data += os.urandom(rng.randint(1, 100))
            if bytes(data) == original or not data:
                continue
            shared_place.write(key, bytes(data))
            try:
                got = store.get(key)
            except SerializationError:
                raised += 1
                continue
            # Only bytes no reader looks at (alignment padding) may change.
            assert view_of(got) == expected, f"{label}: silently wrong value"
            returned_equal += 1
    assert raised > 350
    # The numpy frame is the only one with padding.
    assert returned_equal < 30


def test_custom_serializer_bytes_are_framed_and_checked(
    shared_place: Place,
) -> None:
    calls: list[bytes] = []

    def deserializer(data: bytes) -> str:
        calls.append(data)
        return data[::-1].decode()

    store = shared_place.make()
    key = store.set("abc", serializer=lambda s: s.encode()[::-1])
    assert frame.decode(shared_place.read(key)).tag == ord("C")
    assert store.get(key, deserializer=deserializer) == "abc"
    assert calls == [b"cba"]
    shared_place.write(key, shared_place.read(key)[:-1])
    with pytest.raises(SerializationError, match="truncated"):
        store.get(key, deserializer=deserializer)
    assert len(calls) == 1


def test_custom_deserializer_errors_are_serialization_errors(place: Place) -> None:
    store = place.make()
    key = store.set("abc", serializer=lambda s: s.encode())

    def broken(data: bytes) -> Any:
        raise ValueError("nope")

    with pytest.raises(SerializationError, match=r"broken.*nope") as info:
        store.get(key, deserializer=broken)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(SerializationError, match="custom serializer returned int"):
        store.set("abc", serializer=lambda s: 5)


# -- signing ---------------------------------------------------------------------


def _splice(signed: bytes, new_part0: bytes) -> bytes:
    """Swap part 0 of a signed one-part frame, keeping its kid and MAC.

    The lengths and checksum are made right again, as an attacker would.
    """
    kid_len = signed[7]
    has_checksum = signed[5] & frame.CHECKSUM
    header_end = 20 + kid_len + (8 if has_checksum else 0) + 32
    kid = signed[20 : 20 + kid_len]
    mac = signed[header_end - 32 : header_end]
    prefix = signed[:12] + struct.pack("<Q", len(new_part0)) + kid
    if not has_checksum:
        return prefix + mac + new_part0
    checksum = struct.pack("<Q", xxhash.xxh3_64_intdigest(prefix + new_part0))
    return prefix + checksum + mac + new_part0


def _attacks(
    trap: Trap, store: Store[Any], read: Callable[[str], bytes]
) -> dict[str, bytes]:
    stream = pickle.dumps(trap, protocol=5)
    other = SigningKeys([("k1", KEY2)])
    legit_key = store.set({"harmless": True})
    return {
        "unsigned frame": serialize(trap),
        "pre-frame pickle": b"P" + stream,
        "same kid, other key": serialize(trap, keys=other),
        "unknown kid": serialize(trap, keys=SigningKeys([("evil", KEY2)])),
        "tampered signed payload": _splice(read(legit_key), stream),
    }


def test_signed_store_refuses_forged_payloads_without_unpickling(
    place: Place, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    store = place.make(signing_keys=KEYS)
    for label, data in _attacks(Trap(marker), store, place.read).items():
        key = new_object_id()
        place.write(key, data)
        with pytest.raises(PayloadSignatureError) as info:
            store.get(key)
        assert repr(key) in str(info.value), label
        assert repr(store.name) in str(info.value), label
        with pytest.raises(PayloadSignatureError):
            _ = store.proxy_from_key(key).anything
        assert not marker.exists(), f"{label} was unpickled"
    # The trap does work: without keys, the same bytes are unpickled.
    assert deserialize(serialize(Trap(marker))) == "trap sprung"
    assert marker.exists()


def test_signed_store_refuses_custom_payloads_before_the_deserializer(
    shared_place: Place, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    store = shared_place.make(signing_keys=KEYS)
    key = new_object_id()
    shared_place.write(key, b"".join(frame_custom(pickle.dumps(Trap(marker)))))
    with pytest.raises(PayloadSignatureError, match="not signed"):
        store.get(key, deserializer=pickle.loads)
    shared_place.write(key, pickle.dumps(Trap(marker)))  # pre-frame custom bytes
    with pytest.raises(PayloadSignatureError, match="pre-frame"):
        store.get(key, deserializer=pickle.loads)
    assert not marker.exists()
    signed = store.set(["ok"], serializer=pickle.dumps)
    assert store.get(signed, deserializer=pickle.loads) == ["ok"]


def test_store_without_keys_refuses_signed_payloads(
    shared_place: Place, store_name: str
) -> None:
    key = shared_place.make(signing_keys=KEYS).set([1])
    # Another name: keys given to a name serve every instance of it.
    keyless = shared_place.make(name=f"{store_name}-keyless")
    assert keyless.signing_key_ids == ()
    with pytest.raises(PayloadSignatureError, match=r"'k1'.*PROXYSTORE_SIGNING_KEYS"):
        keyless.get(key)


def test_instances_of_a_signing_store_name_share_its_keys(place: Place) -> None:
    store = place.make(signing_keys=KEYS)
    assert store.config()["signing_keys"] == "env"
    again = place.make()
    assert again.signing_key_ids == ("k1",)
    key = store.set([1])
    assert again.get(key) == [1]
    # An unregistered store's proxy resolves through a store rebuilt from
    # its configuration: that one verifies with the same keys.
    assert store.proxy({"k": "v"})["k"] == "v"


def test_signed_round_trips(place: Place) -> None:
    store = place.make(signing_keys=KEYS)
    objects = [b"raw", "text", {"a": [1, 2]}, np.arange(100_000), lambda x: x + 1]
    keys = [store.set(obj) for obj in objects]
    got = [store.get(key) for key in keys]
    assert got[:3] == objects[:3]
    np.testing.assert_array_equal(got[3], objects[3])
    assert got[4](1) == 2
    assert store.get_batch(store.set_batch(objects[:3])) == objects[:3]
    assert [list(p) for p in store.proxy_batch([[1], [2]])] == [[1], [2]]
    full = place.make(signing_keys=KEYS, sign_full_data=True)
    key = full.set(np.arange(10))
    assert frame.decode(place.read(key), keys=KEYS).flags & frame.MAC_FULL
    np.testing.assert_array_equal(store.get(key), np.arange(10))


def test_key_rotation(place: Place) -> None:
    old = SigningKeys([("k1", KEY1)])
    rotated = SigningKeys([("k2", KEY2), ("k1", KEY1)])
    written_before = place.make(signing_keys=old).set("before")
    store = place.make(signing_keys=rotated)
    assert store.get(written_before) == "before"
    written_after = store.set("after")
    assert frame.decode(place.read(written_after), keys=rotated).kid == "k2"
    with pytest.raises(PayloadSignatureError, match="'k2', which is not one"):
        place.make(signing_keys=old).get(written_after)
    only_new = place.make(signing_keys=SigningKeys([("k2", KEY2)]))
    assert only_new.get(written_after) == "after"
    with pytest.raises(PayloadSignatureError, match="'k1'"):
        only_new.get(written_before)


def test_chunked_redis_values_are_signed_end_to_end(
    redis_server: RedisServer, store_name: str
) -> None:
    array = np.random.default_rng(0).random(200_000)
    with RedisStore(
        store_name,
        redis_server.host,
        redis_server.port,
        chunk_size=100_000,
        cache_size=0,
        signing_keys=KEYS,
        sign_full_data=True,
    ) as store:
        key = store.set(array)
        np.testing.assert_array_equal(store.get(key), array)
        keys = store.set_batch([array, b"x" * 300_000])
        got = store.get_batch(keys)
        np.testing.assert_array_equal(got[0], array)
        assert got[1] == b"x" * 300_000


async def test_async_face_signs_and_verifies(
    redis_server: RedisServer, store_name: str, tmp_path: Path
) -> None:
    stores = [
        AsyncFileStore(store_name, tmp_path, cache_size=0, signing_keys=KEYS),
        AsyncRedisStore(
            store_name,
            redis_server.host,
            redis_server.port,
            cache_size=0,
            signing_keys=KEYS,
        ),
    ]
    for store in stores:
        async with store:
            key = await store.aset({"x": 1})
            assert await store.aget(key) == {"x": 1}
            keys = await store.aset_batch([1, "two"])
            assert await store.aget_batch(keys) == [1, "two"]
            options = {**store.config(), "signing_keys": None}
            unsigned = type(store)(**{**options, "name": f"{store_name}-keyless"})
            with pytest.raises(PayloadSignatureError):
                await unsigned.aget(key)
            await unsigned.aclose()


# -- keys never travel -------------------------------------------------------------


def test_keys_are_not_in_config_repr_or_pickled_proxy(tmp_path: Path) -> None:
    entry = ENTRY1.split(":")[1]
    store = FileStore("keys-stay-home", tmp_path, signing_keys=ENTRY1)
    assert store.signing_key_ids == ("k1",)
    proxy = store.proxy(np.arange(10))
    dumped = pickle.dumps(proxy)
    for text in (dumped, repr(store).encode(), repr(store.config()).encode()):
        assert KEY1 not in text
        assert entry.encode() not in text
    assert store.config()["signing_keys"] == "env"
    # Within the 300 B budget for a store directory of up to 50 characters.
    assert len(dumped) - len(str(tmp_path)) <= 250


def _consume(proxy_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import pickle, sys\n"
        "from proxystore.exceptions import ProxyStoreError\n"
        f"proxy = pickle.load(open({str(proxy_file)!r}, 'rb'))\n"
        "try:\n"
        "    print('value', proxy['v'])\n"
        "except ProxyStoreError as err:\n"
        "    print('refused', type(err).__name__, err)\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_KEYS)}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_consumer_rebuilding_the_store_takes_keys_from_its_environment(
    tmp_path: Path, store_name: str
) -> None:
    store = FileStore(store_name, tmp_path / "objects", signing_keys=KEYS)
    proxy_file = tmp_path / "proxy.pkl"
    proxy_file.write_bytes(pickle.dumps(store.proxy({"v": 7})))
    assert _consume(proxy_file, {ENV_KEYS: ENTRY1}).stdout == "value 7\n"
    key_file = tmp_path / "keys"
    key_file.write_text(f"# current\n{ENTRY1}\n")
    key_file.chmod(0o600)
    assert _consume(proxy_file, {ENV_KEYS_FILE: str(key_file)}).stdout == "value 7\n"
    refused = _consume(proxy_file, {}).stdout
    assert refused.startswith("refused ConfigurationError ")
    assert "signs its payloads" in refused
    assert "PROXYSTORE_SIGNING_KEYS" in refused


def test_other_face_of_a_registered_store_keeps_its_keys(
    tmp_path: Path, store_name: str
) -> None:
    store = ps.store.init_store(
        "file", name=store_name, store_dir=tmp_path, signing_keys=KEYS
    )
    proxy = store.proxy([1, 2, 3])
    assert asyncio.run(aio.resolve(proxy)) == [1, 2, 3]
    twin = aio.get_store(store_name)
    assert twin is not None
    assert twin.signing_key_ids == ("k1",)


# -- payloads written before frames ---------------------------------------------------


def test_pre_frame_payloads_read_without_keys_and_are_refused_with(
    place: Place, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    legacy = {
        "bytes": (b"B" + b"old bytes", b"old bytes"),
        "str": (b"S" + "caf\u00e9".encode(), "caf\u00e9"),
        "pickle": (b"P" + pickle.dumps({"old": 1}, protocol=5), {"old": 1}),
    }
    plain = place.make()
    signed = place.make(signing_keys=KEYS)
    for data, expected in legacy.values():
        key = new_object_id()
        place.write(key, data)
        assert plain.get(key) == expected
        with pytest.raises(PayloadSignatureError, match="pre-frame"):
            signed.get(key)
    key = new_object_id()
    place.write(key, b"P" + pickle.dumps(Trap(marker)))
    with pytest.raises(PayloadSignatureError):
        signed.get(key)
    assert not marker.exists()


@pytest.mark.parametrize("data", ["xxx", 12, None, ["a"]])
def test_deserialize_of_a_non_buffer_is_a_serialization_error(data: Any) -> None:
    with pytest.raises(SerializationError, match="bytes, bytearray or memoryview"):
        deserialize(data)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sign_full_data": "yes"}, "sign_full_data must be a bool"),
        ({"signing_keys": b"0" * 32}, "bare bytes"),
        ({"signing_keys": "k1:c2hvcnQ="}, "5 bytes"),
        ({"signing_keys": "env"}, "signs its payloads"),
    ],
)
def test_bad_signing_options_are_configuration_errors(
    store_name: str, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        FileStore(store_name, tmp_path, **options)
