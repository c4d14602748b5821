"""Process-wide state shared by the sync and async faces of the stores."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_local_objects: dict[str, dict[Any, Any]] = {}
_local_versions: dict[str, dict[Any, int]] = {}
_version_lock = threading.Lock()
_last_version = 0

USER_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
"""Keys a user may choose (ARCHITECTURE.md "Keys"): 1-200 characters of
``[A-Za-z0-9._-]``, not starting with ``.``; never ``{``, ``}`` or ``:``."""

USER_KEY_RULE = (
    "keys are 1-200 characters of letters, digits, '.', '_' and '-', "
    "not starting with '.'"
)


_ID_BYTES = 16
_POOL_IDS = 256
# Where each id's 32 hex characters sit in a pool's hex string.
_ID_SLICES = [
    slice(i, i + 2 * _ID_BYTES)
    for i in range(0, 2 * _ID_BYTES * _POOL_IDS, 2 * _ID_BYTES)
]
_ids: Iterator[str] = iter(())
_id_lock = threading.Lock()
# Without a GIL, `next` on a C iterator is not atomic: take a lock instead.
_FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


def new_object_id() -> str:
    """Return an unguessable id: 32 hex characters from the OS CSPRNG.

    Knowing any number of ids tells nothing about the others: each is 16
    bytes of ``os.urandom`` output that no other id shares. They are drawn
    4 KiB at a time (one ``getrandom`` call per 256 ids, measured in
    ``benchmarks/bench_stores.py``: about 0.15 us an id instead of 0.4 us)
    and each is handed out once: `next` on a C iterator runs under the GIL
    with no Python code in between, so two threads never get the same one
    (a lock does this on a free-threaded build). A forked child forgets the
    pool (``os.register_at_fork``), so parent and child never hand out the
    same id; a child forked by C code that skips Python's fork hooks would
    repeat its parent's unused ids (CPython requires such code to call
    ``PyOS_AfterFork_Child``, which runs the hooks).
    """
    if _FREE_THREADED:
        with _id_lock:
            key = next(_ids, None)
            return _refill() if key is None else key
    key = next(_ids, None)
    return _refill() if key is None else key


def _refill() -> str:
    """Draw a new pool and return its first id (nobody else can take it)."""
    global _ids
    pool = os.urandom(_ID_BYTES * _POOL_IDS).hex()
    # Sliced as handed out: each `next` is one C call (map, then str slice).
    ids = map(pool.__getitem__, _ID_SLICES)
    key = next(ids)
    _ids = ids
    return key


def _forget_ids() -> None:
    global _ids
    _ids = iter(())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_ids)


def local_objects(
    store_name: str, mapping: dict[Any, Any] | None = None
) -> dict[Any, Any]:
    """Return the in-process mapping that backs every `LocalStore` face of a name.

    Args:
        store_name: The store's name.
        mapping: Use this dict from now on (0.4's ``store_dict``).
    """
    if mapping is not None:
        _local_objects[store_name] = mapping
        return mapping
    objects = _local_objects.get(store_name)
    if objects is None:
        objects = _local_objects.setdefault(store_name, {})
    return objects


def local_versions(store_name: str) -> dict[Any, int]:
    """Return the versions of the objects `local_objects` holds for a name."""
    versions = _local_versions.get(store_name)
    if versions is None:
        versions = _local_versions.setdefault(store_name, {})
    return versions


def next_version() -> int:
    """Return the version of a new write: `time.time_ns()`, rising in this process."""
    global _last_version
    now = time.time_ns()
    # acquire/release rather than `with`: this runs on every local write,
    # and nothing between them can raise.
    _version_lock.acquire()
    version = _last_version = now if now > _last_version else _last_version + 1
    _version_lock.release()
    return version


def raw_bytes(data: bytes) -> bytes:
    """The deserializer of proxies made with ``serialize=False``: the stored bytes.

    A marker as much as a function: stores return what they hold unchanged
    (never cached, never deserialized) when a proxy carries it.
    """
    return bytes(data)


def _reset_after_fork() -> None:
    global _version_lock, _waiters_lock
    # Another thread of the parent may have held it at fork time.
    _version_lock = threading.Lock()
    # The parent's waiters are threads and loops the child does not have.
    _waiters_lock = threading.Lock()
    _waiters.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


_waiters: dict[tuple[str, Any], list[Any]] = {}
_waiters_lock = threading.Lock()


def add_waiter(store_name: str, key: Any, wake: Any) -> None:
    """Call `wake()` when `wake_waiters(store_name, key)` is next called."""
    with _waiters_lock:
        _waiters.setdefault((store_name, key), []).append(wake)


def remove_waiter(store_name: str, key: Any, wake: Any) -> None:
    """Forget a waiter `add_waiter` registered (no error if already woken)."""
    with _waiters_lock:
        waiting = _waiters.get((store_name, key))
        if waiting is not None and wake in waiting:
            waiting.remove(wake)
            if not waiting:
                del _waiters[(store_name, key)]


def wake_waiters(store_name: str, key: Any) -> None:
    """Wake every waiter of a `LocalStore` future, on any face or thread."""
    with _waiters_lock:
        waiting = _waiters.pop((store_name, key), [])
    for wake in waiting:
        wake()
