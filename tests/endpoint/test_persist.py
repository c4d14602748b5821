"""Persistent endpoint storage: the objects directory, its lock and its index."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from proxystore.endpoint.storage import ObjectStorage
from proxystore.endpoint.testing import EndpointProcess, configure_endpoint, run_cli
from proxystore.exceptions import (
    ConfigurationError,
    LimitExceededError,
    StoreOperationError,
)


async def test_objects_are_found_again_by_a_new_storage(tmp_path: Path) -> None:
    directory = tmp_path / "objects"
    first = ObjectStorage(max_memory=4, persist_dir=directory)
    await first.set("small", b"abc")
    await first.set("large", b"x" * 100)
    await first.set("gone", b"g")
    await first.evict("gone")
    assert first.memory_bytes == 3  # the cache holds what fits
    assert first.spill_bytes == 103
    assert len(first) == 2
    await first.close()
    assert directory.stat().st_mode & 0o777 == 0o700
    assert sorted(os.listdir(directory / "data")) == ["large", "small"]

    second = ObjectStorage(max_memory=4, persist_dir=directory)
    try:
        assert await second.get("small") == b"abc"
        assert await second.get("large") == b"x" * 100
        assert await second.get("gone") is None
        assert len(second) == 2
        assert second.spill_bytes == 103
        assert second.stats()["persist"] is True
        await second.set("small", b"abcd")
        assert second.spill_bytes == 104
        await second.evict("large")
        assert not (directory / "data" / "large").exists()
    finally:
        await second.close()


async def test_one_directory_is_used_by_one_storage_at_a_time(tmp_path: Path) -> None:
    first = ObjectStorage(persist_dir=tmp_path)
    try:
        with pytest.raises(ConfigurationError, match="in use by another endpoint"):
            ObjectStorage(persist_dir=tmp_path)
    finally:
        await first.close()
    again = ObjectStorage(persist_dir=tmp_path)
    await again.close()


async def test_index_ignores_what_is_not_an_object_and_sweeps_tmp(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    (data / "link").symlink_to(secret)
    (data / "sub").mkdir()
    os.mkfifo(data / "fifo")
    (data / "bad name").write_bytes(b"b")
    (data / "ok").write_bytes(b"kept")
    (tmp_path / "tmp" / "half-written").write_bytes(b"h")
    storage = ObjectStorage(persist_dir=tmp_path)
    try:
        assert len(storage) == 1
        assert await storage.get("ok") == b"kept"
        assert await storage.get("link") is None
        assert await storage.get("fifo") is None
        assert not await storage.exists("sub")
        assert storage.spill_bytes == 4
        assert os.listdir(tmp_path / "tmp") == []
        # A link planted while running is refused, not followed.
        (data / "ok").unlink()
        (data / "ok").symlink_to(secret)
        storage._memory.clear()
        storage._memory_bytes = 0
        with pytest.raises(StoreOperationError, match="cannot read object 'ok'"):
            await storage.get("ok")
    finally:
        await storage.close()


async def test_found_objects_count_toward_max_spill(tmp_path: Path) -> None:
    first = ObjectStorage(persist_dir=tmp_path)
    await first.set("a", b"x" * 10)
    await first.close()
    second = ObjectStorage(max_spill=12, persist_dir=tmp_path)
    try:
        with pytest.raises(LimitExceededError, match="max_spill"):
            await second.set("b", b"y" * 3)
        await second.set("a", b"z" * 12)  # replaces: fits
        assert second.spill_bytes == 12
    finally:
        await second.close()


async def test_default_storage_still_loses_its_objects(tmp_path: Path) -> None:
    first = ObjectStorage(max_memory=0, spill_dir=tmp_path)
    await first.set("k", b"spilled")
    await first.close()
    assert list(tmp_path.iterdir()) == []
    second = ObjectStorage(max_memory=0, spill_dir=tmp_path)
    try:
        assert await second.get("k") is None
        assert second.stats()["persist"] is False
    finally:
        await second.close()


def _get(site: EndpointProcess, key: str) -> bytes | None:
    request = urllib.request.Request(
        f"{site.url}/objects/{key}", headers=site.auth_headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def _put(site: EndpointProcess, key: str, data: bytes) -> None:
    request = urllib.request.Request(
        f"{site.url}/objects/{key}", data=data, method="PUT", headers=site.auth_headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _fill_and_stop(site: EndpointProcess) -> dict[str, Any]:
    """Start ``site``, store two objects (one beyond 1K), stop; return its status."""
    site.start()
    try:
        _put(site, "small", b"s" * 10)
        _put(site, "large", b"L" * 5000)
        result = run_cli(site.home, "status", site.name, "--json")
        status: dict[str, Any] = json.loads(result.stdout)
        return status
    finally:
        site.stop()


def _restart_and_get(site: EndpointProcess) -> tuple[list[bytes | None], str]:
    """Start ``site``, get what `_fill_and_stop` stored, stop; and its status."""
    site.start()
    try:
        found = [_get(site, key) for key in ("small", "large")]
        return found, run_cli(site.home, "status", site.name).stdout
    finally:
        site.stop()


@pytest.mark.timeout(90)
def test_objects_survive_a_restart_with_persist(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "keep", "--persist", "--max-memory", "1K")
    listed = run_cli(tmp_path, "list").stdout.splitlines()
    assert "PERSIST" in listed[0]
    assert "yes" in listed[1].split()
    status = _fill_and_stop(site)
    assert status["storage"]["persist"] is True
    assert status["storage"]["spill_bytes"] == 5010
    objects = tmp_path / "endpoints" / "keep" / "objects"
    assert objects.stat().st_mode & 0o777 == 0o700
    found, text = _restart_and_get(site)
    assert found == [b"s" * 10, b"L" * 5000]
    assert "persist    on" in text
    assert "objects    2" in text


@pytest.mark.timeout(90)
def test_completed_writes_survive_kill_9_and_tmp_is_swept(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "crash", "--persist")
    site.start()
    tmp = tmp_path / "endpoints" / "crash" / "objects" / "tmp"
    try:
        for i in range(5):
            _put(site, f"done{i}", bytes([i]) * 1000)
        # A PUT whose body is still arriving when the process dies.
        partial = socket.create_connection((site.config.host, site.config.port))
        headers = "".join(f"{k}: {v}\r\n" for k, v in site.auth_headers.items())
        partial.sendall(
            f"PUT /objects/partial HTTP/1.1\r\nHost: x\r\n{headers}"
            f"Content-Length: 1000000\r\n\r\n".encode()
            + b"p" * 1000
        )
        site.kill()
        partial.close()
    finally:
        site.stop()
    # What a crash in the middle of writing a file leaves behind.
    (tmp / "0123456789abcdef").write_bytes(b"half")
    site.start()
    try:
        for i in range(5):
            assert _get(site, f"done{i}") == bytes([i]) * 1000
        assert _get(site, "partial") is None
        assert list(tmp.iterdir()) == []
    finally:
        site.stop()


@pytest.mark.timeout(90)
def test_without_persist_objects_are_gone_after_a_restart(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "lose", "--max-memory", "1K")
    assert "no" in run_cli(tmp_path, "list").stdout.splitlines()[1].split()
    assert _fill_and_stop(site)["storage"]["persist"] is False
    assert not (tmp_path / "endpoints" / "lose" / "objects").exists()
    found, text = _restart_and_get(site)
    assert found == [None, None]
    assert "persist    off" in text


@pytest.mark.timeout(90)
def test_a_planted_symlink_in_data_is_not_followed(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "links", "--persist")
    site.start()
    site.stop()
    secret = tmp_path / "secret"
    secret.write_bytes(b"private")
    data = tmp_path / "endpoints" / "links" / "objects" / "data"
    (data / "planted").symlink_to(secret)
    site.start()
    try:
        assert _get(site, "planted") is None
        _put(site, "planted", b"new")  # replaces the link, not its target
        assert _get(site, "planted") == b"new"
    finally:
        site.stop()
    assert secret.read_bytes() == b"private"
    assert not (data / "planted").is_symlink()
    log = (tmp_path / "endpoints" / "links" / "endpoint.log").read_text()
    assert "not a regular file" in log
