"""Byte storage of an endpoint: memory first, then an optional spill directory.

What survives a restart depends on the mode:

- **Default (not persistent)**: objects live as long as the endpoint
  process. Memory is lost on exit, and the private spill directory is
  deleted on close, or, after a crash, by the next endpoint started on the
  same spill directory (`sweep_spill_dir`). Nothing survives a restart.
- **Persistent** (``persist_dir``, ``configure --persist``): every object
  is written to a file of the objects directory (`proxystore.endpoint.persist`)
  before the write is answered, memory is only a cache in front of it, and
  the directory is kept on close. Objects whose write completed are served
  again after a stop, a restart or a crash (``kill -9``); a write cut short
  leaves only a file in ``tmp/``, removed at the next start. Files are not
  fsynced: a crash of the machine itself may lose the latest writes.

Spill layout: ``<spill_dir>/objects-<random>/`` per running endpoint, with
``owner`` (the owning process: pid, start time, command line), ``data/``
(one file per object, named by its id) and ``tmp/`` (files being written,
random names), so no object id can collide with a temporary file. The
persistent objects directory has the same ``data/`` and ``tmp/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from proxystore.endpoint.keys import validate_object_id
from proxystore.exceptions import LimitExceededError, StoreOperationError

Data = bytes | bytearray | memoryview

logger = logging.getLogger(__name__)

_OWNER_FILE = "owner"
_PREFIX = "objects-"


def sweep_spill_dir(spill_dir: str | Path) -> list[Path]:
    """Delete the private directories in ``spill_dir`` of endpoints that are gone.

    A directory is removed when its ``owner`` record names a process that no
    longer runs (or another process under a reused pid); directories of live
    endpoints are kept.

    Returns:
        The directories removed.
    """
    base = Path(spill_dir)
    if not base.is_dir():
        return []
    return remove_orphans(base.glob(f"{_PREFIX}*"), "spill")


def remove_orphans(directories: Iterable[Path], kind: str) -> list[Path]:
    """Delete those of ``directories`` whose ``owner`` record names no live process.

    Returns:
        The directories removed.
    """
    from proxystore.endpoint.process import PidRecord

    removed: list[Path] = []
    for directory in directories:
        try:
            record = PidRecord.from_text((directory / _OWNER_FILE).read_text())
        except OSError:
            record = None
        if record is not None and record.mismatch() is None:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
        logger.info(
            "removed the %s directory %s of a crashed endpoint", kind, directory
        )
    return removed


class ObjectStorage:
    """Objects by id, kept in memory up to a limit and spilled to files beyond it.

    Args:
        max_memory: Bytes of objects to hold in memory (``None``: no limit).
        spill_dir: Directory under which objects that do not fit in memory are
            written, one file each. A private subdirectory is created in it
            and removed by :meth:`close`, since spilled objects are as
            short-lived as the in-memory ones.
        max_spill: Bytes of objects to hold in the spill directory, or in
            ``persist_dir`` (``None``: no limit).
        persist_dir: Keep every object in this directory across restarts
            (memory is then a cache in front of it, and ``spill_dir`` is
            not used); ``None`` (default): objects go with the process.

    Objects that fit go to memory; an object that would take memory past
    ``max_memory`` goes to the spill directory. One that fits in neither is
    refused with `LimitExceededError` naming the limit; other objects are
    untouched.
    """

    def __init__(
        self,
        max_memory: int | None = None,
        spill_dir: str | Path | None = None,
        max_spill: int | None = None,
        persist_dir: str | Path | None = None,
    ) -> None:
        self.max_memory = max_memory
        self.max_spill = max_spill
        self.persist = persist_dir is not None
        self._memory: dict[str, bytes] = {}
        self._memory_bytes = 0
        self._spilled: dict[str, int] = {}
        self._spill_bytes = 0
        self._spill_path: Path | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_fd: int | None = None
        # Bumped by every write and eviction: a read that raced one does not
        # put what it read in the cache.
        self._generation = 0
        if persist_dir is not None:
            self._open_persistent(Path(persist_dir))
        elif spill_dir is not None:
            from proxystore.endpoint.process import PidRecord

            base = Path(spill_dir)
            base.mkdir(parents=True, exist_ok=True)
            sweep_spill_dir(base)
            self._spill_path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))
            (self._spill_path / _OWNER_FILE).write_text(
                PidRecord.of_this_process().to_text()
            )
            (self._spill_path / "data").mkdir()
            (self._spill_path / "tmp").mkdir()

    def _open_persistent(self, directory: Path) -> None:
        from proxystore.endpoint import persist

        self._lock_fd = persist.lock_directory(directory)
        try:
            persist.sweep_tmp(directory)
            self._spilled = persist.index_objects(directory)
        except OSError as err:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StoreOperationError(
                f"cannot read the objects directory {directory}: {err}"
            ) from err
        self._spill_bytes = sum(self._spilled.values())
        self._spill_path = directory
        if self.max_spill is not None and self._spill_bytes > self.max_spill:
            logger.warning(
                "the %d bytes of objects found in %s are more than max_spill "
                "(%d): new objects are refused until some are evicted",
                self._spill_bytes,
                directory,
                self.max_spill,
            )

    @property
    def memory_bytes(self) -> int:
        """Bytes of objects currently held in memory."""
        return self._memory_bytes

    @property
    def spill_bytes(self) -> int:
        """Bytes of objects currently held in the spill directory."""
        return self._spill_bytes

    def __len__(self) -> int:
        if self.persist:  # every object has a file; memory holds copies
            return len(self._spilled)
        return len(self._memory) + len(self._spilled)

    def stats(self) -> dict[str, Any]:
        """Return counts and limits of what is held (for ``GET /endpoint/status``)."""
        return {
            "objects": len(self),
            "memory_objects": len(self._memory),
            "memory_bytes": self._memory_bytes,
            "max_memory": self.max_memory,
            "spill_objects": len(self._spilled),
            "spill_bytes": self._spill_bytes,
            "max_spill": self.max_spill,
            "spill_dir": None if self._spill_path is None else str(self._spill_path),
            "persist": self.persist,
        }

    def is_spilled(self, object_id: str) -> bool:
        """Return whether the object is held in the spill directory."""
        return object_id in self._spilled

    async def set(self, object_id: str, data: Data) -> None:
        """Store ``data`` under ``object_id``, replacing any previous object.

        Raises:
            InvalidKeyError: If ``object_id`` is not a valid object id.
            LimitExceededError: If the object fits neither in memory
                (``max_memory``) nor in the spill directory (``max_spill``, or
                no spill directory).
            StoreOperationError: If writing the spill file fails.
        """
        validate_object_id(object_id)
        async with self._key_lock(object_id):
            await self._set(object_id, data)

    @contextlib.asynccontextmanager
    async def _key_lock(self, object_id: str) -> AsyncIterator[None]:
        # Writers of one key take turns, so the counts and the file stay
        # those of one write; the lock goes away with its last user.
        lock = self._locks.setdefault(object_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(object_id, None)

    async def _set(self, object_id: str, data: Data) -> None:
        self._generation += 1
        if self.persist:
            await self._set_persistent(object_id, data)
            return
        size = memoryview(data).nbytes
        await self._evict(object_id)
        fits = self.max_memory is None or self._memory_bytes + size <= self.max_memory
        if fits:
            self._memory[object_id] = bytes(data)
            self._memory_bytes += size
            return
        if self._spill_path is None:
            raise LimitExceededError(
                "max_memory",
                f"object {object_id!r} of {size} bytes does not fit in the "
                f"endpoint's max_memory of {self.max_memory} bytes "
                f"({self._memory_bytes} in use) and no spill directory is set",
            )
        if self.max_spill is not None and self._spill_bytes + size > self.max_spill:
            raise LimitExceededError(
                "max_spill",
                f"object {object_id!r} of {size} bytes does not fit in the "
                f"endpoint's max_memory of {self.max_memory} bytes "
                f"({self._memory_bytes} in use) nor in its max_spill of "
                f"{self.max_spill} bytes ({self._spill_bytes} in use)",
            )
        await self._write_file(object_id, data, size, "spill")

    async def _write_file(
        self, object_id: str, data: Data, size: int, verb: str
    ) -> None:
        # Counted before the write so concurrent writes cannot overshoot.
        self._spill_bytes += size
        path = self._file(object_id)
        try:
            await asyncio.to_thread(_write_atomic, path, self._temp_file(), data)
        except BaseException as err:
            self._spill_bytes -= size
            if isinstance(err, OSError):
                raise StoreOperationError(
                    f"cannot {verb} object {object_id!r} of {size} bytes to "
                    f"{path}: {err}"
                ) from err
            raise
        self._spilled[object_id] = size

    async def _set_persistent(self, object_id: str, data: Data) -> None:
        size = memoryview(data).nbytes
        old = self._spilled.get(object_id, 0)
        if (
            self.max_spill is not None
            and self._spill_bytes - old + size > self.max_spill
        ):
            raise LimitExceededError(
                "max_spill",
                f"object {object_id!r} of {size} bytes does not fit in the "
                f"endpoint's max_spill of {self.max_spill} bytes "
                f"({self._spill_bytes} in use in {self._spill_path})",
            )
        cached = self._memory.pop(object_id, None)
        if cached is not None:
            self._memory_bytes -= len(cached)
        # The old file stays until the new one replaces it (a crash keeps one).
        await self._write_file(object_id, data, size, "write")
        self._spill_bytes -= old
        self._cache(object_id, data)

    def _cache(self, object_id: str, data: Data) -> None:
        size = memoryview(data).nbytes
        if self.max_memory is None or self._memory_bytes + size <= self.max_memory:
            self._memory[object_id] = bytes(data)
            self._memory_bytes += size

    async def get(self, object_id: str) -> bytes | None:
        """Return the object stored under ``object_id``, or ``None`` if missing."""
        validate_object_id(object_id)
        found = self._memory.get(object_id)
        if found is not None:
            return found
        if self.persist and object_id in self._spilled:
            return await self._read_persistent(object_id)
        if object_id in self._spilled:
            return await asyncio.to_thread(self._file(object_id).read_bytes)
        return None

    async def _read_persistent(self, object_id: str) -> bytes | None:
        from proxystore.endpoint.persist import read_object

        generation = self._generation
        path = self._file(object_id)
        try:
            data = await asyncio.to_thread(read_object, path)
        except FileNotFoundError:
            return None  # evicted meanwhile
        except OSError as err:
            raise StoreOperationError(
                f"cannot read object {object_id!r} from {path}: {err}"
            ) from err
        if generation == self._generation and object_id in self._spilled:
            self._cache(object_id, data)
        return data

    async def exists(self, object_id: str) -> bool:
        """Return whether an object is stored under ``object_id``."""
        validate_object_id(object_id)
        return object_id in self._memory or object_id in self._spilled

    async def evict(self, object_id: str) -> None:
        """Remove the object under ``object_id``; a missing object is no error."""
        validate_object_id(object_id)
        async with self._key_lock(object_id):
            await self._evict(object_id)

    async def _evict(self, object_id: str) -> None:
        self._generation += 1
        found = self._memory.pop(object_id, None)
        if found is not None:
            self._memory_bytes -= len(found)
        size = self._spilled.pop(object_id, None)
        if size is not None:
            self._spill_bytes -= size
            await asyncio.to_thread(self._file(object_id).unlink, missing_ok=True)

    async def close(self) -> None:
        """Drop every object and delete the private spill directory.

        A persistent storage keeps its directory and releases its lock.
        """
        self._memory.clear()
        self._memory_bytes = 0
        self._spilled.clear()
        self._spill_bytes = 0
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if not self.persist and self._spill_path is not None:
            await asyncio.to_thread(shutil.rmtree, self._spill_path, True)

    def _file(self, object_id: str) -> Path:
        assert self._spill_path is not None
        return self._spill_path / "data" / object_id

    def _temp_file(self) -> Path:
        assert self._spill_path is not None
        return self._spill_path / "tmp" / secrets.token_hex(16)


def _write_atomic(path: Path, temp: Path, data: Data) -> None:
    try:
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
