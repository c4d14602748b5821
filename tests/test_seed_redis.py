"""The seed page's Redis example, verbatim, against a private redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import proxystore as ps
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)


@dataclass
class MyDataType:
    values: list[int]


@pytest.fixture
def my_store(redis_server: RedisServer) -> Iterator[None]:
    yield
    store = ps.store.get_store("my-store")
    ps.store.unregister_store("my-store")
    store.close()


def test_seed_example(redis_server: RedisServer, my_store: None) -> None:
    REDIS_HOST = redis_server.host
    REDIS_PORT = redis_server.port
    my_object = MyDataType([1, 2, 3])

    import proxystore as ps

    store = ps.store.init_store(
        "redis", name="my-store", hostname=REDIS_HOST, port=REDIS_PORT
    )
    store = ps.store.get_store("my-store")
    key = store.set(my_object)
    assert my_object == store.get(key)
    p = store.proxy(my_object)
    assert isinstance(p, type(my_object))
