"""`GlobusStore` (async face) against a local Transfer API emulator.

Two endpoints are two directories; the emulator (tests/globus/emulator.py)
really copies files between them when a Transfer task runs, and the store's
globus-sdk `TransferClient` talks to it over loopback HTTP. "Hosts" are chosen
with the hostname override. What the emulator does not reproduce of the real
Globus service is listed in its docstring; the login refresh tests at the end
use globus_sdk.testing's recorded Auth/Transfer responses instead.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import globus_sdk
import numpy as np
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, get_last_request, load_response

from proxystore.aio.globus import GlobusStore
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    InvalidKeyError,
    PayloadSignatureError,
    StoreOperationError,
    StoreTimeoutError,
)
from proxystore.globus.endpoints import GlobusEndpoint, GlobusEndpoints
from proxystore.globus.key import GlobusKey
from proxystore.globus.tokens import TokenFile
from proxystore.serialize import serialize
from proxystore.signing import SigningKeys
from tests.globus import hosts
from tests.globus.emulator import TransferEmulator
from tests.globus.harness import TRANSFER_SCOPE, two_endpoints, write_login
from tests.traps import Trap

pytestmark = pytest.mark.timeout(60)

FAST: dict[str, Any] = {"polling_interval": 0.02, "timeout": 10.0}


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def login(home: Path) -> TokenFile:
    return write_login(home / "globus-tokens.json")


@pytest.fixture
def endpoints_and_roots(tmp_path: Path) -> tuple[GlobusEndpoints, dict[str, Path]]:
    return two_endpoints(tmp_path)


@pytest.fixture
def endpoints(
    endpoints_and_roots: tuple[GlobusEndpoints, dict[str, Path]],
) -> GlobusEndpoints:
    return endpoints_and_roots[0]


@pytest.fixture
def emulator(
    endpoints_and_roots: tuple[GlobusEndpoints, dict[str, Path]],
) -> Iterator[TransferEmulator]:
    with TransferEmulator(
        endpoints_and_roots[1], required_token="access-token"
    ) as running:
        yield running


@pytest.fixture
async def pair(
    login: TokenFile,
    endpoints: GlobusEndpoints,
    emulator: TransferEmulator,
    store_name: str,
) -> AsyncIterator[tuple[GlobusStore, GlobusStore]]:
    """The same store as seen from host-a and from host-b."""
    kwargs: dict[str, Any] = {"base_url": emulator.base_url, **FAST}
    a = GlobusStore(store_name, endpoints, hostname="host-a", **kwargs)
    b = GlobusStore(store_name, endpoints, hostname="host-b", **kwargs)
    async with a, b:
        yield a, b


def local_file(store: GlobusStore, key: GlobusKey) -> Path:
    return Path(store.endpoint.local_path) / key.filename


def status_polls(emulator: TransferEmulator) -> int:
    return sum(
        1 for method, path in emulator.requests if path.startswith("/v0.10/task/")
    )


async def test_set_on_a_get_on_b(
    pair: tuple[GlobusStore, GlobusStore], emulator: TransferEmulator
) -> None:
    a, b = pair
    value: dict[str, Any] = {
        "array": np.arange(100_000, dtype=np.float64),
        "text": "hello",
    }
    key = await a.aset(value)

    assert local_file(a, key).is_file()
    assert list(emulator.tasks) == [key.task_id]
    task = emulator.tasks[key.task_id]
    assert (task.source, task.destination) == (a.endpoint.uuid, b.endpoint.uuid)

    got = await b.aget(key)
    assert np.array_equal(got["array"], value["array"])
    assert got["text"] == "hello"
    assert local_file(b, key).read_bytes() == local_file(a, key).read_bytes()
    assert await b.aexists(key)
    # The source host never waits for its own copies.
    polls = status_polls(emulator)
    a._cache.clear()
    assert (await a.aget(key))["text"] == "hello"
    assert status_polls(emulator) == polls


async def test_get_on_b_waits_for_the_task(
    pair: tuple[GlobusStore, GlobusStore], emulator: TransferEmulator
) -> None:
    a, b = pair
    emulator.outcome = "hang"
    key = await a.aset(b"payload")
    emulator.polled.clear()
    pending = asyncio.create_task(b.aget(key))
    try:
        assert await asyncio.to_thread(emulator.polled.wait, 5)
        assert not pending.done()
        assert not local_file(b, key).exists()
        emulator.release(key.task_id)
        assert await asyncio.wait_for(pending, 5) == b"payload"
    finally:
        pending.cancel()


async def test_failed_task_is_an_error_naming_it(
    pair: tuple[GlobusStore, GlobusStore], emulator: TransferEmulator
) -> None:
    a, b = pair
    emulator.outcome = "fail"
    key = await a.aset("x")
    with pytest.raises(StoreOperationError) as info:
        await b.aget(key)
    assert key.task_id in str(info.value)
    assert "FAILED (PERMISSION_DENIED" in str(info.value)
    with pytest.raises(StoreOperationError, match=key.task_id):
        await b.aexists(key)


async def test_task_that_never_finishes_times_out(
    login: TokenFile,
    endpoints: GlobusEndpoints,
    emulator: TransferEmulator,
    store_name: str,
) -> None:
    emulator.outcome = "hang"
    kwargs: dict[str, Any] = {"base_url": emulator.base_url, "polling_interval": 0.02}
    async with GlobusStore(store_name, endpoints, hostname="host-a", **kwargs) as a:
        key = await a.aset("x")
    b = GlobusStore(store_name, endpoints, timeout=0.2, hostname="host-b", **kwargs)
    async with b:
        with pytest.raises(StoreTimeoutError) as info:
            await b.aget(key)
    message = str(info.value)
    assert key.task_id in message
    assert "still ACTIVE" in message
    assert "0.2s" in message


async def test_unknown_task_is_an_error(pair: tuple[GlobusStore, GlobusStore]) -> None:
    _, b = pair
    key = GlobusKey("0123abcd", "4c2b1e46-0000-4000-8000-000000000000")
    with pytest.raises(StoreOperationError, match="unknown to the service"):
        await b.aget(key)


async def test_evict_deletes_everywhere(
    pair: tuple[GlobusStore, GlobusStore], emulator: TransferEmulator
) -> None:
    a, b = pair
    key = await a.aset([1, 2, 3])
    assert await b.aget(key) == [1, 2, 3]

    await a.aevict(key)

    assert not local_file(a, key).exists()
    deletes = [task for task in emulator.tasks.values() if task.kind == "DELETE"]
    assert [task.destination for task in deletes] == [b.endpoint.uuid]
    assert await asyncio.to_thread(deletes[0].done.wait, 5)
    assert not local_file(b, key).exists()
    assert not await b.aexists(key)
    assert await b.aget(key) is None
    await a.aevict(key)  # evicting again is not an error


async def test_batch_shares_one_task(
    pair: tuple[GlobusStore, GlobusStore], emulator: TransferEmulator
) -> None:
    a, b = pair
    keys = await a.aset_batch([b"one", "two", [3]])
    assert len({key.task_id for key in keys}) == 1
    assert len(emulator.tasks) == 1
    assert await b.aget_batch(keys) == [b"one", "two", [3]]
    assert await a.aset_batch([]) == []
    assert len(emulator.tasks) == 1


async def test_invalid_keys(pair: tuple[GlobusStore, GlobusStore]) -> None:
    a, _ = pair
    bad_keys: list[Any] = [
        "name",
        ("../etc/passwd", ""),
        (".hidden", ""),
        ("f", "a b"),
        ("f", 1),
    ]
    for bad in bad_keys:
        with pytest.raises(InvalidKeyError):
            await a.aget(bad)
    key = await a.aset("ok")
    plain: Any = tuple(key)
    assert await a.aget(plain) == "ok"


def test_config_rebuilds_on_another_host(
    login: TokenFile,
    endpoints: GlobusEndpoints,
    emulator: TransferEmulator,
    store_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = GlobusStore(
        store_name, endpoints, hostname="host-a", base_url=emulator.base_url
    )
    config = a.config()
    assert json.loads(json.dumps(config)) == config
    assert "hostname" not in config
    monkeypatch.setenv("PROXYSTORE_GLOBUS_HOSTNAME", "host-b")
    b = GlobusStore(**pickle.loads(pickle.dumps(config)))
    assert b.endpoint.host_regex == "host-b"
    assert b.config() == config


def test_no_matching_endpoint(login: TokenFile, endpoints: GlobusEndpoints) -> None:
    with pytest.raises(ConfigurationError) as info:
        GlobusStore("s", endpoints, hostname="laptop")
    assert "'laptop'" in str(info.value)
    assert "'host-a', 'host-b'" in str(info.value)


def test_missing_login(home: Path, endpoints: GlobusEndpoints) -> None:
    with pytest.raises(ConfigurationError, match="run `proxystore-globus-auth`"):
        GlobusStore("s", endpoints, hostname="host-a")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"polling_interval": 0}, "polling_interval"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"sync_level": "never"}, "sync_level"),
        ({"endpoints": 42}, "endpoints must be"),
    ],
)
def test_argument_validation(
    login: TokenFile, endpoints: GlobusEndpoints, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {
        "name": "s",
        "endpoints": endpoints,
        "hostname": "host-a",
    }
    arguments.update(kwargs)
    with pytest.raises(ConfigurationError, match=message):
        GlobusStore(**arguments)


def test_endpoints_from_mapping_or_json(
    login: TokenFile, endpoints: GlobusEndpoints, tmp_path: Path
) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(endpoints.to_dict()))
    for spec in (endpoints.to_dict(), str(path), path, list(endpoints)):
        store = GlobusStore("s", spec, hostname="host-b")
        assert store.endpoints == endpoints


async def test_injected_client_needs_no_login(
    home: Path, endpoints: GlobusEndpoints, emulator: TransferEmulator
) -> None:
    client = globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer("access-token"),
        base_url=emulator.base_url,
    )
    async with GlobusStore(
        "s", endpoints, hostname="host-a", transfer_client=client
    ) as a:
        key = await a.aset("x")
    async with GlobusStore(
        "s",
        endpoints,
        hostname="host-b",
        authorizer=globus_sdk.AccessTokenAuthorizer("access-token"),
        base_url=emulator.base_url,
        **FAST,
    ) as b:
        assert await b.aget(key) == "x"
    with pytest.raises(ConfigurationError, match="not both"):
        GlobusStore(
            "s",
            endpoints,
            hostname="host-a",
            transfer_client=client,
            authorizer=globus_sdk.AccessTokenAuthorizer("t"),
        )


def test_proxy_made_on_host_a_resolves_on_host_b_in_other_processes(
    login: TokenFile,
    home: Path,
    endpoints: GlobusEndpoints,
    emulator: TransferEmulator,
    store_name: str,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    kwargs = {
        "name": store_name,
        "endpoints": endpoints.to_dict(),
        "base_url": emulator.base_url,
        **FAST,
    }
    value = np.arange(50_000)
    with (
        ProcessPoolExecutor(1, spawn, hosts.pretend_to_be, ("host-a", str(home))) as a,
        ProcessPoolExecutor(1, spawn, hosts.pretend_to_be, ("host-b", str(home))) as b,
    ):
        pickled = a.submit(hosts.make_proxy, kwargs, value).result(timeout=30)
        resolved = b.submit(hosts.resolve_async, pickled).result(timeout=30)
    assert np.array_equal(resolved, value)
    transfers = [task for task in emulator.tasks.values() if task.kind == "TRANSFER"]
    assert len(transfers) == 1
    assert transfers[0].destination == endpoints.local("host-b").uuid


# -- login refresh, against globus_sdk.testing's recorded responses ----------


@pytest.fixture
def mocked_responses() -> Iterator[responses.RequestsMock]:
    responses.start()
    try:
        yield responses.mock
    finally:
        responses.stop()
        responses.reset()


async def test_expired_access_token_is_refreshed_and_saved(
    home: Path, endpoints: GlobusEndpoints, mocked_responses: responses.RequestsMock
) -> None:
    tokens = TokenFile(home / "globus-tokens.json")
    tokens.save(_expired_login())
    load_response(
        RegisteredResponse(
            service="auth",
            path="/v2/oauth2/token",
            method="POST",
            json={
                "access_token": "fresh-access",
                "scope": TRANSFER_SCOPE,
                "expires_in": 172800,
                "token_type": "Bearer",
                "resource_server": "transfer.api.globus.org",
                "other_tokens": [],
            },
        )
    )
    load_response("transfer.get_submission_id")
    load_response("transfer.submit_transfer")

    async with GlobusStore("s", endpoints, hostname="host-a") as store:
        await store.aset("x")

    request = get_last_request()
    assert request is not None
    assert request.headers["Authorization"] == "Bearer fresh-access"
    saved = tokens.load("transfer.api.globus.org")
    assert saved.access_token == "fresh-access"
    assert saved.refresh_token == "refresh-token"


async def test_revoked_login_asks_to_log_in_again(
    home: Path, endpoints: GlobusEndpoints, mocked_responses: responses.RequestsMock
) -> None:
    TokenFile(home / "globus-tokens.json").save(_expired_login())
    load_response("auth.oauth2_exchange_code_for_tokens", case="invalid_grant")
    store = GlobusStore("s", endpoints, hostname="host-a")
    async with store:
        with pytest.raises(ConfigurationError, match="proxystore-globus-auth"):
            await store.aset("x")
    assert list(Path(store.endpoint.local_path).iterdir()) == []


def _expired_login() -> globus_sdk.OAuthTokenResponse:
    from tests.globus.harness import token_response

    return token_response(access_token="stale-access", expires_in=-60)


async def test_three_endpoints_wait_only_for_the_local_copy(
    login: TokenFile, tmp_path: Path, store_name: str
) -> None:
    endpoints, roots = two_endpoints(tmp_path / "ab")
    third = GlobusEndpoint(
        uuid="0b9b3c4e-1a1a-4a4a-8a8a-00000000000c",
        endpoint_path="/proxystore",
        local_path=str(tmp_path / "fs-c" / "proxystore"),
        host_regex="host-c",
    )
    endpoints = GlobusEndpoints([*endpoints, third])
    roots[third.uuid] = tmp_path / "fs-c"
    with TransferEmulator(roots, outcome="hang") as emulator:
        kwargs: dict[str, Any] = {"base_url": emulator.base_url, **FAST}
        a = GlobusStore(store_name, endpoints, hostname="host-a", **kwargs)
        b = GlobusStore(store_name, endpoints, hostname="host-b", **kwargs)
        async with a, b:
            key = await a.aset("three")
            assert len(key.task_ids) == 2
            by_destination = {
                emulator.tasks[task].destination: task for task in key.task_ids
            }
            emulator.release(by_destination[b.endpoint.uuid])
            assert await b.aget(key) == "three"
            assert emulator.tasks[by_destination[third.uuid]].status == "ACTIVE"


async def test_refused_submission_leaves_no_file(
    login: TokenFile, endpoints: GlobusEndpoints, tmp_path: Path, store_name: str
) -> None:
    only_a = {endpoints.local("host-a").uuid: tmp_path / "fs-a"}
    with TransferEmulator(only_a) as emulator:
        a = GlobusStore(
            store_name, endpoints, hostname="host-a", base_url=emulator.base_url
        )
        async with a:
            with pytest.raises(StoreOperationError, match="EndpointNotFound"):
                await a.aset("x")
        assert list(Path(a.endpoint.local_path).iterdir()) == []


def test_unusable_local_path(
    login: TokenFile, endpoints: GlobusEndpoints, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data = endpoints.to_dict()
    data[endpoints.local("host-a").uuid]["local_path"] = str(blocker / "sub")
    with pytest.raises(ConfigurationError, match="cannot create local_path"):
        GlobusStore("s", data, hostname="host-a")


async def test_failed_batch_removes_its_files_and_says_what_may_remain(
    home: Path, endpoints: GlobusEndpoints, mocked_responses: responses.RequestsMock
) -> None:
    TokenFile(home / "globus-tokens.json").save(_expired_login())
    load_response("auth.oauth2_exchange_code_for_tokens", case="invalid_grant")
    store = GlobusStore("s", endpoints, hostname="host-a")
    async with store:
        with pytest.raises(BatchWriteError) as info:
            await store.aset_batch(["x", "y", "z"])
    message = str(info.value)
    assert "set_batch of 3 objects on store 's'" in message
    assert "the 3 objects it wrote were removed" in message
    other = next(ep.uuid for ep in endpoints if ep.uuid != store.endpoint.uuid)
    assert f"may remain on endpoints {other}" in message
    assert isinstance(info.value.__cause__, ConfigurationError)
    assert list(Path(store.endpoint.local_path).iterdir()) == []


async def test_file_system_errors_name_store_and_operation(
    pair: tuple[GlobusStore, GlobusStore],
) -> None:
    a, _ = pair
    key = await a.aset("x")
    path = local_file(a, key)
    path.unlink()
    path.mkdir()  # reading or removing it as a file fails
    a._cache.clear()
    with pytest.raises(StoreOperationError, match="get on GlobusStore") as info:
        await a.aget(key)
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert a.endpoint.local_path in str(info.value)
    with pytest.raises(StoreOperationError, match="evict on GlobusStore") as info:
        await a.aevict(key)
    assert isinstance(info.value.__cause__, OSError)


async def test_signed_payloads_cross_hosts_and_forgeries_are_refused(
    login: TokenFile,
    endpoints: GlobusEndpoints,
    emulator: TransferEmulator,
    store_name: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    keys = SigningKeys([("k1", bytes(range(32)))])
    kwargs: dict[str, Any] = {
        "base_url": emulator.base_url,
        "signing_keys": keys,
        **FAST,
    }
    a = GlobusStore(store_name, endpoints, hostname="host-a", **kwargs)
    b = GlobusStore(store_name, endpoints, hostname="host-b", **kwargs)
    async with a, b:
        key = await a.aset({"v": np.arange(1000)})
        assert np.array_equal((await b.aget(key))["v"], np.arange(1000))
        # Someone with write access to host-b's directory swaps the file.
        local_file(b, key).write_bytes(serialize(Trap(marker)))
        b._cache.clear()
        with pytest.raises(PayloadSignatureError, match="not signed") as info:
            await b.aget(key)
        assert store_name in str(info.value)
        assert not marker.exists()
