"""One client per event loop: a loop's clients are closed when the loop shuts down."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from proxystore._clients import ClientsPerLoop
from proxystore.aio.redis import RedisStore
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


class Client:
    def __init__(self) -> None:
        self.closed = 0


async def close_client(client: Client) -> None:
    client.closed += 1


def test_closed_clients_are_closed_once() -> None:
    clients: ClientsPerLoop[Client] = ClientsPerLoop(Client, close_client)

    async def take_and_close() -> Client:
        client = clients.client_for(asyncio.get_running_loop())
        assert clients.client_for(asyncio.get_running_loop()) is client
        await clients.aclose_all(close_client)
        return client

    client = asyncio.run(take_and_close())
    assert client.closed == 1  # by aclose_all, not again at loop shutdown

    async def take() -> Client:
        return clients.client_for(asyncio.get_running_loop())

    client = asyncio.run(take())
    assert client.closed == 1  # by the loop's shutdown
    assert len(clients) == 0


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
