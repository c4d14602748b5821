"""EndpointStore over real endpoint processes peering through a signaling server.

One signaling server and three endpoints (each in its own PROXYSTORE_HOME,
as if on its own host) are started once for the module through the CLIs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from proxystore import aio
from proxystore.aio.endpoint import EndpointStore
from proxystore.aio.future import Future
from proxystore.endpoint.config import EndpointConfig, free_port
from proxystore.endpoint.credentials import create_api_token, read_api_token
from proxystore.endpoint.keys import EndpointKey
from proxystore.endpoint.server import EndpointServer
from proxystore.endpoint.testing import (
    EndpointProcess,
    SignalingServer,
    configure_endpoint,
    site_env,
    start_signaling_server,
    wait_until_registered,
)
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    FutureError,
    InvalidKeyError,
    LimitExceededError,
    PayloadSignatureError,
    PeerConnectionError,
    PeerUnknownError,
    StoreConnectionError,
    StoreOperationError,
    StoreTimeoutError,
)
from proxystore.signing import SigningKeys
from proxystore.store import init_store as sync_init_store
from proxystore.store.endpoint import EndpointStore as SyncEndpointStore
from tests.traps import Trap

pytestmark = pytest.mark.timeout(60)

SECRET = "endpoint-test-secret"
# The 100 MiB transfer is a heavy test: CI runs it once, not once per Python.
SIZES = [
    pytest.param(1, id="1B"),
    pytest.param(1024, id="1KiB"),
    pytest.param(1024**2, id="1MiB"),
    pytest.param(100 * 1024**2, id="100MiB", marks=pytest.mark.heavy),
]
READY_TIMEOUT = 30.0


def _data(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@dataclasses.dataclass
class Cluster:
    root: Path
    signaling: SignalingServer
    a: EndpointProcess
    b: EndpointProcess
    c: EndpointProcess


def _at(site: EndpointProcess) -> dict[str, str]:
    """Store arguments for the endpoint of ``site`` (its URL and token file)."""
    return {"url": site.url, "token_file": str(site.token_file)}


def _start_all(sites: list[EndpointProcess]) -> None:
    for site in sites:
        site.start(wait=None)
    for site in sites:
        site.wait_ready(READY_TIMEOUT)
    for site in sites:
        wait_until_registered(site, READY_TIMEOUT)


def _allow_each_other(sites: list[EndpointProcess]) -> None:
    for site in sites:
        site.allow(*(other.uuid for other in sites if other is not site))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sites")
    signaling = start_signaling_server(SECRET, log=root / "signaling.log")
    sites: list[EndpointProcess] = []
    try:
        for name in ("site-a", "site-b", "site-c"):
            options = ["--server", signaling.url]
            sites.append(configure_endpoint(root / name, name, *options, secret=SECRET))
        _allow_each_other(sites)
        _start_all(sites)
        yield Cluster(root, signaling, *sites)
    finally:
        for site in sites:
            site.stop()
        signaling.stop()


@pytest.fixture
async def stores(cluster: Cluster) -> AsyncIterator[dict[str, EndpointStore]]:
    opened = {
        site.name[-1]: EndpointStore(f"ep-{site.name}", **_at(site), timeout=20)
        for site in (cluster.a, cluster.b, cluster.c)
    }
    yield opened
    for store in opened.values():
        await store.aclose()


@pytest.mark.parametrize("size", SIZES)
async def test_set_at_one_endpoint_get_through_another(
    cluster: Cluster, stores: dict[str, EndpointStore], size: int
) -> None:
    data = _data(size)
    key = await stores["a"].aset(data)
    assert key.endpoint_id == cluster.a.uuid
    assert await stores["b"].aget(key) == data
    assert await stores["a"].aget(key) == data


@pytest.mark.parametrize("size", SIZES)
def test_sync_face_set_at_one_endpoint_get_through_another(
    cluster: Cluster, size: int
) -> None:
    data = _data(size)
    with (
        SyncEndpointStore("sync-b", **_at(cluster.b), timeout=20) as at_b,
        SyncEndpointStore("sync-c", **_at(cluster.c), timeout=20) as at_c,
    ):
        key = at_b.set(data)
        assert key.endpoint_id == cluster.b.uuid
        assert at_c.get(key) == data
        assert at_c.exists(key)
        at_c.evict(key)
        assert not at_b.exists(key)


async def test_exists_and_evict_across_peers(
    cluster: Cluster, stores: dict[str, EndpointStore]
) -> None:
    key = await stores["a"].aset([1, 2, 3])
    assert await stores["c"].aexists(key)
    assert await stores["b"].aget(key) == [1, 2, 3]
    await stores["c"].aevict(key)
    await stores["c"].aevict(key)
    assert not await stores["a"].aexists(key)
    assert not await stores["b"].aexists(key)
    assert await stores["b"].aget(key) is None


async def test_set_for_another_owner_is_forwarded(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=20, trust_env=False) as http:
        put = await http.put(
            f"{cluster.b.url}/objects/forwarded",
            params={"endpoint": cluster.a.uuid},
            content=b"payload",
            headers=cluster.b.auth_headers,
        )
        assert put.status_code == 204
        got = await http.get(
            f"{cluster.a.url}/objects/forwarded", headers=cluster.a.auth_headers
        )
        assert got.content == b"payload"


async def test_unknown_endpoint_uuid_is_a_peer_error(
    cluster: Cluster, stores: dict[str, EndpointStore]
) -> None:
    stranger = str(uuid.uuid4())
    key = EndpointKey("abc", stranger)
    with pytest.raises(PeerConnectionError, match=r"not in the peers\.allow"):
        await stores["a"].aget(key)
    cluster.a.allow(stranger)  # read by the running endpoint, no restart
    start = time.monotonic()
    with pytest.raises(PeerUnknownError, match=stranger):
        await stores["a"].aget(key)
    assert time.monotonic() - start < 20


@pytest.mark.parametrize(
    "key",
    ["plain-string", ("../etc", str(uuid.uuid4())), ("ok", "not-a-uuid"), ("a",)],
)
async def test_bad_keys_are_refused_before_any_request(
    stores: dict[str, EndpointStore], key: object
) -> None:
    with pytest.raises(InvalidKeyError):
        await stores["a"].aget(key)  # type: ignore[arg-type]


def test_proxy_made_at_a_resolves_at_b(cluster: Cluster, tmp_path: Path) -> None:
    endpoints = [cluster.a.uuid, cluster.b.uuid, cluster.c.uuid]
    proxy_file = tmp_path / "proxy.pkl"
    produce = textwrap.dedent(
        f"""
        import pickle
        from proxystore.store.endpoint import EndpointStore
        store = EndpointStore("cross-site", endpoints={endpoints!r})
        proxy = store.proxy({{"numbers": list(range(1000))}})
        with open({str(proxy_file)!r}, "wb") as file:
            pickle.dump(proxy, file)
        print(store.endpoint_uuid)
        """
    )
    consume = textwrap.dedent(
        f"""
        import asyncio, pickle
        from proxystore import aio
        with open({str(proxy_file)!r}, "rb") as file:
            proxy = pickle.load(file)
        value = asyncio.run(aio.resolve(proxy))
        assert value == {{"numbers": list(range(1000))}}, value
        print(aio.get_store(proxy).endpoint_uuid)
        """
    )
    produced = _run_python(produce, cluster.a.home)
    assert produced.stdout.strip() == cluster.a.uuid
    consumed = _run_python(consume, cluster.b.home)
    assert consumed.stdout.strip() == cluster.b.uuid


def _run_python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=site_env(home),
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


async def test_store_finds_first_configured_endpoint_that_answers(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = configure_endpoint(cluster.b.home, f"dead-{tmp_path.name}"[:60])
    monkeypatch.setenv("PROXYSTORE_HOME", str(cluster.b.home))
    store = EndpointStore("finder", endpoints=[dead.name, cluster.a.uuid, "site-b"])
    try:
        key = await store.aset(b"x")
        assert store.endpoint_uuid == cluster.b.uuid
        assert key.endpoint_id == cluster.b.uuid
    finally:
        await store.aclose()


async def test_endpoint_not_running_names_host_and_port(tmp_path: Path) -> None:
    port = free_port()
    token_file = str(create_api_token(tmp_path))
    store = EndpointStore(
        "nobody", url=f"http://127.0.0.1:{port}", token_file=token_file, timeout=2
    )
    start = time.monotonic()
    with pytest.raises(StoreConnectionError, match=f"127.0.0.1:{port}"):
        await store.aset(b"x")
    assert time.monotonic() - start < 3
    await store.aclose()


async def test_configured_but_stopped_endpoint_is_a_connection_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = configure_endpoint(tmp_path, "idle")
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path))
    store = EndpointStore("idle", endpoints=["idle"], timeout=2)
    with pytest.raises(StoreConnectionError, match=f"127.0.0.1:{site.config.port}"):
        await store.aget(EndpointKey("k", site.uuid))
    unconfigured = EndpointStore("none", endpoints=["elsewhere"], timeout=2)
    with pytest.raises(ConfigurationError, match="configured on this host"):
        await unconfigured.aexists(EndpointKey("k", site.uuid))
    await store.aclose()
    await unconfigured.aclose()


async def test_oversized_object_is_refused_with_clear_error(tmp_path: Path) -> None:
    config = EndpointConfig(
        name="small", uuid=str(uuid.uuid4()), port=0, max_object_size=1024
    )
    token_file = str(create_api_token(tmp_path))
    async with EndpointServer(config, api_token=read_api_token(token_file)) as server:
        store = EndpointStore("small", url=server.url, token_file=token_file)
        try:
            with pytest.raises(LimitExceededError, match="max_object_size of 1024"):
                await store.aset(b"x" * 100_000)
            key = await store.aset(b"fits")
            assert await store.aget(key) == b"fits"
        finally:
            await store.aclose()


def _resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


@pytest.mark.heavy
async def test_peer_killed_mid_transfer_then_restarted(
    cluster: Cluster, stores: dict[str, EndpointStore]
) -> None:
    victim, receiver = cluster.c, cluster.a
    key = await stores["c"].aset(_data(100 * 1024**2))
    assert victim.process is not None
    assert receiver.pid is not None
    before = _resident_bytes(receiver.pid)
    timeout = 8.0
    async with EndpointStore("impatient", **_at(receiver), timeout=timeout) as at_a:
        start = time.monotonic()
        fetch = asyncio.create_task(at_a.aget(key))
        # Kill once the receiving endpoint holds part of the object in memory.
        while _resident_bytes(receiver.pid) - before < 16 * 1024**2:
            assert time.monotonic() < start + timeout, "transfer never started"
            assert not fetch.done(), "transfer finished before the kill"
            await asyncio.wait({fetch}, timeout=0.002)
        victim.process.send_signal(signal.SIGKILL)
        with pytest.raises((PeerConnectionError, StoreTimeoutError)):
            await fetch
        assert time.monotonic() - start < timeout + 2
    victim.process.wait(10)

    victim.start(wait=READY_TIMEOUT)
    wait_until_registered(victim, READY_TIMEOUT)
    async with EndpointStore("after", **_at(victim), timeout=20) as at_c:
        key = await at_c.aset(b"after restart")
        assert await stores["a"].aget(key) == b"after restart"
        from_a = await stores["a"].aset(b"from a")
        assert await at_c.aget(from_a) == b"from a"


async def test_signaling_down_at_start(tmp_path: Path) -> None:
    # These two peer over WebRTC only, so that path is covered too.
    port = free_port()
    options = ["--server", f"ws://127.0.0.1:{port}", "--no-fast-path"]
    sites = [
        configure_endpoint(tmp_path / name, name, *options, secret=SECRET)
        for name in ("early", "late")
    ]
    _allow_each_other(sites)
    signaling = None
    try:
        for site in sites:
            site.start(wait=None)
        for site in sites:
            site.wait_ready(READY_TIMEOUT)
        early, late = sites
        async with (
            EndpointStore("early", **_at(early), timeout=10) as at_early,
            EndpointStore("late", **_at(late), timeout=10) as at_late,
        ):
            key = await at_early.aset(b"own object")
            assert await at_early.aget(key) == b"own object"

            signaling = start_signaling_server(SECRET, port=port)
            for site in sites:
                wait_until_registered(site, READY_TIMEOUT)
            assert await at_late.aget(key) == b"own object"
            large = _data(1024**2)
            assert await at_early.aget(await at_late.aset(large)) == large
    finally:
        for site in sites:
            site.stop()
        if signaling is not None:
            signaling.stop()


async def _finish_tasks() -> None:
    current = asyncio.current_task()
    await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not current))


def test_async_face_serves_several_event_loops(cluster: Cluster) -> None:
    store = EndpointStore("loops", **_at(cluster.a), timeout=20, cache_size=0)
    key = asyncio.run(store.aset(b"one"))
    assert asyncio.run(store.aget(key)) == b"one"
    background = asyncio.new_event_loop()
    thread = threading.Thread(target=background.run_forever, daemon=True)
    thread.start()
    try:
        fetched = asyncio.run_coroutine_threadsafe(store.aget(key), background)
        assert fetched.result(20) == b"one"
        assert asyncio.run(store.aexists(key))
        asyncio.run(store.aclose())
        # The background loop's client is closed in that loop; let it finish.
        asyncio.run_coroutine_threadsafe(_finish_tasks(), background).result(10)
    finally:
        background.call_soon_threadsafe(background.stop)
        thread.join(10)
        background.close()


def _get_in_child(store: SyncEndpointStore, key: EndpointKey) -> None:
    sys.exit(0 if store.get(key) == b"shared" else 3)


def test_sync_face_works_in_a_forked_child(cluster: Cluster) -> None:
    with SyncEndpointStore("forked", **_at(cluster.b), timeout=20) as store:
        key = store.set(b"shared")
        store.get(key)
        child = multiprocessing.get_context("fork").Process(
            target=_get_in_child, args=(store, key)
        )
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert store.exists(key)


async def test_registry_builds_both_faces_by_type_name(
    cluster: Cluster, store_name: str
) -> None:
    async_store = aio.init_store("endpoint", name=store_name, **_at(cluster.a))
    assert isinstance(async_store, EndpointStore)
    key = await async_store.aset({"via": "registry"})
    sync_store = sync_init_store("endpoint", name=store_name, **_at(cluster.a))
    assert isinstance(sync_store, SyncEndpointStore)
    assert await asyncio.to_thread(sync_store.get, key) == {"via": "registry"}


async def test_failed_batch_removes_what_it_wrote(tmp_path: Path) -> None:
    config = EndpointConfig(
        name="small-batch", uuid=str(uuid.uuid4()), port=0, max_object_size=1024
    )
    token_file = str(create_api_token(tmp_path))
    async with EndpointServer(config, api_token=read_api_token(token_file)) as server:
        store = EndpointStore(
            "small-batch", url=server.url, token_file=token_file, timeout=10
        )
        try:
            with pytest.raises(BatchWriteError) as info:
                await store.aset_batch([b"a", b"b", b"x" * 100_000])
            assert "the 2 objects it wrote were removed" in str(info.value)
            assert isinstance(info.value.__cause__, StoreOperationError)
            assert len(server._storage or ()) == 0
        finally:
            await store.aclose()


async def test_signed_stores_refuse_forged_payloads_on_endpoints(
    cluster: Cluster, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    keys = SigningKeys([("k1", bytes(range(32)))])
    signed_a = EndpointStore(
        "ep-signed-a", **_at(cluster.a), timeout=20, signing_keys=keys
    )
    signed_b = EndpointStore(
        "ep-signed-b", **_at(cluster.b), timeout=20, signing_keys=keys
    )
    # Anyone who can write to the endpoint, without the key.
    attacker = EndpointStore("ep-attacker", **_at(cluster.a), timeout=20)
    async with signed_a, signed_b, attacker:
        key = await signed_a.aset({"v": _data(1024 * 1024)})
        assert await signed_b.aget(key) == {"v": _data(1024 * 1024)}
        forged = await attacker.aset(Trap(marker))
        with pytest.raises(PayloadSignatureError, match="not signed") as info:
            await signed_b.aget(forged)
        assert forged.object_id in str(info.value)
        assert not marker.exists()
        with pytest.raises(PayloadSignatureError, match="PROXYSTORE_SIGNING_KEYS"):
            await attacker.aget(key)


async def test_future_set_at_one_endpoint_awaited_through_another(
    cluster: Cluster, stores: dict[str, EndpointStore]
) -> None:
    future = await stores["a"].afuture(timeout=30)
    assert future.key.endpoint_id == cluster.a.uuid
    # A consumer at site b waits on the future's key through its endpoint.
    at_b = Future(stores["b"], future.key, timeout=30)
    waiting = asyncio.ensure_future(at_b.result())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await future.set_result({"from": "a"})
    assert await asyncio.wait_for(waiting, 30) == {"from": "a"}
    failed = await stores["a"].afuture(timeout=30)
    await failed.set_exception(ValueError("bad input"))
    with pytest.raises(FutureError, match=r"builtins\.ValueError: bad input"):
        await Future(stores["c"], failed.key).result(timeout=30)
    with pytest.raises(StoreTimeoutError):
        await (await stores["a"].afuture()).result(timeout=0.1)


def test_sync_face_future_through_another_endpoint(cluster: Cluster) -> None:
    from proxystore.store.future import Future as SyncFuture

    with (
        SyncEndpointStore("sync-future-b", **_at(cluster.b), timeout=20) as at_b,
        SyncEndpointStore("sync-future-c", **_at(cluster.c), timeout=20) as at_c,
    ):
        future = at_b.future(timeout=20)
        waiter = SyncFuture(at_c, future.key, timeout=20)
        assert not waiter.done()
        threading.Timer(0.05, future.set_result, args=(b"late",)).start()
        assert waiter.result() == b"late"
        assert waiter.done()
