"""Arguments are checked when a store is built, with messages that say where."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from proxystore.exceptions import ConfigurationError
from proxystore.store.endpoint import EndpointStore
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore
from proxystore.store.utils import configure_prefetch

BAD_SECONDS = [math.inf, -math.inf, math.nan, 0, -1.0, "5", None, True]


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("option", ["socket_timeout", "socket_connect_timeout"])
def test_redis_timeouts(option: str, value: Any, store_name: str) -> None:
    with pytest.raises(ConfigurationError, match=option) as info:
        RedisStore(store_name, **{option: value})
    assert f"RedisStore {store_name!r}" in str(info.value)
    assert "finite number of seconds" in str(info.value)


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_endpoint_timeout(value: Any, store_name: str) -> None:
    with pytest.raises(ConfigurationError, match="timeout") as info:
        EndpointStore(store_name, url="http://127.0.0.1:1", timeout=value)
    assert f"EndpointStore {store_name!r}" in str(info.value)


@pytest.mark.parametrize("endpoints", [5, [1, 2], [None]])
def test_endpoint_endpoints_must_be_names(endpoints: Any, store_name: str) -> None:
    with pytest.raises(ConfigurationError, match="endpoints"):
        EndpointStore(store_name, endpoints)


def test_endpoint_url_must_be_a_str(store_name: str) -> None:
    with pytest.raises(ConfigurationError, match="url"):
        EndpointStore(store_name, url=b"http://127.0.0.1:1")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [v for v in BAD_SECONDS if v is not None])
def test_prefetch_timeout(value: Any) -> None:  # None there means "unchanged"
    with pytest.raises(ConfigurationError, match="configure_prefetch"):
        configure_prefetch(timeout=value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cache_size": True}, "cache_size"),
        ({"cache_size": -1}, "cache_size"),
        ({"cache_size": 1.5}, "cache_size"),
        ({"metrics": "yes"}, "metrics"),
        ({"metrics": 1}, "metrics"),
    ],
)
def test_common_store_arguments(
    kwargs: dict[str, Any], match: str, store_name: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        LocalStore(store_name, **kwargs)
    with pytest.raises(ConfigurationError, match=match):
        FileStore(store_name, tmp_path, **kwargs)


def test_finite_timeouts_are_kept_as_float(store_name: str) -> None:
    store = RedisStore(store_name, socket_timeout=2, socket_connect_timeout=0.5)
    assert store.socket_timeout == 2.0
    assert store.socket_connect_timeout == 0.5
