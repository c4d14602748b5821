"""Process-wide state shared by the sync and async faces of the stores."""

from __future__ import annotations

import itertools
import os
import secrets
from typing import Any

_prefix = secrets.token_hex(8)
_counter = itertools.count()
_local_objects: dict[str, dict[Any, Any]] = {}


def new_object_id() -> str:
    """Return an id unique across processes, hosts and calls.

    A random per-process prefix (drawn again in a forked child) plus a
    counter: cheaper than a UUID per call and never repeats in a process.
    """
    return f"{_prefix}{next(_counter):08x}"


def local_objects(store_name: str) -> dict[Any, Any]:
    """Return the in-process mapping that backs every `LocalStore` face of a name."""
    objects = _local_objects.get(store_name)
    if objects is None:
        objects = _local_objects.setdefault(store_name, {})
    return objects


def _reset_after_fork() -> None:
    global _prefix, _counter
    _prefix = secrets.token_hex(8)
    _counter = itertools.count()


os.register_at_fork(after_in_child=_reset_after_fork)
