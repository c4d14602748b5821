# Generated from proxystore/aio/file.py by scripts/generate_sync.py: DO NOT EDIT.
"""`FileStore`: objects as files in a directory, shared by processes and hosts.

Every write goes to a temporary file in the same directory that is renamed
into place, so a reader sees a whole object or none. Keys are plain file names:
anything that could leave the directory is refused. An object's version is
its file's ``st_mtime_ns``, which every write sets explicitly (file system
clocks can be too coarse to tell two quick writes apart).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from proxystore._shared import new_object_id, next_version
from proxystore.store._compat import open_file
from proxystore.store.base import Store
from proxystore.exceptions import ConfigurationError, InvalidKeyError
from proxystore.serialize import Buffer, Payload

_IS_SYNC = True

_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_TEMP_PREFIX = ".tmp-"


class FileStore(Store[str]):
    """A store of files in a directory.

    Args:
        name: The store's name.
        store_dir: The directory; created if missing. Every process that
            resolves this store's proxies must see it at the same path.
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        stats: Also record them per key (see `Store.stats`).
    """

    _USER_KEY_REFUSAL = None

    def __init__(
        self,
        name: str,
        store_dir: str | os.PathLike[str],
        *,
        cache_size: int = 16,
        metrics: bool = False,
        stats: bool = False,
    ) -> None:
        super().__init__(name, cache_size=cache_size, metrics=metrics, stats=stats)
        self.store_dir = os.path.abspath(os.fspath(store_dir))
        try:
            os.makedirs(self.store_dir, exist_ok=True)
        except OSError as err:
            raise ConfigurationError(
                f"cannot create store_dir {self.store_dir!r} for store {name!r}: {err}"
            ) from err

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this store anywhere."""
        return {**super().config(), "store_dir": self.store_dir}

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

    def _set_bytes(self, payload: Payload, key: str | None = None) -> str:
        if key is None:
            key = new_object_id()
        write_file_atomically(self._path(key), payload, next_version())
        return key

    def _get_bytes(self, key: str) -> Buffer | None:
        found = self._get_versioned(key)
        return None if found is None else found[0]

    def _get_versioned(self, key: str) -> tuple[Buffer, int] | None:
        try:
            with open_file(self._path(key), "rb") as file:
                # The open file's own mtime: a rename over it cannot mix
                # another version's time with these bytes.
                version = os.fstat(file.fileno()).st_mtime_ns
                data: bytes = file.read()
        except FileNotFoundError:
            return None
        return data, version

    def _get_version(self, key: str) -> int | None:
        try:
            return os.stat(self._path(key)).st_mtime_ns
        except FileNotFoundError:
            return None

    def _exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def _evict(self, key: str) -> None:
        remove_file(self._path(key))


def write_file_atomically(
    path: str, payload: Payload, mtime_ns: int | None = None
) -> None:
    """Write a payload's parts to `path` so readers see all of it or nothing.

    The parts go to a hidden temporary file in the same directory, which is
    then renamed over `path`; on any error the temporary file is removed.

    Args:
        path: The file to write.
        payload: The parts, written back to back.
        mtime_ns: Set the file's access and modification times to this
            (a version), before it is renamed into place.
    """
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f"{_TEMP_PREFIX}{name}")
    try:
        with open_file(temp, "wb") as file:
            for part in payload:
                file.write(part)
        if mtime_ns is not None:
            os.utime(temp, ns=(mtime_ns, mtime_ns))
        os.replace(temp, path)
    except BaseException:
        remove_file(temp)
        raise


def remove_file(path: str) -> None:
    """Remove a file; a file that is already gone is not an error."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
