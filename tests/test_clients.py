"""One client per event loop: a loop's clients are closed when the loop shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import pickle
import sys
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from proxystore import registry
from proxystore._clients import ClientsPerLoop
from proxystore.aio.redis import RedisStore
from proxystore.exceptions import StoreClosedError
from proxystore.store.endpoint import EndpointStore
from proxystore.store.redis import RedisStore as SyncRedisStore
from tests.redis_server import RedisServer


@pytest.fixture
def no_resource_warnings() -> Iterator[list[str]]:
    """Turn warnings into errors and collect what finalizers report.

    Garbage left by earlier tests is collected first: only this test's leaks
    are its own.
    """
    gc.collect()
    reported: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        reported.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value}")

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield reported
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert reported == []


def test_store_used_from_successive_loops_leaks_nothing(
    redis_server: RedisServer, store_name: str, no_resource_warnings: list[str]
) -> None:
    store = RedisStore(store_name, hostname=redis_server.host, port=redis_server.port)

    async def use() -> int:
        key = await store.aset([1, 2, 3])
        assert await store.aget(key) == [1, 2, 3]
        return len(store._clients)

    for _ in range(3):
        assert asyncio.run(use()) == 1
        assert len(store._clients) == 0  # closed with its loop, and forgotten
        gc.collect()
        assert no_resource_warnings == []
    asyncio.run(store.aclose())


def test_dropped_store_is_closed_with_its_loop(
    redis_server: RedisServer, store_name: str, no_resource_warnings: list[str]
) -> None:
    async def use_and_drop() -> None:
        store = RedisStore(
            store_name, hostname=redis_server.host, port=redis_server.port
        )
        await store.aset(b"x")

    asyncio.run(use_and_drop())
    gc.collect()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One endpoint process: the URL and API token file a store needs."""
    from proxystore.endpoint.testing import configure_endpoint

    site = configure_endpoint(tmp_path_factory.mktemp("clients-site"), "clients")
    site.start(wait=30.0)
    try:
        yield {"url": site.url, "token_file": str(site.token_file)}
    finally:
        site.stop()


def test_sync_store_built_by_prefetching_proxies_leaks_nothing(
    endpoint: dict[str, str], store_name: str, no_resource_warnings: list[str]
) -> None:
    producer = EndpointStore(store_name, **endpoint)
    sent = [pickle.dumps(producer.proxy(i, prefetch=True)) for i in range(8)]
    producer.close()

    def receive(data: bytes) -> int:
        # Unpickling starts a prefetch: a background worker thread builds
        # the store (provisionally registered) and opens its connections.
        return int(pickle.loads(data) + 0)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(receive, sent)) == list(range(8))
    consumer = registry.lookup(store_name, "sync")
    assert isinstance(consumer, EndpointStore)
    assert len(consumer._clients) == 1
    # Dropped without close (as the name's owner replacing it would): its
    # sockets are closed with it, not left to the garbage collector.
    registry.unregister(store_name)
    del consumer


def test_closed_sync_store_used_again_by_a_late_worker_leaks_nothing(
    endpoint: dict[str, str], store_name: str, no_resource_warnings: list[str]
) -> None:
    store = EndpointStore(store_name, **endpoint)
    key = store.set(b"x")
    store.close()
    # A prefetch worker's get that passed the closed check just before
    # close finds no client to use, and opens none.
    with pytest.raises(StoreClosedError):
        store._get_bytes(key)
    assert len(store._clients) == 0
    del store


def open_fds() -> int:
    """How many file descriptors this process has open (sockets included)."""
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Keep the garbage collector from closing what a test leaked."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class HeldRedisStore(SyncRedisStore):
    """Holds its first command, once on a pooled connection, until `go` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.go = threading.Event()

    def _execute_on(self, *args: Any, **kwargs: Any) -> list[Any]:
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(WAIT)
        return super()._execute_on(*args, **kwargs)


class HeldEndpointStore(EndpointStore):
    """Holds its first get, once it has its HTTP client, until `go` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.go = threading.Event()

    def _send_once(self, *args: Any, **kwargs: Any) -> Any:
        if args[-1] == "get" and not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(WAIT)
        return super()._send_once(*args, **kwargs)


WAIT = 30.0


def close_mid_request(store: HeldRedisStore | HeldEndpointStore, key: Any) -> None:
    """Close `store` while a worker thread's get is held mid-request.

    The worker either finishes with the client it had (closed when it
    returns) or fails with StoreClosedError; either way nothing is left open.
    """
    outcome: list[object] = []

    def worker() -> None:
        try:
            outcome.append(store.get(key))
        except Exception as err:
            outcome.append(err)

    with no_collection():
        before = open_fds()
        thread = threading.Thread(target=worker)
        thread.start()
        assert store.entered.wait(WAIT)
        store.close()
        store.go.set()
        thread.join(WAIT)
        assert not thread.is_alive()
        (result,) = outcome
        assert result == b"x" or isinstance(result, StoreClosedError), result
        assert len(store._clients) == 0
        assert open_fds() <= before
        with pytest.raises(StoreClosedError):
            store.get(key)
        assert open_fds() <= before


def test_redis_store_closed_while_a_worker_is_mid_request_leaks_nothing(
    redis_server: RedisServer, store_name: str, no_resource_warnings: list[str]
) -> None:
    seed = SyncRedisStore(
        f"{store_name}-seed", hostname=redis_server.host, port=redis_server.port
    )
    key = seed.set(b"x")
    seed.close()
    store = HeldRedisStore(
        store_name, hostname=redis_server.host, port=redis_server.port
    )
    close_mid_request(store, key)


def test_endpoint_store_closed_while_a_worker_is_mid_request_leaks_nothing(
    endpoint: dict[str, str], store_name: str, no_resource_warnings: list[str]
) -> None:
    store = HeldEndpointStore(store_name, **endpoint)
    key = store.set(b"x")
    store.entered.clear()
    # The connection a set opened stays in the pool; count from here.
    close_mid_request(store, key)


def test_async_store_closed_while_a_task_is_mid_request_leaks_nothing(
    redis_server: RedisServer, store_name: str, no_resource_warnings: list[str]
) -> None:
    class Held(RedisStore):
        entered: asyncio.Event
        go: asyncio.Event

        async def _aexecute_on(self, *args: Any, **kwargs: Any) -> list[Any]:
            if not self.entered.is_set():
                self.entered.set()
                await asyncio.wait_for(self.go.wait(), WAIT)
            return await super()._aexecute_on(*args, **kwargs)

    store = Held(store_name, hostname=redis_server.host, port=redis_server.port)

    async def main() -> object:
        store.entered, store.go = asyncio.Event(), asyncio.Event()
        get = asyncio.create_task(store.aget("missing"))
        await asyncio.wait_for(store.entered.wait(), WAIT)
        await store.aclose()
        store.go.set()
        try:
            return await asyncio.wait_for(get, WAIT)
        except StoreClosedError as err:
            return err

    with no_collection():
        before = open_fds()
        result = asyncio.run(main())
        assert result is None or isinstance(result, StoreClosedError), result
        assert len(store._clients) == 0
        assert open_fds() <= before


class Client:
    def __init__(self) -> None:
        self.closed = 0


async def close_client(client: Client) -> None:
    client.closed += 1


def close_now(client: Client) -> None:
    client.closed += 1


def test_dropped_map_closes_its_sync_client_once() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_now)
    client = clients.client_for(None)
    del clients
    gc.collect()
    assert client.closed == 1

    clients = ClientsPerLoop(Client, close_now)
    taken = clients.client_for(None)
    clients.close_all(close_now)
    del clients
    gc.collect()
    assert taken.closed == 1  # by close_all, not again when collected


_forked: list[ClientsPerLoop[Client]] = []


def report_closed_after_drop(outbox: Any) -> None:
    client = _forked[0][None]
    _forked.clear()  # the child's last reference to the map
    gc.collect()
    outbox.put(client.closed)


def test_closed_clients_are_closed_once() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_client)

    async def take_and_close() -> Client:
        client = clients.client_for(asyncio.get_running_loop())
        assert clients.client_for(asyncio.get_running_loop()) is client
        await clients.aclose_all(close_client)
        return client

    client = asyncio.run(take_and_close())
    assert client.closed == 1  # by aclose_all, not again at loop shutdown

    async def take(clients: ClientsPerLoop[Client]) -> Client:
        return clients.client_for(asyncio.get_running_loop())

    with pytest.raises(StoreClosedError):  # closing is final: no new client
        asyncio.run(take(clients))
    assert len(clients) == 0

    others: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_client)
    client = asyncio.run(take(others))
    assert client.closed == 1  # by the loop's shutdown
    assert len(others) == 0


def test_client_leased_when_closed_is_closed_by_its_last_holder() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_now, "s")
    with clients.lease(None) as client, clients.lease(None) as again:
        assert again is client
        clients.close_all(close_now)
        assert client.closed == 0  # held: its holders finish with it
        with pytest.raises(StoreClosedError, match="'s'"), clients.lease(None):
            pass
    assert client.closed == 1  # by the last holder, once
    with pytest.raises(StoreClosedError):
        clients.client_for(None)

    async def held_by_a_task() -> Client:
        aclients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_client)
        async with aclients.lease(asyncio.get_running_loop()) as client:
            await aclients.aclose_all(close_client)
            assert client.closed == 0
        assert client.closed == 1
        return client

    assert asyncio.run(held_by_a_task()).closed == 1  # not again at loop shutdown


def test_sync_owner_is_never_closed_by_a_loop() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_client)
    client = clients.client_for(None)

    async def nothing() -> None:
        assert clients.client_for(None) is client

    asyncio.run(nothing())
    assert client.closed == 0
    assert clients[None] is client


def report_client(clients: ClientsPerLoop[Client], outbox: Any) -> None:
    outbox.put(type(clients.client_for(None)).__name__)


def test_child_forked_while_a_thread_holds_the_lock_gets_a_client() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_client)
    context = multiprocessing.get_context("fork")
    outbox = context.Queue()
    with clients._lock:  # as another thread of the parent might at fork time
        child = context.Process(target=report_client, args=(clients, outbox))
        child.start()
    try:
        assert outbox.get(timeout=10) == "Client"
        child.join(timeout=10)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
        outbox.close()
        outbox.join_thread()


def test_child_never_closes_the_parents_sync_client() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_now)
    client = clients.client_for(None)
    _forked.append(clients)
    del clients
    context = multiprocessing.get_context("fork")
    outbox = context.Queue()
    child = context.Process(target=report_closed_after_drop, args=(outbox,))
    child.start()
    _forked.clear()
    try:
        assert outbox.get(timeout=10) == 0
        child.join(timeout=10)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
        outbox.close()
        outbox.join_thread()
    gc.collect()
    assert client.closed == 1  # here, by the parent, whose client it is
