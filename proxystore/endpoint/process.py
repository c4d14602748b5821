"""Pid files and process liveness for endpoints started by the CLI."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from proxystore.endpoint.config import PID_FILE, endpoint_dir


def pid_file(name: str) -> Path:
    """Return the pid file path of the endpoint called ``name``."""
    return endpoint_dir(name) / PID_FILE


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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the parenthesised command name, which may hold spaces.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in {"Z", "X"}


def read_pid(name: str) -> int | None:
    """Return the pid of the running endpoint ``name``, or ``None``.

    A pid file naming a process that no longer runs is removed.
    """
    path = pid_file(name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if is_alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def claim_pid_file(name: str) -> bool:
    """Write this process's pid to the endpoint's pid file.

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
        file.write(f"{os.getpid()}\n")
    return True


def release_pid_file(name: str) -> None:
    """Remove the pid file if it names this process."""
    path = pid_file(name)
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def terminate(pid: int, timeout: float) -> bool:
    """Send SIGTERM to ``pid`` and wait up to ``timeout`` seconds for it to exit.

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
