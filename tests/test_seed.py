"""The examples of the seed page (getting-started.rst), as written.

The Redis example itself runs against a real server in test_seed_redis.py;
here the same lines run on the embedded stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import proxystore as ps


@dataclass
class MyDataType:
    values: list[int]


def my_function(input: MyDataType) -> None:
    # Always true even if input is a proxy
    assert isinstance(input, MyDataType)

    # Compute using the data
    assert sum(input.values) == 6


@pytest.mark.parametrize(
    ("store_type", "options"),
    [("local", {}), ("file", {"store_dir": "DIR"})],
)
def test_usage_example(
    store_type: str, options: dict[str, str], tmp_path: Path
) -> None:
    options = {k: str(tmp_path) if v == "DIR" else v for k, v in options.items()}
    my_object = MyDataType([1, 2, 3])

    store = ps.store.init_store(store_type, name="my-store", **options)

    # An already initialized store can be retrieved
    store = ps.store.get_store("my-store")

    # Stores have basic get/set functionality
    key = store.set(my_object)
    assert my_object == store.get(key)

    # Place an object in the store and return a proxy
    p = store.proxy(my_object)

    # The proxy, when used, will behave as the target
    assert isinstance(p, type(my_object))

    my_function(p)
    ps.store.unregister_store("my-store")
