from __future__ import annotations

import asyncio
import pickle

from proxystore.factory import LambdaFactory, SimpleFactory
from proxystore.proxy import Proxy


def add(a: int, b: int = 0) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    return a + b


def test_simple_factory() -> None:
    factory = SimpleFactory([1, 2])
    assert factory() == [1, 2]
    assert asyncio.run(factory.aresolve()) == [1, 2]
    assert pickle.loads(pickle.dumps(factory))() == [1, 2]


def test_lambda_factory_sync_and_async_functions() -> None:
    assert LambdaFactory(add, 1, b=2)() == 3
    assert asyncio.run(LambdaFactory(add, 1, b=2).aresolve()) == 3
    assert LambdaFactory(async_add, 1, 2)() == 3
    assert asyncio.run(LambdaFactory(async_add, 1, 2).aresolve()) == 3


def test_factory_in_proxy() -> None:
    p = Proxy(LambdaFactory(add, 40, 2))
    assert p == 42
    assert isinstance(p, int)
