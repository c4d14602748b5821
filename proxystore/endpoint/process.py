"""Pid files and process liveness for endpoints started by the CLI.

A pid file records which process runs the endpoint, in JSON: its pid, its
start time (field 22 of ``/proc/<pid>/stat``, in clock ticks since boot) and
its command line. A process is the endpoint only if all three still match,
so a pid the kernel gave to another process after the endpoint died (a stale
file) is recognised: it is reported, the file is removed, and that process is
never signalled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

from proxystore.endpoint.config import PID_FILE, endpoint_dir


def pid_file(name: str) -> Path:
    """Return the pid file path of the endpoint called ``name``."""
    return endpoint_dir(name) / PID_FILE


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields follow the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> int | None:
    """Return the start time of process ``pid`` (clock ticks since boot)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def command_line(pid: int) -> list[str] | None:
    """Return the command line of process ``pid``, if readable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """Return whether process ``pid`` exists and has not exited.

    A zombie (exited, not yet reaped by its parent) counts as exited, since
    the parent that would reap it may be the very test waiting on it.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields is None:
        return True
    return fields[0] not in {"Z", "X"}


@dataclasses.dataclass(frozen=True)
class PidRecord:
    """What a pid file says about the process running an endpoint."""

    pid: int
    start_time: int | None
    command: list[str] | None

    @classmethod
    def of_this_process(cls) -> PidRecord:
        """Return the record of the calling process."""
        pid = os.getpid()
        return cls(pid, start_time(pid), command_line(pid))

    def to_text(self) -> str:
        """Return the pid file's content."""
        return json.dumps(dataclasses.asdict(self)) + "\n"

    @classmethod
    def from_text(cls, text: str) -> PidRecord | None:
        """Parse a pid file (JSON, or a bare pid from older versions)."""
        text = text.strip()
        if text.isdigit():
            return cls(int(text), None, None)
        try:
            data = json.loads(text)
            pid = data["pid"]
            started = data.get("start_time")
            command = data.get("command")
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if not isinstance(pid, int) or pid <= 0:
            return None
        if not isinstance(started, int | None) or not (
            command is None
            or (isinstance(command, list) and all(isinstance(c, str) for c in command))
        ):
            return None
        return cls(pid, started, command)

    def mismatch(self) -> str | None:
        """Return why the live process ``pid`` is not the one recorded, or None."""
        if not is_alive(self.pid):
            return f"process {self.pid} is not running"
        if self.start_time is None or self.command is None:
            return (
                f"the pid file has no start time and command line to check "
                f"process {self.pid} against"
            )
        if start_time(self.pid) != self.start_time:
            return f"process {self.pid} started at another time (pid reused)"
        if command_line(self.pid) != self.command:
            return f"process {self.pid} runs another command (pid reused)"
        return None


def _report_stale(name: str, reason: str) -> None:
    print(
        f"endpoint {name}: removed a stale pid file ({reason})",
        file=sys.stderr,
    )


@dataclasses.dataclass(frozen=True)
class PidCheck:
    """What the pid file of an endpoint says, checked against the live process.

    Attributes:
        pid: The running endpoint's pid, or ``None``.
        stale: Why the pid file was stale (it is then removed), or ``None``.
        other: A live process the stale file named that is not the endpoint
            (never to be signalled), or ``None``.
    """

    pid: int | None
    stale: str | None = None
    other: int | None = None


def check_pid_file(name: str) -> PidCheck:
    """Check the pid file of the endpoint ``name``, removing it if stale.

    A pid file naming no process, or a process that is not the one recorded
    (a reused pid, or an old file without start time and command line), is
    stale.
    """
    path = pid_file(name)
    try:
        text = path.read_text()
    except OSError:
        return PidCheck(None)
    record = PidRecord.from_text(text)
    reason = "unreadable content" if record is None else record.mismatch()
    if reason is None:
        assert record is not None
        return PidCheck(record.pid)
    path.unlink(missing_ok=True)
    other = record.pid if record is not None and is_alive(record.pid) else None
    return PidCheck(None, reason, other)


def read_pid(name: str, *, report: bool = True) -> int | None:
    """Return the pid of the running endpoint ``name``, or ``None``.

    A stale pid file (`check_pid_file`) is removed and, with ``report``,
    said so on stderr.
    """
    check = check_pid_file(name)
    if check.stale is not None and report:
        _report_stale(name, check.stale)
    return check.pid


def claim_pid_file(name: str) -> bool:
    """Write this process's record to the endpoint's pid file.

    Returns:
        ``False`` if another live process already holds it.
    """
    if read_pid(name) is not None:
        return False
    path = pid_file(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        file.write(PidRecord.of_this_process().to_text())
    return True


def release_pid_file(name: str) -> None:
    """Remove the pid file if it names this process."""
    path = pid_file(name)
    try:
        record = PidRecord.from_text(path.read_text())
        if record is not None and record.pid == os.getpid():
            path.unlink()
    except OSError:
        pass


def terminate(pid: int, timeout: float) -> bool:
    """Send SIGTERM to ``pid`` and wait up to ``timeout`` seconds for it to exit.

    Callers check the pid is the endpoint (`read_pid`) right before.

    Returns:
        Whether the process exited in time.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    # There is no portable way to wait on a process that is not our child,
    # so poll its liveness with a short, growing interval.
    interval = 0.01
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(interval)
        interval = min(interval * 2, 0.2)
    return not is_alive(pid)
