"""The direct paths of round 2 (issue #19) behave as the general ones do.

`LocalStore`'s one-step set and get, the plain frame, the cache of admitted
proxy configurations, and a first resolution without an AttributeError.
"""

from __future__ import annotations

import pickle
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from proxystore import aio, policy, registry
from proxystore.exceptions import SerializationError, UntrustedProxyError
from proxystore.proxy import Proxy, _set_target, is_resolved
from proxystore.serialize import (
    NOT_PLAIN,
    deserialize,
    join,
    plain_frame,
    plain_loads,
    serialize_parts,
)
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore


@pytest.fixture(autouse=True)
def _policy_reset() -> Iterator[None]:
    policy.reset()
    yield
    policy.reset()


OBJECTS: list[Any] = [b"", b"x" * 100, "text \udcff", [1, 2, 3], {"a": (1, 2.5)}, None]


@pytest.mark.parametrize("obj", OBJECTS)
def test_plain_frame_is_the_general_frame(obj: Any) -> None:
    data = plain_frame(obj)
    assert data == join(serialize_parts(obj, checksum=False))
    assert plain_loads(data) == obj == deserialize(data)


def test_plain_frame_leaves_out_of_band_and_dill_to_the_general_path() -> None:
    assert plain_frame(pickle.PickleBuffer(b"abc")) is None
    assert plain_frame(lambda: 1) is None


def test_plain_loads_reads_only_plain_frames() -> None:
    data = plain_frame([1, 2, 3])
    assert data is not None
    assert plain_loads(data[:-1]) is NOT_PLAIN  # truncated
    assert plain_loads(data + b"\x00") is NOT_PLAIN  # trailing bytes
    assert plain_loads(data[:12]) is NOT_PLAIN  # header cut in its length
    checked = join(serialize_parts([1, 2, 3]))
    assert plain_loads(checked) is NOT_PLAIN  # has a checksum: general path
    assert plain_loads(b"not a frame at all") is NOT_PLAIN


def test_corrupt_plain_payload_names_key_and_store(store_name: str) -> None:
    store = LocalStore(store_name)
    key = store.set([1, 2, 3])
    data = store._objects[key]
    assert type(data) is bytes
    # Same length, pickle body replaced by garbage.
    store._objects[key] = data[:20] + b"\xff" * (len(data) - 20)
    with pytest.raises(SerializationError, match=f"key {key!r} from store"):
        store.get(key)


def test_direct_get_keeps_cache_identity_and_missing_default(store_name: str) -> None:
    store = LocalStore(store_name, cache_size=2)
    key = store.set([1, 2])
    first = store.get(key)
    assert store.get(key) is first  # cached
    assert store.get("absent", default="d") == "d"
    store.evict(key)
    assert store.get(key) is None


def test_subclass_hooking_byte_methods_is_called(store_name: str) -> None:
    calls: list[str] = []

    class Hooked(LocalStore):
        def _get_bytes(self, key: str) -> Any:
            calls.append(key)
            return super()._get_bytes(key)

    store = Hooked(store_name)
    key = store.set("value")
    assert store.get(key) == "value"
    assert calls == [key]


def test_metrics_and_signing_keys_take_the_general_path(store_name: str) -> None:
    store = LocalStore(store_name, metrics=True)
    store.get(store.set(b"abc"))
    assert store.metrics is not None
    assert store.metrics["set"].count == 1
    assert store.metrics["get"].count == 1
    signed = LocalStore(f"{store_name}-signed", signing_keys=[("k1", b"0" * 32)])
    key = signed.set([1])
    assert plain_loads(signed._objects[key]) is NOT_PLAIN
    assert signed.get(key) == [1]
    registry.unregister(f"{store_name}-signed")


async def test_async_direct_paths(store_name: str) -> None:
    store = aio.LocalStore(store_name)
    key = await store.aset({"a": 1})
    assert await store.aget(key) == {"a": 1}
    assert await store.aget("absent", default=3) == 3
    proxy = await store.aproxy([4, 5])
    assert len(pickle.loads(pickle.dumps(proxy))) == 2


def test_admitted_configuration_is_checked_again_after_policy_changes() -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = FileStore("direct-paths-file", directory)
        blob = pickle.dumps(store.proxy_from_key("k" * 32))
        store.close()
        registry.unregister("direct-paths-file")
        policy.configure("open")
        pickle.loads(blob)
        registry.unregister("direct-paths-file")
        pickle.loads(blob)  # admitted from the cache
        policy.configure("strict", allow=[])
        registry.unregister("direct-paths-file")
        with pytest.raises(UntrustedProxyError, match="strict proxy policy"):
            pickle.loads(blob)
        registry.unregister("direct-paths-file")


def test_admitted_cache_keeps_argument_types_apart() -> None:
    assert registry._admitted_key("k", {"name": "n", "x": 1}) != (
        registry._admitted_key("k", {"name": "n", "x": True})
    )
    assert registry._admitted_key("k", {"name": "n", "x": [1]}) is None
    assert registry._admitted_key("k", {1: "n"}) is None


def test_target_set_elsewhere_is_not_fetched_again() -> None:
    calls: list[int] = []

    def factory() -> list[int]:
        calls.append(1)
        return [1, 2, 3]

    proxy: Proxy[list[int]] = Proxy(factory)
    _set_target(proxy, [9])
    assert len(proxy) == 1
    assert calls == []


def test_concurrent_first_uses_call_the_factory_once() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def factory() -> list[int]:
        calls.append(1)
        gate.wait(5)
        return [1, 2]

    proxy: Proxy[list[int]] = Proxy(factory)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(len(proxy))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [2, 2, 2, 2]
    assert calls == [1]
    assert is_resolved(proxy)
