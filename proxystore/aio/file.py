"""`FileStore`: objects as files in a directory, shared by processes and hosts.

Every write goes to a temporary file in the same directory that is renamed
into place, so a reader sees a whole object or none. Keys are plain file names:
anything that could leave the directory is refused. Temporary files are named
after their writer (`proxystore._tempfiles`), so the first store a process
opens on a directory (and `FileStore.sweep`) removes those whose writer was
killed mid-write. An object's version is its file's ``st_mtime_ns``, which
every write sets explicitly (file system clocks can be too coarse to tell
two quick writes apart).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from typing import Any

from proxystore._compat import ato_thread, remove_files
from proxystore._shared import new_object_id, next_version
from proxystore._tempfiles import (
    first_open,
    fsync_directory,
    host_name,
    is_orphan,
    not_swept,
    temp_name,
)
from proxystore.aio.base import Store
from proxystore.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    StoreOperationError,
)
from proxystore.frame import MAX_ONE_PART_HEAD, Split, Stored, head_size
from proxystore.serialize import Buffer, Payload
from proxystore.signing import SigningKeysOption

_IS_SYNC = False

LEASE_PREFIX = ".lease-"
"""Lease files ``.lease-K`` hold the unix time (ASCII) at which ``K`` expires."""

_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")

logger = logging.getLogger(__name__)


class FileStore(Store[str]):
    """A store of files in a directory.

    Args:
        name: The store's name.
        store_dir: The directory; created if missing. Every process that
            resolves this store's proxies must see it at the same path.
        durable: Make every write survive a power loss or kernel crash once
            `set` returns: the file is fsynced before it is renamed into
            place, and the directory after. Without it a crash may lose
            recent objects (never expose partial ones). It costs two disk
            flushes per write; measured on a virtual disk (ext4 on virtio,
            benchmarks/bench_file_durable.py, median of 20): 16 KiB sets
            0.2 -> 0.9 ms, 1 MiB 0.6 -> 7 ms, 16 MiB 8 -> 24 ms.
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        stats: Also record them per key (see `Store.stats`).
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.aio.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.

    Raises:
        ConfigurationError: If `store_dir` is empty, not a path, or cannot be
            created, or `durable` is not a bool.

    Operations that fail in the file system (disk full, read-only or
    unreadable directory) raise `StoreOperationError` naming the store, its
    directory and the operation, with the `OSError` as ``__cause__``.
    """

    _IDENTITY = ("store_dir",)
    _USER_KEY_REFUSAL = None

    def __init__(
        self,
        name: str,
        store_dir: str | os.PathLike[str],
        *,
        durable: bool = False,
        cache_size: int = 16,
        metrics: bool = False,
        stats: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
    ) -> None:
        super().__init__(name, **self._base_options(locals()))
        if not isinstance(store_dir, (str, os.PathLike)) or not isinstance(
            os.fspath(store_dir), str
        ):
            raise ConfigurationError(
                f"store_dir of FileStore {name!r} must be a str or path, "
                f"got {type(store_dir).__name__}"
            )
        if not os.fspath(store_dir):
            # abspath('') is the working directory: never what was meant.
            raise ConfigurationError(
                f"store_dir of FileStore {name!r} is empty; give a directory"
            )
        if not isinstance(durable, bool):
            raise ConfigurationError(
                f"durable of FileStore {name!r} must be a bool, got {durable!r}"
            )
        self.store_dir = os.path.abspath(os.fspath(store_dir))
        self.durable = durable
        try:
            os.makedirs(self.store_dir, exist_ok=True)
        except OSError as err:
            raise ConfigurationError(
                f"cannot create store_dir {self.store_dir!r} for store {name!r}: {err}"
            ) from err
        if first_open(self.store_dir):
            try:
                self.sweep()
            except StoreOperationError as err:
                # A directory we may only read is still a usable store.
                not_swept(self.store_dir)
                logger.debug("%s", err)

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this store anywhere."""
        return {
            **super().config(),
            "store_dir": self.store_dir,
            "durable": self.durable,
        }

    def sweep(self) -> int:
        """Remove the files in `store_dir` that writers now gone left behind.

        Runs when a process first creates a store on this directory (a
        forked child again at its first), and whenever called (it blocks
        while it lists the directory): a long-running process calls it to
        clear writers that crashed after it opened the directory. Only
        temporary files written on this host by a process that no longer
        exists are removed: a slow writer's file, or another host's, is
        left alone. Objects whose lease file (``.lease-K``,
        `proxystore.lifetimes.LeaseLifetime`) has expired are removed with
        it.

        Returns:
            How many files were removed.

        Raises:
            StoreOperationError: If the directory cannot be listed, or a
                leftover cannot be removed.
        """
        host = host_name()
        try:
            with os.scandir(self.store_dir) as entries:
                hidden = [entry.name for entry in entries if entry.name[:1] == "."]
        except OSError as err:
            raise self._error("sweep", err) from err
        removed = 0
        for name in hidden:
            if not self._is_leftover(name, host):
                continue
            try:
                os.remove(self._path(name))
            except FileNotFoundError:
                continue  # another process swept it first
            except OSError as err:
                raise self._error("sweep", err) from err
            removed += 1
        return removed

    def _is_leftover(self, name: str, host: str) -> bool:
        """Whether hidden file `name` belongs to a writer (or holder) that is gone.

        An expired lease file is a leftover too: its object is removed here,
        the lease file by the caller.
        """
        if name.startswith(LEASE_PREFIX):
            return self._expire_if_due(name)
        return is_orphan(name, host)

    def _expire_if_due(self, name: str) -> bool:
        """Remove the object of lease file `name` if its lease has expired."""
        key = name[len(LEASE_PREFIX) :]
        try:
            with open(self._path(name), "rb") as file:
                expiry = float(file.read(64).decode("ascii"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError, UnicodeDecodeError):
            # Unreadable (a half-written lease cannot be: it is renamed in).
            logger.warning("FileStore %r: unreadable lease file %r", self.name, name)
            return False
        if expiry > time.time() or _KEY_PATTERN.fullmatch(key) is None:
            return False
        try:
            remove_files(self._path(key))
        except OSError as err:
            raise self._error("sweep", err) from err
        return True

    def _error(self, operation: str, err: OSError) -> StoreOperationError:
        return StoreOperationError(
            f"{operation} on FileStore {self.name!r} at {self.store_dir!r} "
            f"failed: {err.strerror or err}"
            + (f" ({err.filename})" if err.filename else "")
        )

    def _validate_key(self, key: Any) -> str:
        if type(key) is not str:
            raise InvalidKeyError(key, "FileStore keys are str")
        if _KEY_PATTERN.fullmatch(key) is None:
            raise InvalidKeyError(
                key,
                "FileStore keys are 1-200 characters of letters, digits, '.', '_' "
                "and '-', not starting with '.'; no separators or absolute paths",
            )
        return key

    def _path(self, key: str) -> str:
        return os.path.join(self.store_dir, key)

    async def _aset_bytes(self, payload: Payload, key: str | None = None) -> str:
        if key is None:
            key = new_object_id()
        try:
            await write_file_atomically(
                self._path(key), payload, next_version(), durable=self.durable
            )
        except OSError as err:
            raise self._error("set", err) from err
        return key

    async def _aget_bytes(self, key: str) -> Stored | None:
        found = await self._aget_versioned(key)
        return None if found is None else found[0]

    async def _aget_versioned(self, key: str) -> tuple[Stored, int] | None:
        try:
            return await ato_thread(_read_versioned, self._path(key))
        except OSError as err:
            raise self._error("get", err) from err

    async def _aget_version(self, key: str) -> int | None:
        try:
            return await ato_thread(_stat_version, self._path(key))
        except OSError as err:
            raise self._error("get_timestamp", err) from err

    async def _aexists(self, key: str) -> bool:
        return await ato_thread(os.path.exists, self._path(key))

    async def _aevict(self, key: str) -> None:
        try:
            await ato_thread(
                remove_files, self._path(key), self._path(LEASE_PREFIX + key)
            )
        except OSError as err:
            raise self._error("evict", err) from err

    async def _aset_bytes_leased(
        self, payload: Payload, key: str | None, expiry: float
    ) -> str:
        # The lease first: a writer killed in between leaves a lease
        # without an object (harmless), never an object without a lease.
        key = new_object_id() if key is None else key
        await self._aset_lease(key, expiry)
        return await self._aset_bytes(payload, key)

    async def _aset_lease(self, key: str, expiry: float) -> None:
        try:
            await write_file_atomically(
                self._path(LEASE_PREFIX + key),
                [repr(expiry).encode("ascii")],
                durable=self.durable,
            )
        except OSError as err:
            raise self._error("lease", err) from err


async def write_file_atomically(
    path: str,
    payload: Payload,
    mtime_ns: int | None = None,
    *,
    durable: bool = False,
) -> None:
    """Write a payload's parts to `path` so readers see all of it or nothing.

    The parts go to a hidden temporary file in the same directory, named
    after this process (`proxystore._tempfiles`), which is then renamed over
    `path`; on any error the temporary file is removed. With `durable`, the
    file is fsynced before the rename and the directory after. The whole
    write is one blocking call (one worker-thread hop on an event loop).

    Args:
        path: The file to write.
        payload: The parts, written back to back.
        mtime_ns: Set the file's access and modification times to this
            (a version), before it is renamed into place.
        durable: Fsync the file and its directory.
    """
    await ato_thread(_write_atomically, path, payload, mtime_ns, durable)


# Each operation's blocking work is one function, moved off an event loop in
# one worker-thread hop (measured in benchmarks/bench_stores.py against one
# thread hop per file operation); nothing blocking runs on the loop.


def _write_atomically(
    path: str, payload: Payload, mtime_ns: int | None, durable: bool
) -> None:
    directory = os.path.dirname(path)
    temp = os.path.join(directory, temp_name())
    try:
        # Unbuffered: each part goes to the kernel as it is, no copy into a
        # buffer (and no later flush that would move the mtime).
        # "x": a file already at the (random) temporary name, or a symlink
        # planted there, is an error, never followed or truncated.
        with open(temp, "xb", buffering=0) as file:
            for part in payload:
                _write_all(file, part)
            if mtime_ns is not None:
                os.utime(file.fileno(), ns=(mtime_ns, mtime_ns))
            if durable:
                os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        remove_files(temp)
        raise
    if durable:
        fsync_directory(directory)


def _write_all(file: Any, part: Buffer) -> None:
    written = file.write(part)
    if written is None or written == len(part):  # None: a wrapped file
        return
    # A short write (over 2 GiB on Linux): the rest, from where it stopped.
    view = memoryview(part).cast("B")
    while written < view.nbytes:
        written += file.write(view[written:])


# Above this size, a one-part frame's part 0 is read into a `bytes` object of
# its own (a `Split`): a stored `bytes` comes back with no copy after the
# read, as from a raw file read. Below it, one read of the whole file costs
# less than two.
_SPLIT_READ = 64 * 1024


# Objects are regular files renamed into place: a symlink or a FIFO planted
# at a key's path by another writer of the directory is refused, not
# followed or waited on.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _read_versioned(path: str) -> tuple[Stored, int] | None:
    """Read a whole file and its version (``st_mtime_ns``); None if missing.

    Raises:
        OSError: The path is not a regular file (ELOOP for a symlink,
            EISDIR for a directory, EINVAL for anything else), or cannot be
            read.
    """
    try:
        with open(os.open(path, _READ_FLAGS), "rb", buffering=0) as file:
            # The open file's own size and mtime: a rename over it cannot
            # mix another version's time or length with these bytes.
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                # OSError picks the subclass: IsADirectoryError for EISDIR.
                code = errno.EISDIR if stat.S_ISDIR(status.st_mode) else errno.EINVAL
                raise OSError(code, "not a regular file", path)
            size = status.st_size
            data: Stored | None = None
            if size > _SPLIT_READ:
                data = _read_split(file, size)
            if data is None:
                data = _read_exactly(file, size)
    except FileNotFoundError:
        return None
    return data, status.st_mtime_ns


def _read_split(file: Any, size: int) -> Split | None:
    """Read a one-part frame as its header and its part; None if it is not one.

    The header's length comes from its first bytes (`frame.head_size`);
    the part is then one read into a `bytes` of its exact size. Nothing is
    checked here: the store decodes the `Split` as it would the whole file.
    Anything else leaves the file's position at its start.
    """
    head = file.read(MAX_ONE_PART_HEAD)
    length = head_size(head)
    if length is None:
        file.seek(0)
        return None
    file.seek(length)
    return Split(head[:length], _read_exactly(file, size - length))


def _read_exactly(file: Any, size: int) -> bytes:
    """Read `size` bytes (or to the end) from the file's position."""
    # One read into a bytes object of the exact size: no copy after.
    data: bytes = file.read(size) if size else b""
    if len(data) != size:
        # A short read (over 2 GiB on Linux): the rest, then joined.
        data += file.read()
    return data


def _stat_version(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
