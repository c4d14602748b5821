from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from proxystore.endpoint.storage import ObjectStorage
from proxystore.exceptions import (
    InvalidKeyError,
    LimitExceededError,
    StoreOperationError,
)


async def test_set_get_exists_evict_in_memory() -> None:
    storage = ObjectStorage()
    await storage.set("k", memoryview(b"value"))
    assert await storage.get("k") == b"value"
    assert await storage.exists("k")
    assert storage.memory_bytes == 5
    await storage.evict("k")
    await storage.evict("k")
    assert await storage.get("k") is None
    assert not await storage.exists("k")
    assert storage.memory_bytes == 0


async def test_overwrite_accounts_memory_once() -> None:
    storage = ObjectStorage(max_memory=10)
    await storage.set("k", b"x" * 8)
    await storage.set("k", b"y" * 9)
    assert storage.memory_bytes == 9
    assert await storage.get("k") == b"y" * 9


async def test_objects_beyond_memory_limit_spill_to_files(tmp_path: Path) -> None:
    storage = ObjectStorage(max_memory=10, spill_dir=tmp_path)
    await storage.set("small", b"a" * 6)
    await storage.set("big", b"b" * 6)
    assert not storage.is_spilled("small")
    assert storage.is_spilled("big")
    assert storage.memory_bytes == 6
    assert await storage.get("big") == b"b" * 6
    assert await storage.exists("big")
    spilled = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "owner"]
    assert [p.name for p in spilled] == ["big"]
    await storage.evict("big")
    assert not await storage.exists("big")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "owner"]
    await storage.set("big2", b"c" * 20)
    await storage.close()
    assert list(tmp_path.iterdir()) == []


async def test_memory_limit_without_spill_dir_refuses_clearly() -> None:
    storage = ObjectStorage(max_memory=4)
    with pytest.raises(LimitExceededError, match="max_memory of 4 bytes") as info:
        await storage.set("k", b"12345")
    assert info.value.limit == "max_memory"
    assert isinstance(info.value, StoreOperationError)
    assert not await storage.exists("k")


async def test_spill_limit_refuses_and_frees_on_evict(tmp_path: Path) -> None:
    storage = ObjectStorage(max_memory=4, spill_dir=tmp_path, max_spill=10)
    await storage.set("mem", b"1234")
    await storage.set("s1", b"x" * 6)
    with pytest.raises(LimitExceededError, match="max_spill of 10 bytes") as info:
        await storage.set("s2", b"y" * 6)
    assert info.value.limit == "max_spill"
    assert "(6 in use)" in str(info.value)
    assert not await storage.exists("s2")
    assert storage.spill_bytes == 6
    await storage.evict("s1")
    assert storage.spill_bytes == 0
    await storage.set("s2", b"y" * 6)
    assert await storage.get("s2") == b"y" * 6
    assert await storage.get("mem") == b"1234"
    await storage.close()


async def test_unsafe_object_id_never_reaches_the_file_system(tmp_path: Path) -> None:
    storage = ObjectStorage(max_memory=0, spill_dir=tmp_path / "spill")
    with pytest.raises(InvalidKeyError):
        await storage.set("../escape", b"x")
    assert not (tmp_path / "escape").exists()
    await storage.close()


async def test_spill_temp_files_never_collide_with_keys(tmp_path: Path) -> None:
    storage = ObjectStorage(max_memory=0, spill_dir=tmp_path)
    try:
        # ".a.tmp" was once the temporary name of key "a".
        await storage.set(".a.tmp", b"dotted")
        await storage.set("a", b"plain")
        await storage.set("a", b"plain again")
        assert await storage.get(".a.tmp") == b"dotted"
        assert await storage.get("a") == b"plain again"
        assert storage.spill_bytes == len(b"dotted") + len(b"plain again")
    finally:
        await storage.close()


async def test_concurrent_writers_of_one_key_take_turns(tmp_path: Path) -> None:
    storage = ObjectStorage(max_memory=0, spill_dir=tmp_path)
    try:
        bodies = [bytes([i]) * (1000 + i) for i in range(20)]
        await asyncio.gather(*(storage.set("k", body) for body in bodies))
        final = await storage.get("k")
        assert final in bodies
        # The count is that of the one object left, whichever write won.
        assert final is not None
        assert storage.spill_bytes == len(final)
        files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "owner"]
        assert [p.name for p in files] == ["k"]
    finally:
        await storage.close()


async def test_start_sweeps_the_spill_directory_of_a_crashed_endpoint(
    tmp_path: Path,
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    crashed = tmp_path / "objects-crashed"
    (crashed / "data").mkdir(parents=True)
    (crashed / "data" / "k").write_bytes(b"left behind")
    (crashed / "owner").write_text(
        json.dumps({"pid": dead.pid, "start_time": 1, "command": ["x"]})
    )
    live = ObjectStorage(max_memory=0, spill_dir=tmp_path)
    try:
        await live.set("mine", b"kept")
        # A second endpoint on the same directory keeps the live one's files.
        other = ObjectStorage(max_memory=0, spill_dir=tmp_path)
        await other.close()
        assert not crashed.exists()
        assert await live.get("mine") == b"kept"
    finally:
        await live.close()
