"""The generated blocking `proxystore.store.globus.GlobusStore`, same emulator.

Covers what differs in the sync face (blocking calls made directly, builtin
file I/O, `time.sleep` polling) and that a proxy made by the async face on one
"host" resolves through the sync face on another.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from proxystore.exceptions import StoreOperationError, StoreTimeoutError
from proxystore.globus.endpoints import GlobusEndpoints
from proxystore.store.globus import GlobusStore
from tests.globus import hosts
from tests.globus.emulator import TransferEmulator
from tests.globus.harness import two_endpoints, write_login

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path / "home"))
    write_login(tmp_path / "home" / "globus-tokens.json")
    return tmp_path / "home"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[GlobusEndpoints, TransferEmulator]]:
    endpoints, roots = two_endpoints(tmp_path)
    with TransferEmulator(roots, required_token="access-token") as emulator:
        yield endpoints, emulator


def stores(
    name: str, endpoints: GlobusEndpoints, emulator: TransferEmulator, **kwargs: Any
) -> tuple[GlobusStore, GlobusStore]:
    options: dict[str, Any] = {
        "base_url": emulator.base_url,
        "polling_interval": 0.02,
        "timeout": 10.0,
        **kwargs,
    }
    return (
        GlobusStore(name, endpoints, hostname="host-a", **options),
        GlobusStore(name, endpoints, hostname="host-b", **options),
    )


def test_set_get_exists_evict(
    home: Path, setup: tuple[GlobusEndpoints, TransferEmulator], store_name: str
) -> None:
    endpoints, emulator = setup
    a, b = stores(store_name, endpoints, emulator)
    with a, b:
        key = a.set({"x": 1})
        assert b.get(key) == {"x": 1}
        assert b.exists(key)
        a.evict(key)
        (delete,) = [t for t in emulator.tasks.values() if t.kind == "DELETE"]
        assert delete.done.wait(5)
        assert not b.exists(key)


def test_failure_and_timeout(
    home: Path, setup: tuple[GlobusEndpoints, TransferEmulator], store_name: str
) -> None:
    endpoints, emulator = setup
    emulator.outcome = "fail"
    a, b = stores(store_name, endpoints, emulator, timeout=0.2)
    with a, b:
        key = a.set("x")
        with pytest.raises(StoreOperationError, match=key.task_id):
            b.get(key)
        emulator.outcome = "hang"
        key = a.set("y")
        with pytest.raises(StoreTimeoutError, match=key.task_id):
            b.get(key)


def test_async_proxy_resolves_through_sync_face_on_other_host(
    home: Path, setup: tuple[GlobusEndpoints, TransferEmulator], store_name: str
) -> None:
    endpoints, emulator = setup
    spawn = multiprocessing.get_context("spawn")
    kwargs = {
        "name": store_name,
        "endpoints": endpoints.to_dict(),
        "base_url": emulator.base_url,
        "polling_interval": 0.02,
    }
    with (
        ProcessPoolExecutor(1, spawn, hosts.pretend_to_be, ("host-a", str(home))) as a,
        ProcessPoolExecutor(1, spawn, hosts.pretend_to_be, ("host-b", str(home))) as b,
    ):
        pickled = a.submit(hosts.make_proxy, kwargs, ["sync", "face"]).result(30)
        assert b.submit(hosts.resolve_sync, pickled).result(30) == ["sync", "face"]
