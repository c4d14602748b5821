"""Every store takes the base store's keywords, as `Store.__init__` declares them."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from proxystore.aio import base as aio_base
from proxystore.aio.endpoint import EndpointStore as AsyncEndpointStore
from proxystore.aio.file import FileStore as AsyncFileStore
from proxystore.aio.globus import GlobusStore as AsyncGlobusStore
from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.store import base as sync_base
from proxystore.store.endpoint import EndpointStore
from proxystore.store.file import FileStore
from proxystore.store.globus import GlobusStore
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore

STORES = [
    AsyncLocalStore,
    AsyncFileStore,
    AsyncRedisStore,
    AsyncEndpointStore,
    AsyncGlobusStore,
    LocalStore,
    FileStore,
    RedisStore,
    EndpointStore,
    GlobusStore,
]


def _keyword_only(function: Any) -> dict[str, inspect.Parameter]:
    return {
        name: parameter
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_the_shared_keywords_are_said_once() -> None:
    for base in (aio_base, sync_base):
        shared = _keyword_only(base.Store.__init__)
        assert tuple(shared) == base._BASE_KEYWORDS
        assert set(shared) == {
            "cache_size",
            "metrics",
            "stats",
            "signing_keys",
            "sign_full_data",
        }


@pytest.mark.parametrize(
    "cls", STORES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}"
)
def test_every_store_declares_the_shared_keywords(cls: type[Any]) -> None:
    # The public signatures (and the docs built from them) keep every
    # shared keyword, with the base's default and annotation.
    base = inspect.getmodule(cls.__mro__[1])
    assert base is not None
    mine = _keyword_only(cls.__init__)
    for name, parameter in _keyword_only(base.Store.__init__).items():
        assert name in mine, name
        assert mine[name].default == parameter.default, name
        assert mine[name].annotation == parameter.annotation, name


def _stores(tmp_path: Path, options: dict[str, Any]) -> list[Any]:
    return [
        FileStore("f", tmp_path / "f", **options),
        AsyncFileStore("af", tmp_path / "af", **options),
        RedisStore("r", "127.0.0.1", 1, **options),
        AsyncRedisStore("ar", "127.0.0.1", 1, **options),
        EndpointStore("e", url="http://127.0.0.1:1", **options),
        AsyncEndpointStore("ae", url="http://127.0.0.1:1", **options),
    ]


def test_stores_hand_the_shared_keywords_to_the_base(tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "cache_size": 3,
        "metrics": True,
        "stats": True,
        "signing_keys": [("k1", b"0" * 32)],
        "sign_full_data": True,
    }
    for store in _stores(tmp_path, options):
        config = store.config()
        assert config["cache_size"] == 3
        assert config["metrics"] is True
        assert config["stats"] is True
        assert config["signing_keys"] == "env"  # keys given, never carried
        assert config["sign_full_data"] is True
