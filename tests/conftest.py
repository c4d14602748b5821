"""Fixtures shared by the whole suite."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from proxystore import registry

_names = itertools.count()

# Keep WebRTC peers of the test suite (and the processes it starts) on loopback.
os.environ.setdefault("PROXYSTORE_P2P_ICE_ADDRESSES", "127.0.0.1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Engine examples are heavy: CI runs them once, not once per Python."""
    for item in items:
        if item.get_closest_marker("example") is not None:
            item.add_marker(pytest.mark.heavy)


@pytest.fixture
def store_name() -> Iterator[str]:
    """A store name no other test uses; unregistered afterwards."""
    name = f"test-store-{os.getpid()}-{next(_names)}"
    yield name
    registry.unregister(name)


# --- Redis: a private redis-server per session (tests/redis_server.py) ---------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A `redis-server` on a free loopback port, stopped by pid at the end."""
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[object]:
    """A Redis Cluster (3 masters, 3 replicas) on loopback, stopped by pid."""
    from tests.redis_cluster import RedisClusterNodes

    with RedisClusterNodes() as cluster:
        yield cluster


# --- end Redis -------------------------------------------------------------------
