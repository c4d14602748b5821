from __future__ import annotations

import threading
from pathlib import Path

import pytest

import proxystore as ps
from proxystore import aio, registry
from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.exceptions import (
    ConfigurationError,
    StoreExistsError,
    UnknownStoreTypeError,
)
from proxystore.registry import STORES
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore


@pytest.mark.parametrize("store_type", ["local", "LOCAL", STORES.LOCAL, LocalStore])
def test_init_store_accepts_names_members_and_classes(
    store_name: str, store_type: object
) -> None:
    store = ps.store.init_store(store_type, name=store_name)  # type: ignore[arg-type]
    assert isinstance(store, LocalStore)
    assert ps.store.get_store(store_name) is store


def test_unknown_store_type_lists_the_known_ones(store_name: str) -> None:
    with pytest.raises(UnknownStoreTypeError, match=r"'nosuch'.*local.*redis"):
        ps.store.init_store("nosuch", name=store_name)
    with pytest.raises(UnknownStoreTypeError):
        ps.store.init_store(42, name=store_name)  # type: ignore[arg-type]


def test_same_name_same_config_returns_existing(store_name: str) -> None:
    first = ps.store.init_store("local", name=store_name)
    assert ps.store.init_store("local", name=store_name) is first


def test_same_name_other_config_is_taken(store_name: str, tmp_path: Path) -> None:
    ps.store.init_store("local", name=store_name)
    with pytest.raises(StoreExistsError, match=store_name):
        ps.store.init_store("file", name=store_name, store_dir=tmp_path)


def test_register_and_unregister(store_name: str) -> None:
    store = LocalStore(store_name)
    ps.store.register_store(store)
    with pytest.raises(StoreExistsError):
        ps.store.register_store(LocalStore(store_name))
    replacement = LocalStore(store_name)
    ps.store.register_store(replacement, exist_ok=True)
    assert ps.store.get_store(store_name) is replacement
    ps.store.unregister_store(store_name)
    assert ps.store.get_store(store_name) is None


def test_one_name_two_faces(store_name: str, tmp_path: Path) -> None:
    sync = ps.store.init_store("file", name=store_name, store_dir=tmp_path)
    async_face = aio.get_store(store_name)
    assert isinstance(async_face, aio.FileStore)
    assert async_face.store_dir == sync.store_dir
    assert aio.init_store("file", name=store_name, store_dir=tmp_path) is async_face


def test_get_store_from_proxy_of_unknown_store_rebuilds_it(
    store_name: str, tmp_path: Path
) -> None:
    store = FileStore(store_name, tmp_path)
    p = store.proxy("hello")
    registry.unregister(store_name)
    rebuilt = ps.store.get_store(p)
    assert isinstance(rebuilt, FileStore)
    assert rebuilt is not store
    assert rebuilt.store_dir == store.store_dir
    assert p == "hello"


def test_threads_resolving_unregistered_store_do_not_race(
    store_name: str, tmp_path: Path
) -> None:
    import pickle

    store = FileStore(store_name, tmp_path)
    blobs = [pickle.dumps(store.proxy(i)) for i in range(16)]
    registry.unregister(store_name)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []
    results: dict[int, int] = {}

    def resolve(index: int) -> None:
        proxy = pickle.loads(blobs[index])
        barrier.wait(timeout=10)
        try:
            results[index] = proxy + 0
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == {i: i for i in range(16)}
    faces = {id(ps.store.get_store(store_name))}
    assert len(faces) == 1


class AsyncOnly(AsyncLocalStore):
    """A user's async driver with no generated sync twin."""


def test_async_only_store_has_no_sync_face(store_name: str) -> None:
    store = AsyncOnly(store_name)
    aio.register_store(store)
    assert aio.get_store(store_name) is store
    with pytest.raises(ConfigurationError, match="no sync face"):
        ps.store.get_store(store_name)


def test_config_keeps_only_non_default_arguments(
    store_name: str, tmp_path: Path
) -> None:
    store = FileStore(store_name, tmp_path, cache_size=16)
    assert store.store_config.kwargs == {"name": store_name, "store_dir": str(tmp_path)}
    bigger = FileStore(store_name, tmp_path, cache_size=32)
    assert bigger.store_config.kwargs["cache_size"] == 32


def test_explicit_defaults_name_the_same_store(store_name: str, tmp_path: Path) -> None:
    first = ps.store.init_store("file", name=store_name, store_dir=tmp_path)
    again = ps.store.init_store(
        "file", name=store_name, store_dir=tmp_path, cache_size=16, metrics=False
    )
    assert again is first


def test_proxy_of_a_fully_configured_store_stays_small(store_name: str) -> None:
    import pickle

    from proxystore.store.factory import StoreFactory
    from proxystore.store.redis import RedisStore

    store = RedisStore(
        store_name, hostname="redis.example.org", port=6380, password="pw"
    )
    factory: StoreFactory[object] = StoreFactory(
        store.store_config, "0123456789abcdef01234567", target_type="numpy:ndarray"
    )
    assert len(pickle.dumps(ps.Proxy(factory))) <= 400
