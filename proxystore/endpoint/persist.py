"""The objects directory of an endpoint that keeps its objects across restarts.

With ``configure --persist`` an endpoint writes every object to
``$PROXYSTORE_HOME/endpoints/NAME/objects/`` (mode 0700): ``data/`` holds one
file per object, named by its id, ``tmp/`` the files being written (random
names, renamed into ``data/`` once complete). At start the endpoint takes an
exclusive `flock` on the directory (two endpoints never share one), removes
whatever ``tmp/`` holds (writes a crash interrupted) and indexes ``data/``:
regular files named by a valid object id are objects again; anything else
(a symlink, a directory, a FIFO, another name) is ignored and logged, never
followed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
from pathlib import Path

from proxystore._ratelimit import RateLimitedLog
from proxystore.endpoint.keys import validate_object_id
from proxystore.exceptions import ConfigurationError, InvalidKeyError

logger = logging.getLogger(__name__)

OBJECTS_DIR = "objects"
"""Name of the objects directory in an endpoint's directory."""


def lock_directory(directory: Path) -> int:
    """Create ``directory`` (0700) with ``data/`` and ``tmp/`` and lock it.

    Returns:
        The descriptor holding the lock; close it to release the lock.

    Raises:
        ConfigurationError: If another process holds the lock (another
            endpoint uses the directory) or the directory cannot be made.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        for sub in ("data", "tmp"):
            (directory / sub).mkdir(mode=0o700, exist_ok=True)
            if not stat.S_ISDIR(os.lstat(directory / sub).st_mode):
                raise OSError(f"{directory / sub} is not a directory (a link?)")
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        raise ConfigurationError(
            f"cannot use the objects directory {directory}: {err}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigurationError(
            f"the objects directory {directory} is in use by another endpoint "
            "process (it holds the directory's lock)"
        ) from None
    return fd


def sweep_tmp(directory: Path) -> int:
    """Remove everything in ``directory/tmp``; return how many entries went."""
    removed = 0
    for entry in os.scandir(directory / "tmp"):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    if removed:
        logger.info("removed %d unfinished writes from %s/tmp", removed, directory)
    return removed


def index_objects(directory: Path) -> dict[str, int]:
    """Return the size of each object file in ``directory/data`` by object id.

    Entries that are not regular files (checked without following links) or
    whose names are not valid object ids are ignored, with a rate-limited
    warning and a count at the end.
    """
    log = RateLimitedLog(logger)
    found: dict[str, int] = {}
    ignored = 0
    for entry in os.scandir(directory / "data"):
        try:
            info = entry.stat(follow_symlinks=False)
            validate_object_id(entry.name)
        except (OSError, InvalidKeyError) as err:
            ignored += 1
            log.warning("bad-entry", "ignored %s: %s", entry.path, err)
            continue
        if not stat.S_ISREG(info.st_mode):
            ignored += 1
            log.warning("not-regular", "ignored %s: not a regular file", entry.path)
            continue
        found[entry.name] = info.st_size
    logger.info(
        "found %d objects (%d bytes) in %s/data%s",
        len(found),
        sum(found.values()),
        directory,
        f"; ignored {ignored} other entries" if ignored else "",
    )
    return found


def read_object(path: Path) -> bytes:
    """Return the content of the regular file ``path``, never following a link.

    Raises:
        OSError: If ``path`` is a symlink (``ELOOP``), not a regular file, or
            unreadable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return file.read()
