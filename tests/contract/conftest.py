"""The stores the contract runs on, and the real services behind them.

`spec` is parametrized over every store: local, file, Redis (a private
redis-server), a Redis Cluster (3 masters, 3 replicas), an endpoint (one real
endpoint process) and Globus (the Transfer emulator of tests/globus). Both
faces of the contract (test_contract_aio.py and the generated
test_contract_sync.py) build their stores from the same specs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STORES = ("local", "file", "redis", "redis-cluster", "endpoint", "globus")


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """How to build one store: `init_store(kind, name=..., **kwargs)`."""

    id: str
    kind: str
    kwargs: dict[str, Any]
    futures: bool = True
    """Whether the store has `Store.future` (not Globus, not a Redis Cluster yet)."""


@pytest.fixture(scope="session")
def contract_endpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """One endpoint process (no peers): its URL and API token file."""
    from proxystore.endpoint.testing import configure_endpoint

    site = configure_endpoint(tmp_path_factory.mktemp("contract-site"), "contract")
    site.start(wait=30.0)
    try:
        yield {"url": site.url, "token_file": str(site.token_file)}
    finally:
        site.stop()


@pytest.fixture
def globus_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """A GlobusStore on "host-a" of two emulated endpoints, logged in."""
    from tests.globus.emulator import TransferEmulator
    from tests.globus.harness import two_endpoints, write_login

    home = tmp_path / "globus-home"
    monkeypatch.setenv("PROXYSTORE_HOME", str(home))
    # As on a real host: a store rebuilt from a proxy finds its endpoint too.
    monkeypatch.setenv("PROXYSTORE_GLOBUS_HOSTNAME", "host-a")
    write_login(home / "globus-tokens.json")
    endpoints, roots = two_endpoints(tmp_path / "globus")
    with TransferEmulator(roots, required_token="access-token") as emulator:
        yield {
            "endpoints": endpoints,
            "base_url": emulator.base_url,
            "polling_interval": 0.02,
            "timeout": 10.0,
        }


@pytest.fixture(params=STORES)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """The store a contract test runs on (one per parameter)."""
    kind: str = request.param
    if kind == "local":
        return StoreSpec(kind, "local", {})
    if kind == "file":
        return StoreSpec(kind, "file", {"store_dir": str(tmp_path / "objects")})
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        return StoreSpec(kind, "redis", {"hostname": "127.0.0.1", "port": server.port})
    if kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return StoreSpec(kind, "redis", {"cluster_nodes": cluster.seeds})
    if kind == "endpoint":
        return StoreSpec(kind, "endpoint", request.getfixturevalue("contract_endpoint"))
    assert kind == "globus"
    options = request.getfixturevalue("globus_options")
    # A future's key is minted before its write; a Globus key names the
    # Transfer task of the write.
    return StoreSpec(kind, "globus", options, futures=False)
