"""Temporary files named after their writer, and the sweep that removes orphans.

A file store writes each object to ``.tmp-<writer>-<random>`` and renames it
into place. ``<writer>`` is ``<hostname>-<pid>-<process start time>``, so a
sweep can tell a temporary file whose writer was killed from one a slow
writer is still filling: it removes a file only if the file was written on
this host and no process with that pid and start time exists any more.
Files from other hosts (a shared file system) are left to their own host.

The start time is the kernel's (``/proc/<pid>/stat``, clock ticks since
boot) on Linux. Elsewhere it is ``0`` (unknown) and a writer counts as alive
while any process has its pid: a sweep there may keep an orphan whose pid was
reused, never remove a live writer's file.
"""

from __future__ import annotations

import os
import re
import secrets
import socket

TEMP_PREFIX = ".tmp-"
"""Every temporary file's name starts with this (hidden, never a valid key)."""

_UNKNOWN_START = "0"
_PROC = "/proc"

_writer: tuple[int, str] | None = None


def host_name() -> str:
    """This host's name as it appears in temporary file names."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def process_start(pid: int) -> str | None:
    """Return a token for when process `pid` started, or None if it does not exist.

    Two processes with the same pid have different tokens on Linux; elsewhere
    the token is ``"0"`` for every live process.
    """
    if not os.path.isdir(_PROC):
        return _UNKNOWN_START if _pid_exists(pid) else None
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as file:
            stat = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return _UNKNOWN_START if _pid_exists(pid) else None
    # The command name (field 2) may hold spaces and parentheses: the fields
    # we want follow its last ")". They are state (3) ... starttime (22).
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return _UNKNOWN_START
    if fields[0] in (b"Z", b"X"):  # a zombie has finished writing for good
        return None
    return fields[19].decode("ascii")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def writer_id() -> str:
    """``<hostname>-<pid>-<start time>`` of this process (recomputed after fork)."""
    global _writer
    pid = os.getpid()
    cached = _writer
    if cached is None or cached[0] != pid:
        start = process_start(pid) or _UNKNOWN_START
        cached = _writer = (pid, f"{host_name()}-{pid}-{start}")
    return cached[1]


def temp_name() -> str:
    """A fresh temporary file name for this process (not a path)."""
    return f"{TEMP_PREFIX}{writer_id()}-{secrets.token_hex(8)}"


def is_orphan(name: str, host: str | None = None) -> bool:
    """Return whether temporary file `name` was left by a writer that is gone.

    False for anything that is not a temporary file in our format, for files
    from other hosts, and for files whose writer still runs.
    """
    if not name.startswith(TEMP_PREFIX):
        return False
    parts = name[len(TEMP_PREFIX) :].rsplit("-", 3)
    if len(parts) != 4:
        return False
    file_host, pid, start, _random = parts
    if file_host != (host if host is not None else host_name()):
        return False
    if not pid.isdigit() or not start.isdigit():
        return False
    current = process_start(int(pid))
    if current is None:
        return True
    if _UNKNOWN_START in (current, start):
        return False  # cannot tell a reused pid from the writer: keep it
    return current != start


_swept: set[str] = set()


def first_open(directory: str) -> bool:
    """Whether this process opens `directory` for the first time; claims it.

    A file store sweeps its directory once per process (the first store
    made on it, of either face), not at every construction: a crashed
    writer's files are removed by the next process to open the directory,
    or by `FileStore.sweep`. A forked child is a new process and sweeps
    again. Call `not_swept` if the sweep failed, so the next open retries.
    """
    if directory in _swept:
        return False
    _swept.add(directory)  # two threads racing here both sweep: harmless
    return True


def not_swept(directory: str) -> None:
    """Undo `first_open`: the sweep it claimed did not complete."""
    _swept.discard(directory)


os.register_at_fork(after_in_child=_swept.clear)


def fsync_directory(directory: str) -> None:
    """Make a rename in `directory` durable (no-op where directories cannot open)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        return  # Windows: directories cannot be opened, renames are durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
