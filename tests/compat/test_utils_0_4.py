"""ProxyStore 0.4's `proxystore.utils` helpers: still there, each deprecated."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from proxystore import utils
from proxystore.store.local import LocalStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_every_helper_warns_naming_its_replacement() -> None:
    with pytest.warns(DeprecationWarning, match=r"create_key.*set\(\)"):
        utils.create_key([1])
    with pytest.warns(DeprecationWarning, match="socket.gethostname"):
        assert utils.hostname() == socket.gethostname()
    with pytest.warns(DeprecationWarning, match="endpoint.config.home_dir"):
        utils.home_dir()


def test_create_key_is_fresh_and_unguessable() -> None:
    keys = {utils.create_key("same object") for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in keys)


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        (LocalStore, "proxystore.store.local.LocalStore"),
        (3.5, "float"),
        (Path("x"), f"{type(Path('x')).__module__}.{type(Path('x')).__qualname__}"),
    ],
)
def test_fullname(obj: Any, name: str) -> None:
    assert utils.fullname(obj) == name


def test_home_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROXYSTORE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert utils.home_dir() == str(tmp_path / "xdg" / "proxystore")
    monkeypatch.setenv("PROXYSTORE_HOME", "~/ps-home")
    assert utils.home_dir() == os.path.expanduser("~/ps-home")
    monkeypatch.delenv("PROXYSTORE_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert utils.home_dir() == os.path.expanduser("~/.local/share/proxystore")


def test_chunk_bytes_covers_the_data_in_order() -> None:
    data = bytes(range(256)) * 3
    chunks = list(utils.chunk_bytes(data, 100))
    assert [len(c) for c in chunks] == [100] * 7 + [68]
    assert b"".join(chunks) == data
    assert list(utils.chunk_bytes(b"", 8)) == []
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            list(utils.chunk_bytes(data, bad))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "precision", "text"),
    [
        (999, 3, "999 B"),
        (2500, 3, "2.5 KB"),
        (10**4, 0, "10 KB"),
        (7_654_321, 2, "7.65 MB"),
        (3 * 10**16, 3, "30000 TB"),
    ],
)
def test_bytes_to_readable(size: int, precision: int, text: str) -> None:
    assert utils.bytes_to_readable(size, precision) == text


@pytest.mark.parametrize(
    ("text", "size"),
    [("2.5 KB", 2500), ("10kb", 10_000), (" 3 GB ", 3 * 10**9), ("42", 42)],
)
def test_readable_to_bytes(text: str, size: int) -> None:
    assert utils.readable_to_bytes(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "value and a unit"),
        ("2 3 KB", "value and a unit"),
        ("4 PB", "Unknown unit 'PB'"),
        ("x.5 MB", "float"),
        ("inf KB", "finite"),
        ("nan B", "finite"),
        ("nan", "value and a unit"),
    ],
)
def test_readable_to_bytes_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        utils.readable_to_bytes(text)
    with pytest.raises(ValueError, match="negative"):
        utils.bytes_to_readable(-5)
