"""Behaviours ProxyStore 0.4's own test suite relies on, found by running it here."""

from __future__ import annotations

import os
import pickle
import uuid
import warnings
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

import proxystore as ps
from proxystore.exceptions import (
    ConfigurationError,
    NotAStoreProxyError,
    SerializationError,
)
from proxystore.factory import Factory, SimpleFactory
from proxystore.globus.endpoints import GlobusEndpoint, GlobusEndpoints
from proxystore.proxy import Proxy
from proxystore.serialize import deserialize
from proxystore.store.base import Store, StoreFactory
from proxystore.store.globus import GlobusStore
from proxystore.store.local import LocalStore

pytestmark = pytest.mark.timeout(30)


class _KeyedFactory(Factory[Any]):
    """A user factory that names a key but was not made by a store."""

    def __init__(self, key: str) -> None:
        self.key = key

    def resolve(self) -> Any:
        return "from elsewhere"


@pytest.mark.parametrize("not_bytes", ["xxx", 42, None, [1, 2]])
def test_deserialize_of_a_non_payload_is_a_value_error(not_bytes: Any) -> None:
    with pytest.raises(ValueError, match=type(not_bytes).__name__) as info:
        deserialize(not_bytes)
    # ...and still one of ours, so `except SerializationError` keeps working.
    assert isinstance(info.value, SerializationError)


def test_deserialize_of_corrupt_bytes_is_not_a_value_error() -> None:
    with pytest.raises(SerializationError) as info:
        deserialize(b"99\nxxx")
    assert not isinstance(info.value, ValueError)


def test_stats_of_a_keyed_user_factory_are_its_keys_stats(store_name: str) -> None:
    store = LocalStore(store_name, stats=True)
    key = store.set([1, 2, 3])
    store.get(key)
    p: Proxy[Any] = Proxy(_KeyedFactory(key))
    stats = store.stats(p)
    assert stats["set"].calls == 1
    assert stats["get"].calls == 1
    assert "resolve" not in stats  # resolving it did not fetch from the store
    ps.proxy.resolve(p)
    assert store.stats(p)["get"].calls == 1


def test_stats_of_a_proxy_without_a_key_still_raises(store_name: str) -> None:
    store = LocalStore(store_name, stats=True)
    with pytest.raises(NotAStoreProxyError, match="SimpleFactory"):
        store.stats(Proxy(SimpleFactory([1])))


def test_0_4_factory_of_a_local_store_dict_resolves_without_carrying_it(
    store_name: str,
) -> None:
    data: dict[str, bytes] = {}
    store: Store[str] = ps.store.init_store("local", store_name, store_dict=data)
    key = store.set([1, 2, 3])
    ps.store.unregister_store(store_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        factory: Any = StoreFactory(  # type: ignore[call-arg]
            key, LocalStore, store_name, store_kwargs={"store_dict": data}
        )
    assert factory() == [1, 2, 3]
    assert "store_dict" not in factory.config.kwargs
    assert b"store_dict" not in pickle.dumps(factory)
    ps.store.unregister_store(store_name)


def test_resetting_private_stores_unregisters_every_name(store_name: str) -> None:
    store: Store[str] = ps.store.init_store("local", store_name)
    p = store.proxy([1, 2, 3])
    with pytest.warns(DeprecationWarning, match="unregister_store"):
        ps.store._stores = {}
    assert ps.store.get_store(store_name) is None
    # A proxy rebuilds its store, as after 0.4's reset.
    assert p == [1, 2, 3]
    rebuilt = ps.store.get_store(store_name)
    assert rebuilt is not None
    assert rebuilt is not store


def test_private_stores_mapping_registers_its_stores(store_name: str) -> None:
    store = LocalStore(store_name)
    with pytest.warns(DeprecationWarning, match="_stores"):
        ps.store._stores = {store_name: store}
    assert ps.store.get_store(store_name) is store
    with pytest.warns(DeprecationWarning, match="_stores"):
        assert ps.store._stores[store_name] is store
    with (
        pytest.warns(DeprecationWarning, match="_stores"),
        pytest.raises(ConfigurationError, match="mapping"),
    ):
        ps.store._stores = [store]
    # Other module attributes are set as usual.
    ps.store.some_attribute = 1  # type: ignore[attr-defined]
    assert ps.store.some_attribute == 1  # type: ignore[attr-defined]
    del ps.store.some_attribute  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["uuid", "endpoint_path", "local_path", "host_regex"])
def test_globus_endpoint_field_of_another_type_is_a_type_error(field: str) -> None:
    values: dict[str, Any] = {
        "uuid": "2c5f3d1e-2b7a-4c4e-9d1a-5e8f0a7b6c3d",
        "endpoint_path": "/~/",
        "local_path": "/tmp",
        "host_regex": "localhost",
        field: 1,
    }
    with pytest.raises(TypeError, match=f"{field} must be a non-empty string"):
        GlobusEndpoint(**values)


def test_globus_endpoints_with_0_4_style_ids_work_and_warn() -> None:
    with pytest.warns(DeprecationWarning, match="'EP1UUID' is not a UUID"):
        first = GlobusEndpoint("EP1UUID", "/~/", "/tmp/a", "localhost")
    with pytest.warns(DeprecationWarning, match="not a UUID"):
        second = GlobusEndpoint("EP2UUID", "/~/", "/tmp/b", r"^\w{4}4$")
    endpoints = GlobusEndpoints([first, second])
    assert endpoints["EP1UUID"] is first
    assert endpoints.get_by_host("host4") is second
    with pytest.raises(KeyError, match="'EP3UUID'"):
        endpoints["EP3UUID"]
    with pytest.warns(DeprecationWarning, match="not a UUID"):
        again = GlobusEndpoints.from_dict(endpoints.dict())
    assert [ep.uuid for ep in again] == ["EP1UUID", "EP2UUID"]


@pytest.mark.parametrize("bad", ["../etc", "a/b", "-leading", "x" * 65, "sp ace"])
def test_globus_ids_that_are_not_safe_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="not a UUID"):
        GlobusEndpoint(bad, "/~/", "/tmp", "localhost")


def test_globus_store_needs_two_endpoints(store_name: str, tmp_path: Path) -> None:
    only = GlobusEndpoint(
        "2c5f3d1e-2b7a-4c4e-9d1a-5e8f0a7b6c3d", "/~/", str(tmp_path), "host-a"
    )
    with pytest.raises(ValueError, match="two or more endpoints, got 1: 2c5f3d1e"):
        GlobusStore(
            store_name,
            [only],
            hostname="host-a",
            transfer_client=globus_sdk.TransferClient(),
        )
    assert os.listdir(tmp_path) == []


def _legacy_factory(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return StoreFactory(*args, **kwargs)


def test_0_4_factory_takes_constructor_objects_as_plain_data(
    store_name: str, tmp_path: Path
) -> None:
    from proxystore.store.file import FileStore

    store: Store[str] = ps.store.init_store("file", store_name, store_dir=tmp_path)
    key = store.set("v")
    factory = _legacy_factory(key, FileStore, store_name, {"store_dir": tmp_path})
    assert factory.config.kwargs["store_dir"] == str(tmp_path)
    assert factory() == "v"
    ends = [
        GlobusEndpoint(str(uuid.UUID(int=i + 1)), "/~/", f"/tmp/{i}", f"h{i}")
        for i in range(2)
    ]
    for given in (ends, GlobusEndpoints(ends)):
        legacy = _legacy_factory("k", GlobusStore, "g", {"endpoints": given})
        assert legacy.config.kwargs["endpoints"] == GlobusEndpoints(ends).to_dict()
        pickle.dumps(legacy)  # plain data only
    from proxystore.store.endpoint import EndpointStore

    ids = [uuid.UUID(int=7), "site-b"]
    legacy = _legacy_factory("k", EndpointStore, "e", {"endpoints": ids})
    assert legacy.config.kwargs["endpoints"] == [str(uuid.UUID(int=7)), "site-b"]


def test_0_4_factory_of_another_store_type_is_a_value_error(
    store_name: str, tmp_path: Path
) -> None:
    class _Other(LocalStore):
        pass

    store: Store[str] = ps.store.init_store("file", store_name, store_dir=tmp_path)
    key = store.set([1])
    factory = _legacy_factory(key, _Other, store_name, {})
    with pytest.raises(ValueError, match=r"registered .* as a store of type FileStore"):
        factory()
    assert store.exists(key)


def test_resolve_async_result_is_taken_once(keyed_store: Store[str]) -> None:
    key = keyed_store.set([1, 2, 3])
    factory = StoreFactory(keyed_store.store_config, key)
    factory.resolve_async()
    pending = factory._obj_future
    assert pending is not None
    assert factory() == [1, 2, 3]
    assert factory._obj_future is None  # the factory keeps no copy
    keyed_store.set([4], key=key)
    assert factory() == [4]  # a later resolve fetches again


def test_resolve_async_of_a_cached_object_starts_nothing(
    keyed_store: Store[str],
) -> None:
    key = keyed_store.set("cached")
    assert keyed_store.get(key) == "cached"
    factory = StoreFactory(keyed_store.store_config, key)
    factory.resolve_async()
    assert factory._obj_future is None
    strict = StoreFactory(keyed_store.store_config, key, strict=True)
    strict.resolve_async()  # strict must check the version: it still fetches
    assert strict._obj_future is not None
    assert strict() == "cached"


def test_store_module_still_pickles_by_name() -> None:
    import cloudpickle

    import proxystore.store

    assert pickle.loads(pickle.dumps(proxystore.store)) is proxystore.store

    def uses_module() -> Any:
        return proxystore.store.get_store("no-such-store")

    assert pickle.loads(cloudpickle.dumps(uses_module))() is None


def test_missing_key_error_names_key_and_store_as_0_4_did(store_name: str) -> None:
    from proxystore.store.exceptions import ProxyResolveMissingKey

    store = LocalStore(store_name)
    proxy = store.proxy(key="never-set")
    with pytest.raises(ProxyResolveMissingKey) as info:
        ps.proxy.resolve(proxy)
    assert info.value.key == "never-set"
    assert info.value.store_name == store_name == info.value.store


def test_stores_values_equal_their_classes_as_in_0_4() -> None:
    from proxystore.aio.local import LocalStore as AsyncLocalStore
    from proxystore.registry import STORES
    from proxystore.store.file import FileStore

    value = STORES.LOCAL.value
    assert value == LocalStore
    assert LocalStore == value
    assert value == AsyncLocalStore
    assert value != FileStore
    # ...and is still the dotted path, hashed and serialized as that string.
    assert value == "proxystore.aio.local.LocalStore"
    assert hash(value) == hash("proxystore.aio.local.LocalStore")
    assert STORES["LOCAL"].value == LocalStore
    assert STORES(str(value)) is STORES.LOCAL
    assert pickle.loads(pickle.dumps(STORES.FILE)) is STORES.FILE


def test_a_closed_store_is_never_handed_out_again(store_name: str) -> None:
    first: Store[str] = ps.store.init_store("local", store_name)
    key = first.set("kept")
    first.close()
    assert ps.store.get_store(store_name) is None
    second: Store[str] = ps.store.init_store("local", store_name)
    assert second is not first
    assert second.get(key) == "kept"  # the process's objects for the name
    # Closing a store that is not the registered one leaves the name alone.
    LocalStore(store_name).close()
    assert ps.store.get_store(store_name) is second


def test_local_store_dict_given_again_is_what_every_face_uses(store_name: str) -> None:
    first_dict: dict[str, bytes] = {}
    second_dict: dict[str, bytes] = {}
    store: Store[str] = ps.store.init_store("local", store_name, store_dict=first_dict)
    again: Store[str] = ps.store.init_store("local", store_name, store_dict=second_dict)
    assert again is store  # same identity: the registered store
    p = store.proxy([1, 2, 3])
    assert set(second_dict) == {ps.proxy.get_key(p)}
    assert first_dict == {}
    ps.store.unregister_store(store_name)
    assert p == [1, 2, 3]  # rebuilt from the proxy, reading the same dict


def test_init_store_applies_new_tuning_of_the_same_store(
    store_name: str, tmp_path: Path
) -> None:
    first: Store[str] = ps.store.init_store("file", store_name, store_dir=tmp_path)
    key = first.set([1, 2])
    # As in 0.4: the same store with other tuning replaces the registered one.
    again: Store[str] = ps.store.init_store(
        "file", store_name, store_dir=tmp_path, stats=True, cache_size=2
    )
    assert again is not first
    assert again.has_stats
    assert ps.store.get_store(store_name) is again
    assert again.get(key) == [1, 2]  # the same data
    # The same configuration returns the registered store.
    assert (
        ps.store.init_store(
            "file", store_name, store_dir=tmp_path, stats=True, cache_size=2
        )
        is again
    )
