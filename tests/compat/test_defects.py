"""Issue 13's defects: what 0.4 code ran into, one test each."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

import proxystore as ps
from proxystore import aio
from proxystore.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    NotAStoreProxyError,
    StoreExistsError,
    UnknownStoreTypeError,
)
from proxystore.factory import Factory, LambdaFactory, SimpleFactory
from proxystore.globus.endpoints import GlobusEndpoint, GlobusEndpoints
from proxystore.proxy import Proxy, is_resolved
from proxystore.store import utils as store_utils
from proxystore.store.endpoint import EndpointStore
from proxystore.store.globus import GlobusStore
from proxystore.store.local import LocalStore

pytestmark = pytest.mark.timeout(30)

UUID_A = "00000000-0000-4000-8000-00000000000a"
UUID_B = "00000000-0000-4000-8000-00000000000b"


def test_get_store_of_unknown_name_is_none_on_both_faces() -> None:
    assert ps.store.get_store("never-registered") is None
    assert aio.get_store("never-registered") is None


def test_get_store_of_a_non_store_proxy_still_raises() -> None:
    p = Proxy(SimpleFactory([1]))
    with pytest.raises(NotAStoreProxyError, match="SimpleFactory"):
        ps.store.get_store(p)
    with pytest.raises(NotAStoreProxyError):
        aio.get_store(p)
    assert not is_resolved(p)


def test_endpoint_store_accepts_uuid_objects(store_name: str) -> None:
    store = EndpointStore(store_name, endpoints=[uuid.UUID(UUID_A), "site-b"])
    assert store.endpoints == [UUID_A, "site-b"]
    # The configuration a proxy carries stays plain strings.
    assert store.config()["endpoints"] == [UUID_A, "site-b"]
    with pytest.raises(ConfigurationError, match="names or uuids"):
        EndpointStore(store_name, endpoints=[42])  # type: ignore[list-item]


def test_endpoint_store_proxystore_dir_is_expanded(
    store_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = EndpointStore(store_name, [UUID_A], proxystore_dir="~/ps")
    assert store.proxystore_dir == str(tmp_path / "ps")
    with pytest.raises(ConfigurationError) as info:
        store.get((("0" * 24), UUID_A))
    assert str(tmp_path / "ps" / "endpoints") in str(info.value)


def test_globus_local_path_expands_home_and_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store_name: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PS_SUBDIR", "objects")
    endpoint = GlobusEndpoint(UUID_A, "/~/ps", "~/ps/$PS_SUBDIR", "host-a")
    assert endpoint.local_dir == str(tmp_path / "ps" / "objects")
    # The configuration keeps what was written: each host expands its own ~.
    assert endpoint.to_dict()["local_path"] == "~/ps/$PS_SUBDIR"
    store = GlobusStore(
        store_name,
        GlobusEndpoints([endpoint, GlobusEndpoint(UUID_B, "/b", "/b", "host-b")]),
        hostname="host-a",
        transfer_client=globus_sdk.TransferClient(),
    )
    assert (tmp_path / "ps" / "objects").is_dir()
    assert not (Path.cwd() / "~").exists()
    store.close()


def test_proxy_refuses_a_non_callable_factory() -> None:
    with pytest.raises(TypeError, match=r"callable factory.*'not callable'"):
        Proxy("not callable")  # type: ignore[arg-type]


def test_init_store_refuses_a_class_that_is_not_a_store(store_name: str) -> None:
    class NotAStore:
        def __init__(self, **kwargs: Any) -> None:
            raise AssertionError("must not be built")

    with pytest.raises(UnknownStoreTypeError, match="NotAStore"):
        ps.store.init_store(NotAStore, name=store_name)  # type: ignore[arg-type]
    assert ps.store.get_store(store_name) is None


def test_registering_one_store_twice_raises(store_name: str) -> None:
    store = LocalStore(store_name)
    ps.store.register_store(store)
    with pytest.raises(StoreExistsError, match=store_name):
        ps.store.register_store(store)
    ps.store.register_store(store, exist_ok=True)
    assert ps.store.get_store(store_name) is store


def test_globus_endpoints_lookup_of_a_non_uuid_is_a_key_error() -> None:
    endpoints = GlobusEndpoints([GlobusEndpoint(UUID_A, "/a", "/a", "a")])
    with pytest.raises(KeyError, match="'-1'"):
        endpoints["-1"]
    with pytest.raises(KeyError, match=UUID_B):
        endpoints[UUID_B]
    assert endpoints[uuid.UUID(UUID_A)].uuid == UUID_A


def test_factory_resolve_async_is_not_a_coroutine(store_name: str) -> None:
    # A coroutine here would be created and dropped: the 0.4 call would do nothing.
    assert Factory().resolve_async() is None
    assert SimpleFactory(1).resolve_async() is None
    store = LocalStore(store_name)
    ps.store.register_store(store)
    p = store.proxy([1, 2, 3])
    factory = ps.proxy.get_factory(p)
    assert factory.resolve_async() is None  # type: ignore[attr-defined, func-returns-value]
    assert factory._pending is not None  # type: ignore[attr-defined]
    assert p == [1, 2, 3]


def test_proxy_resolve_async_starts_a_fetch_and_ignores_other_factories(
    store_name: str,
) -> None:
    store = LocalStore(store_name, metrics=True)
    ps.store.register_store(store)
    p = store.proxy([4, 5])
    ps.proxy.resolve_async(p)
    assert ps.proxy.get_factory(p)._pending is not None  # type: ignore[attr-defined]
    assert p == [4, 5]
    assert store.metrics is not None
    assert store.metrics["get"].count == 1
    plain = Proxy(LambdaFactory(list, (1, 2)))
    ps.proxy.resolve_async(plain)
    assert not is_resolved(plain)
    assert ps.proxy.get_key(plain) is None
    assert ps.proxy.get_key(p) == store_utils.get_key(p)


async def test_async_face_awaits_aresolve(store_name: str) -> None:
    store = aio.LocalStore(store_name)
    aio.register_store(store)
    p = await store.aproxy({"a": 1})
    assert await ps.proxy.get_factory(p).aresolve() == {"a": 1}  # type: ignore[attr-defined]
    assert await aio.resolve(Proxy(LambdaFactory(dict, a=2))) == {"a": 2}


def test_redis_pool_needs_no_command_name() -> None:
    import inspect

    from proxystore.aio.redis import _Pool

    # redis-py >= 5.3 (the floor in pyproject.toml is no lower) takes get_connection()
    # without a command name; older ones required one.
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    floor = re.search(r'"redis\[hiredis\]>=(\d+)\.(\d+)"', pyproject)
    assert floor is not None
    assert (int(floor[1]), int(floor[2])) >= (5, 3)
    assert list(inspect.signature(_Pool.get_connection).parameters) == ["self"]


def test_globus_and_endpoint_stores_refuse_user_keys(
    store_name: str, tmp_path: Path
) -> None:
    endpoint = EndpointStore(store_name, [UUID_A])
    with pytest.raises(InvalidKeyError, match="endpoint that owns the object"):
        endpoint.set(b"x", key="mine")
    with pytest.raises(InvalidKeyError, match="EndpointStore"):
        endpoint.proxy("x", key="mine")
    globus = GlobusStore(
        store_name,
        GlobusEndpoints(
            [
                GlobusEndpoint(UUID_A, "/a", str(tmp_path), "host-a"),
                GlobusEndpoint(UUID_B, "/b", "/b", "host-b"),
            ]
        ),
        hostname="host-a",
        transfer_client=globus_sdk.TransferClient(),
    )
    with pytest.raises(InvalidKeyError, match="Transfer task"):
        globus.set_batch([b"x"], keys=["mine"])
    assert os.listdir(tmp_path) == []
    globus.close()


def test_globus_endpoints_0_4_helpers() -> None:
    endpoints = GlobusEndpoints.from_dict(
        {
            UUID_A: {
                "endpoint_path": "/~/a",
                "local_path": "/a",
                "host_regex": re.compile(r"login\d+"),
            },
            UUID_B: {"endpoint_path": "/~/b", "local_path": "/b", "host_regex": "b.*"},
        }
    )
    assert endpoints.get_by_host("login3").uuid == UUID_A
    assert endpoints.get_by_host("bravo").uuid == UUID_B
    with pytest.raises(ValueError, match="laptop"):
        endpoints.get_by_host("laptop")
    assert endpoints.dict() == endpoints.to_dict()
    assert endpoints.dict()[UUID_A]["host_regex"] == r"login\d+"
    assert GlobusEndpoints.from_dict(endpoints.dict()) == endpoints
