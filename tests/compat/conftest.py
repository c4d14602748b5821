"""Stores of every kind that take user keys, for the 0.4 API tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import proxystore as ps
from proxystore.store.base import Store
from tests.redis_server import RedisServer


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _kwargs(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> dict[str, object]:
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return {"hostname": server.host, "port": server.port}
    if kind == "file":
        return {"store_dir": str(tmp_path / "store")}
    return {}


@pytest.fixture(params=["local", "file", "redis"])
def keyed_store(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> Iterator[Store[str]]:
    """A registered sync store of each kind that takes user keys."""
    store = ps.store.init_store(
        request.param, name=store_name, **_kwargs(request.param, request, tmp_path)
    )
    yield store
    store.close()


@pytest.fixture(params=["local", "redis"])
def store_kind(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[str, dict[str, object]]:
    """A store type and its arguments, for scripts that call init_store."""
    return request.param, _kwargs(request.param, request, tmp_path)
