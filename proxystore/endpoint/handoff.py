"""Large GET bodies handed to a client on the same host as a shared-memory file.

Sending a large body over loopback HTTP costs the endpoint and its client a
copy each and, in Python, a lot of per-chunk work. A client on the same host
as its endpoint (the usual case: `EndpointStore` talks to the endpoint of its
own site) can instead take the body as a file:

- At start the endpoint makes a private directory (mode 0700) in
  ``/dev/shm`` (else the system temp directory), named
  ``proxystore-handoff-<uuid>-<random>``, holding an ``owner`` record (any
  endpoint starting later sweeps it once that process is gone) and a
  ``nonce`` file (32 random bytes, hex).
  ``GET /endpoint`` reports ``{"handoff": {"dir": ..., "nonce": ...}}``.
- The client reads ``dir/nonce``; only if it holds the nonce the endpoint
  reported (so the client sees the endpoint's file system, as the same user)
  does the client send ``X-Proxystore-Handoff: 1`` on its GETs.
- For such a GET of at least `HANDOFF_THRESHOLD` bytes the endpoint writes
  the body into a new file there (a body fetched from a peer over the fast
  path is received straight into it) and answers 200 with an empty body and
  ``X-Proxystore-Handoff: <file name>`` and ``X-Proxystore-Length: <bytes>``.
- The client opens the file (no symlinks; a regular file of its own uid and
  the announced size), maps it read-only, and unlinks it. A file nobody
  took is unlinked by the endpoint after its timeout; the directory goes
  when the endpoint stops.
- The files are memory (``/dev/shm`` is RAM): the bytes of files made and
  not yet taken, expired or discarded are counted against a cap (the
  endpoint's ``max_memory``). A body that would go over it is sent in the
  HTTP response instead, so a client that asks for many large objects and
  never takes the files cannot fill ``/dev/shm``. Files taken meanwhile are
  noticed (they are gone) when the cap is reached.

The request and answer still go through the authenticated HTTP API; the file
system adds no new reader: whoever can open the directory can read the
endpoint's ``api-token`` file too.

Dependency-free (standard library only): the `EndpointStore` driver imports it.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxystore.exceptions import StoreOperationError

logger = logging.getLogger(__name__)

HANDOFF_HEADER = "X-Proxystore-Handoff"
"""Request: the client can take bodies as files; response: the file's name."""
LENGTH_HEADER = "X-Proxystore-Length"
"""Response: the size of the handed-off body in bytes."""
HANDOFF_THRESHOLD = 1024 * 1024
"""Smallest body handed off as a file; smaller ones travel in the response."""
NONCE_FILE = "nonce"
OWNER_FILE = "owner"
_PREFIX = "proxystore-handoff-"
_NAME = re.compile(r"[0-9a-f]{32}")
_UNCLAIMED_GRACE = 60.0


def _base_dir() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def sweep_handoff_dirs(base: Path | None = None) -> list[Path]:
    """Remove this user's handoff directories whose endpoint process is gone.

    Directories of live endpoints (their ``owner`` record matches a running
    process) and other users' directories are kept.

    Returns:
        The directories removed.
    """
    from proxystore.endpoint.storage import remove_orphans

    base = _base_dir() if base is None else base
    ours = []
    for directory in base.glob(f"{_PREFIX}*"):
        with contextlib.suppress(OSError):
            info = directory.lstat()
            if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
                continue
            if (
                not (directory / OWNER_FILE).exists()
                and time.time() - info.st_mtime < _UNCLAIMED_GRACE
            ):
                continue  # being made by an endpoint starting right now
            ours.append(directory)
    return remove_orphans(ours, "handoff")


def _populate_flag() -> int:
    return getattr(mmap, "MAP_POPULATE", 0)


class HandoffFile:
    """A body being written into a new file of a `HandoffDir`.

    Either `write` the body, or receive it into `view`.

    Attributes:
        name: The file's name in the directory.
    """

    def __init__(
        self,
        directory: Path,
        size: int,
        on_discard: Callable[[HandoffFile], None] | None = None,
    ) -> None:
        self.name = secrets.token_hex(16)
        self.path = directory / self.name
        self.size = size
        self._on_discard = on_discard
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if size:
                # Reserve the pages now: a full tmpfs must fail here, not
                # with SIGBUS when the mapping is written.
                os.posix_fallocate(self._fd, 0, size)
        except BaseException:
            self.discard()
            raise

    @property
    def view(self) -> memoryview:
        """Writable view of the whole file (mapped on first use).

        Not populated: a body received into it fills the pages as its bytes
        arrive, so clearing them (tmpfs clears a reserved page on its first
        fault) overlaps the network instead of delaying the first byte
        (0.35-0.47 s for 10^9 bytes with ``MAP_POPULATE`` on the 2-core
        development machine, for the same total).
        """
        if self._view is None:
            if self.size:
                self._map = mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED)
                self._view = memoryview(self._map)
            else:
                self._view = memoryview(bytearray())
        return self._view

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write the whole body (``size`` bytes) into the file."""
        if memoryview(data).nbytes != self.size:
            raise ValueError(f"{memoryview(data).nbytes} bytes for a {self.size}")
        self.write_at(data, 0)

    def write_at(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write ``data`` at ``offset`` (within the file's size)."""
        view = memoryview(data).cast("B")
        if offset < 0 or offset + view.nbytes > self.size:
            raise ValueError(f"{view.nbytes} bytes at {offset} overflow {self.size}")
        done = 0
        while done < view.nbytes:
            done += os.pwrite(self._fd, view[done:], offset + done)

    def finish(self) -> None:
        """Release this process's mapping and descriptor (the file stays)."""
        if self._view is not None:
            with contextlib.suppress(BufferError):
                self._view.release()
        if self._map is not None:
            with contextlib.suppress(BufferError):
                # Still exported (a view outlives us): the GC unmaps it later.
                self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Release the mapping and remove the file."""
        self.finish()
        self.path.unlink(missing_ok=True)
        on_discard, self._on_discard = self._on_discard, None
        if on_discard is not None:
            on_discard(self)


class HandoffDir:
    """The endpoint's private directory of handed-off bodies.

    Args:
        endpoint_uuid: The endpoint's uuid (names the directory).
        ttl: Seconds a file waits for its client before it is removed.
        base: Where the directory is made (default ``/dev/shm`` if usable,
            else the system temp directory).
        max_bytes: Most bytes of files made and not yet taken, expired or
            discarded (None: no cap); `new` refuses a file beyond it.
    """

    def __init__(
        self,
        endpoint_uuid: str,
        ttl: float,
        base: Path | None = None,
        max_bytes: int | None = None,
    ) -> None:
        from proxystore.endpoint.process import PidRecord

        base = _base_dir() if base is None else base
        sweep_handoff_dirs(base)
        self.path = Path(
            tempfile.mkdtemp(prefix=f"{_PREFIX}{endpoint_uuid}-", dir=base)
        )
        self.nonce = secrets.token_hex(32)
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.outstanding = 0
        """Bytes of files made and not yet taken, expired or discarded."""
        self._published: dict[str, int] = {}
        (self.path / OWNER_FILE).write_text(PidRecord.of_this_process().to_text())
        fd = os.open(
            self.path / NONCE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(fd, "w") as file:
            file.write(self.nonce)

    def describe(self) -> dict[str, Any]:
        """Return what ``GET /endpoint`` reports under ``handoff``."""
        return {"dir": str(self.path), "nonce": self.nonce}

    def new(self, size: int) -> HandoffFile | None:
        """Return a new file of ``size`` bytes to write a body into.

        None if it would take the files outstanding over `max_bytes` (the
        body then goes in the HTTP response).

        Raises:
            OSError: If the file cannot be made (e.g. a full tmpfs).
        """
        if self.max_bytes is not None and self.outstanding + size > self.max_bytes:
            self._reclaim_taken()
            if self.outstanding + size > self.max_bytes:
                return None
        file = HandoffFile(self.path, size, self._discarded)
        self.outstanding += size
        return file

    def publish(self, file: HandoffFile) -> str:
        """Release ``file`` for its client; it is removed after `ttl` if not taken."""
        import asyncio

        file.finish()
        # Its bytes stay counted until it is taken or expires.
        file._on_discard = None
        self._published[file.name] = file.size
        asyncio.get_running_loop().call_later(self.ttl, self._expire, file.name)
        return file.name

    def _discarded(self, file: HandoffFile) -> None:
        self.outstanding -= file.size

    def _expire(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)
        self.outstanding -= self._published.pop(name, 0)

    def _reclaim_taken(self) -> None:
        """Stop counting published files their clients took (unlinked)."""
        for name in list(self._published):
            if not (self.path / name).exists():
                self.outstanding -= self._published.pop(name)

    def close(self) -> None:
        """Remove the directory and every file not taken."""
        shutil.rmtree(self.path, ignore_errors=True)


def verify_handoff(description: dict[str, Any]) -> Path | None:
    """Return the endpoint's handoff directory if this process can use it.

    That is when ``GET /endpoint`` reported one and its ``nonce`` file, owned
    by this user, holds the nonce reported: the endpoint runs on this host
    and shares this file system. Otherwise ``None`` (bodies then come in
    HTTP responses).
    """
    handoff = description.get("handoff")
    if not isinstance(handoff, dict):
        return None
    directory, nonce = handoff.get("dir"), handoff.get("nonce")
    if not isinstance(directory, str) or not isinstance(nonce, str) or not nonce:
        return None
    path = Path(directory)
    try:
        fd = os.open(path / NONCE_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd) as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.getuid() or not stat.S_ISREG(info.st_mode):
            return None
        found = file.read(2 * len(nonce))
    if not secrets.compare_digest(found.encode(), nonce.encode()):
        return None
    return path


def take_handoff(
    directory: Path,
    name: str,
    length: int,
    head_size: Callable[[bytes], int | None] | None = None,
) -> memoryview | tuple[bytes, bytes]:
    """Take a handed-off body and remove its file.

    The body is mapped (read-only), unless ``head_size`` is given and the
    body is large: then ``head_size`` is shown its first bytes and, if it
    returns the length of a header there, the body comes back as that
    header and the rest, each read into a `bytes` of its own (one copy from
    the page cache, none after: `proxystore.frame.Split`).

    Raises:
        StoreOperationError: If the name is malformed or the file is missing,
            not a regular file of this user, or not ``length`` bytes long.
    """
    if not _NAME.fullmatch(name) or length < 0:
        raise StoreOperationError(f"endpoint handed off a malformed file {name!r}")
    path = directory / name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        raise StoreOperationError(
            f"cannot open the body the endpoint handed off in {path}: {err}"
        ) from err
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.getuid()
            or info.st_size != length
        ):
            raise StoreOperationError(
                f"the body handed off in {path} is not a {length}-byte regular "
                "file of this user"
            )
        os.unlink(path)
        if not length:
            return memoryview(b"")
        if head_size is not None and length > _SPLIT_READ:
            head = os.pread(fd, _HEAD_READ, 0)
            size = head_size(head)
            if size is not None:
                return head[:size], _pread_exactly(fd, length - size, size, path)
        # Read-only, like the bytes of an HTTP body; nobody writes the file
        # any more, and filling the page tables at once is cheaper than a
        # fault per page.
        return memoryview(
            mmap.mmap(
                fd,
                length,
                flags=mmap.MAP_SHARED | _populate_flag(),
                prot=mmap.PROT_READ,
            )
        )
    finally:
        os.close(fd)


# Above this size a framed body is read as its header and the rest (see
# `take_handoff`); below it, mapping the file is as cheap.
_SPLIT_READ = 64 * 1024
# Enough for any one-part frame's header (`proxystore.frame.MAX_ONE_PART_HEAD`,
# not imported: this module stays standard-library only).
_HEAD_READ = 512


def _pread_exactly(fd: int, size: int, offset: int, path: Path) -> bytes:
    """Read `size` bytes at `offset` into one `bytes` (joined past 2 GiB)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise StoreOperationError(
                f"the body handed off in {path} ended after {len(data)} of {size} bytes"
            )
        data += more
    return data
