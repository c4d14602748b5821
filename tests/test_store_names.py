"""The same store names in `proxystore.store` and `proxystore.aio`, imported lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import proxystore.aio
import proxystore.store
from proxystore._store_names import STORE_NAMES
from proxystore.exceptions import MissingExtraError

SUBPROCESS_TIMEOUT = 60.0


@pytest.mark.parametrize("name", STORE_NAMES)
def test_each_store_name_is_exported_by_both_faces(name: str) -> None:
    sync_cls = getattr(proxystore.store, name)
    async_cls = getattr(proxystore.aio, name)
    assert sync_cls.__name__ == async_cls.__name__ == name
    assert sync_cls.__module__.startswith("proxystore.store.")
    assert async_cls.__module__.startswith("proxystore.aio.")
    assert sync_cls._IS_SYNC is True
    assert async_cls._IS_SYNC is False
    assert name in proxystore.store.__all__
    assert name in proxystore.aio.__all__


@pytest.mark.parametrize("package", [proxystore.store, proxystore.aio])
def test_an_unknown_name_is_an_attribute_error(package: object) -> None:
    with pytest.raises(AttributeError, match="NoSuchStore"):
        _ = package.NoSuchStore  # type: ignore[attr-defined]


def test_missing_extra_is_an_import_error_from_our_hierarchy() -> None:
    assert issubclass(MissingExtraError, ImportError)


_WITHOUT_EXTRA = """
import sys
sys.modules[{module!r}] = None  # as if the extra's package were not installed
import proxystore.store
import proxystore.aio
from proxystore.store import FileStore, LocalStore
from proxystore.aio import FileStore, LocalStore
from proxystore.exceptions import MissingExtraError
for package in ("proxystore.store", "proxystore.aio"):
    try:
        exec(f"from {{package}} import {name}")
    except MissingExtraError as err:
        print(err)
    else:
        raise SystemExit(f"{{package}}.{name} imported without {module}")
"""


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [
        ("RedisStore", "redis", "redis"),
        ("GlobusStore", "globus_sdk", "globus"),
        ("EndpointStore", "httpx", "endpoints"),
    ],
)
def test_a_missing_extra_fails_only_on_use_naming_the_extra(
    name: str, module: str, extra: str
) -> None:
    code = textwrap.dedent(_WITHOUT_EXTRA.format(module=module, name=name))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for package, line in zip(
        ("proxystore.store", "proxystore.aio"), lines, strict=True
    ):
        assert line.startswith(f"{package}.{name} needs the {extra!r} extra")
        assert f"pip install 'proxystore[{extra}]'" in line
