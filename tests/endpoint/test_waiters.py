"""The endpoint's long-poll wait route and EndpointStore futures woken by it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxystore.aio.endpoint import EndpointStore
from proxystore.endpoint.config import EndpointConfig
from proxystore.endpoint.credentials import create_api_token, read_api_token
from proxystore.endpoint.server import EndpointServer
from proxystore.endpoint.waiters import MAX_WAIT, Waiters, waiters_of
from proxystore.exceptions import LimitExceededError, StoreTimeoutError

pytestmark = pytest.mark.timeout(60)


class Running:
    """An in-process endpoint, its token file and its waiters."""

    def __init__(self, server: EndpointServer, token_file: Path) -> None:
        self.server = server
        self.token_file = token_file
        self.auth = {"Authorization": f"Bearer {read_api_token(token_file)}"}
        assert server._runner is not None
        self.waiters = waiters_of(server._runner.app)
        self.owner = {"endpoint": server.config.uuid}

    async def waiting(self, count: int, timeout: float = 10) -> None:
        """Yield to the loop until `count` requests wait (the server runs here)."""

        async def check() -> None:
            while self.waiters.waiting != count:
                await asyncio.sleep(0.001)

        await asyncio.wait_for(check(), timeout)


async def _start(tmp_path: Path, max_requests: int = 16) -> AsyncIterator[Running]:
    token_file = create_api_token(tmp_path)
    config = EndpointConfig(
        name="waits",
        uuid=str(uuid.uuid4()),
        port=0,
        max_requests=max_requests,
        max_connections=max_requests + 8,
    )
    async with EndpointServer(config, api_token=read_api_token(token_file)) as server:
        yield Running(server, token_file)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async for value in _start(tmp_path):
        yield value


@pytest.fixture
async def client(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=running.server.url, timeout=30, headers=running.auth
    ) as http:
        yield http


async def test_wait_answers_at_once_for_a_stored_object(
    running: Running, client: httpx.AsyncClient
) -> None:
    await client.put("/objects/k1", content=b"v", params=running.owner)
    response = await client.get("/objects/k1/wait", params={"wait": "5"})
    assert response.json() == {"exists": True, "waited": True}


async def test_wait_is_woken_by_a_put(
    running: Running, client: httpx.AsyncClient
) -> None:
    waiting = asyncio.ensure_future(
        client.get("/objects/k2/wait", params={**running.owner, "wait": "30"})
    )
    await running.waiting(1)
    assert not waiting.done()
    await client.put("/objects/k2", content=b"v", params=running.owner)
    response = await asyncio.wait_for(waiting, 10)
    assert response.json() == {"exists": True, "waited": True}
    assert running.waiters.waiting == 0


async def test_wait_ends_false_after_its_seconds(client: httpx.AsyncClient) -> None:
    response = await client.get("/objects/k3/wait", params={"wait": "0.05"})
    assert response.status_code == 200
    assert response.json() == {"exists": False, "waited": True}


@pytest.mark.parametrize("bad", ["soon", "-1", "nan", "inf"])
async def test_bad_wait_is_400(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/objects/k4/wait", params={"wait": bad})
    assert response.status_code == 400


async def test_wait_needs_the_token(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.server.url, timeout=10) as http:
        missing = await http.get("/objects/k5/wait", params={"wait": "0"})
        wrong = await http.get(
            "/objects/k5/wait",
            params={"wait": "0"},
            headers={"Authorization": "Bearer " + "00" * 32},
        )
    assert missing.status_code == 401
    assert wrong.status_code == 403


async def test_bad_key_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/objects/" + "k" * 300 + "/wait")
    assert response.status_code == 400


async def test_other_owner_is_not_waited_on(client: httpx.AsyncClient) -> None:
    # No peering: the forwarded exists fails at once instead of waiting.
    response = await client.get(
        "/objects/k6/wait", params={"endpoint": str(uuid.uuid4()), "wait": "30"}
    )
    assert response.status_code == 502


async def test_waiters_are_capped_below_max_requests(tmp_path: Path) -> None:
    # max_requests 2: one waiter at most, so a write always gets a slot.
    async for running in _start(tmp_path, max_requests=2):
        async with httpx.AsyncClient(
            base_url=running.server.url, timeout=30, headers=running.auth
        ) as http:
            first = asyncio.ensure_future(
                http.get("/objects/k7/wait", params={"wait": "30"})
            )
            await running.waiting(1)
            refused = await http.get("/objects/k8/wait", params={"wait": "30"})
            assert refused.status_code == 429
            assert refused.json()["error"] == "LimitExceededError"
            assert "max_requests" in refused.json()["message"]
            stored = await http.put("/objects/k7", content=b"v")
            assert stored.status_code == 204
            assert (await asyncio.wait_for(first, 10)).json()["exists"] is True


async def test_shutdown_ends_waits(tmp_path: Path) -> None:
    token_file = create_api_token(tmp_path)
    config = EndpointConfig(name="closing", uuid=str(uuid.uuid4()), port=0)
    server = EndpointServer(config, api_token=read_api_token(token_file))
    await server.start()
    try:
        running = Running(server, token_file)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, headers=running.auth
        ) as http:
            waiting = asyncio.ensure_future(
                http.get("/objects/k9/wait", params={"wait": str(MAX_WAIT)})
            )
            await running.waiting(1)
            closing = asyncio.ensure_future(server.close())
            try:
                response = await asyncio.wait_for(waiting, 5)
                assert response.json() == {"exists": False, "waited": True}
            except httpx.HTTPError:
                pass  # the connection closed first: also no hang
            await asyncio.wait_for(closing, 10)
    finally:
        await server.close()


async def test_waiters_unit_limit_and_close() -> None:
    waiters = Waiters(1)
    present = False

    async def exists() -> bool:
        return present

    first = asyncio.ensure_future(waiters.wait("a", exists, 30))
    await asyncio.sleep(0)
    assert waiters.waiting == 1
    with pytest.raises(LimitExceededError, match="max_requests"):
        await waiters.wait("b", exists, 30)
    present = True
    waiters.wake("a")
    assert await asyncio.wait_for(first, 5) is True
    assert waiters.waiting == 0
    present = False
    second = asyncio.ensure_future(waiters.wait("c", exists, 30))
    await asyncio.sleep(0)
    waiters.close()
    assert await asyncio.wait_for(second, 5) is False


def _counting_exists(running: Running) -> list[str]:
    """Record every `exists` the endpoint's storage answers."""
    calls: list[str] = []
    storage = running.server._storage
    assert storage is not None
    original: Callable[[str], Awaitable[bool]] = storage.exists

    async def exists(object_id: str) -> bool:
        calls.append(object_id)
        return await original(object_id)

    setattr(storage, "exists", exists)  # noqa: B010
    return calls


async def test_store_future_is_woken_not_polled(running: Running) -> None:
    calls = _counting_exists(running)
    async with EndpointStore(
        "waits-store", url=running.server.url, token_file=str(running.token_file)
    ) as store:
        future = await store.afuture(timeout=30)
        waiting = asyncio.ensure_future(future.result())
        await running.waiting(1)
        # However long it waited, one wait request is open: two exists
        # checks at most (before waiting, after waking), not one per poll.
        await future.set_result({"v": 1})
        assert await asyncio.wait_for(waiting, 10) == {"v": 1}
        assert len(calls) <= 2


async def test_store_future_times_out(running: Running) -> None:
    async with EndpointStore(
        "waits-timeout", url=running.server.url, token_file=str(running.token_file)
    ) as store:
        future = await store.afuture()
        with pytest.raises(StoreTimeoutError):
            await future.result(timeout=0.2)
        assert running.waiters.waiting == 0


async def test_store_future_many_waiters_and_proxy(running: Running) -> None:
    async with EndpointStore(
        "waits-many", url=running.server.url, token_file=str(running.token_file)
    ) as store:
        future = await store.afuture(timeout=30)
        waiting = [asyncio.ensure_future(future.result()) for _ in range(5)]
        await running.waiting(5)
        await future.set_result([1, 2, 3])
        assert await asyncio.gather(*waiting) == [[1, 2, 3]] * 5


async def test_store_polls_while_waiters_are_capped(tmp_path: Path) -> None:
    async for running in _start(tmp_path, max_requests=2):
        async with EndpointStore(
            "waits-capped", url=running.server.url, token_file=str(running.token_file)
        ) as store:
            future = await store.afuture(timeout=30)
            first = asyncio.ensure_future(future.result())
            await running.waiting(1)
            # Refused a wait (429): this one polls, and still gets the value.
            second = asyncio.ensure_future(future.result())
            await future.set_result("both")
            assert await asyncio.wait_for(asyncio.gather(first, second), 10) == [
                "both",
                "both",
            ]


def test_sync_face_future_woken_across_threads(tmp_path: Path) -> None:
    from proxystore.store.endpoint import EndpointStore as SyncEndpointStore

    loop = asyncio.new_event_loop()
    started: list[Any] = []
    ready = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async for running in _start(tmp_path):
            started.append(running)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(30)
        running: Running = started[0]
        with SyncEndpointStore(
            "waits-sync", url=running.server.url, token_file=str(running.token_file)
        ) as store:
            future = store.future(timeout=30)
            proxy = future.proxy()
            got: list[Any] = []
            consumer = threading.Thread(target=lambda: got.append(len(proxy)))
            consumer.start()
            future.set_result(b"12345")
            consumer.join(30)
            assert got == [5]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


async def test_store_polls_an_endpoint_without_the_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxystore.endpoint import waiters

    # An endpoint from before the wait route: GET .../wait is a 404.
    monkeypatch.setattr(waiters, "install", lambda *args: None)
    token_file = create_api_token(tmp_path)
    config = EndpointConfig(name="old", uuid=str(uuid.uuid4()), port=0)
    async with (
        EndpointServer(config, api_token=read_api_token(token_file)) as server,
        EndpointStore("waits-old", url=server.url, token_file=str(token_file)) as store,
    ):
        storage = server._storage
        assert storage is not None
        original: Callable[[str], Awaitable[bool]] = storage.exists
        polled = asyncio.Event()

        async def exists(object_id: str) -> bool:
            polled.set()
            return await original(object_id)

        setattr(storage, "exists", exists)  # noqa: B010
        future = await store.afuture(timeout=30)
        waiting = asyncio.ensure_future(future.result())
        # The route is missing (404), so the store polls: set only once it has.
        await asyncio.wait_for(polled.wait(), 10)
        await future.set_result("polled")
        assert await asyncio.wait_for(waiting, 10) == "polled"
        with pytest.raises(StoreTimeoutError):
            await (await store.afuture()).result(timeout=0.1)
