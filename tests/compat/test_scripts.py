"""The seed page's example and a 0.4 user's script, run unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import proxystore as ps
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).with_name("script_0_4.py")
ROOT = Path(__file__).parents[2]


@dataclass
class MyDataType:
    values: list[int]


@pytest.fixture
def my_store() -> Iterator[None]:
    yield
    store = ps.store.get_store("my-store")
    ps.store.unregister_store("my-store")
    if store is not None:
        store.close()


def test_seed_page_example(redis_server: RedisServer, my_store: None) -> None:
    REDIS_HOST, REDIS_PORT = redis_server.host, redis_server.port
    my_object = MyDataType([1, 2, 3])
    # From /work/shared/seed/getting-started.rst, as written:
    import proxystore as ps

    store = ps.store.init_store(
        'redis', name='my-store', hostname=REDIS_HOST, port=REDIS_PORT
    )  # fmt: skip

    # An already initialized store can be retrieved
    store = ps.store.get_store('my-store')  # fmt: skip

    # Stores have basic get/set functionality
    key = store.set(my_object)
    assert my_object == store.get(key)

    # Place an object in the store and return a proxy
    p = store.proxy(my_object)

    # The proxy, when used, will behave as the target
    assert isinstance(p, type(my_object))


def test_0_4_script_runs_unchanged(
    store_kind: tuple[str, dict[str, object]],
) -> None:
    kind, kwargs = store_kind
    done = subprocess.run(
        [sys.executable, str(SCRIPT), kind, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    # Deliberate differences warn; this script uses none of them.
    assert "Warning" not in done.stderr
