"""`GlobusKey`: what names an object in a `GlobusStore`.

It lives outside the generated driver modules so the async and sync faces
share one class: a key made by either face resolves in the other.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from proxystore.exceptions import InvalidKeyError

_FILENAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_TASK_IDS = re.compile(r"([0-9A-Za-z-]{1,64}(,[0-9A-Za-z-]{1,64})*)?")


class GlobusKey(NamedTuple):
    """Key of an object in a `GlobusStore`.

    Attributes:
        filename: The object's file name inside every endpoint's directory.
        task_id: The Transfer task copying the file to the other endpoint;
            with more than two endpoints, one task per destination joined by
            commas; empty when the store has a single endpoint.
    """

    filename: str
    task_id: str

    @property
    def task_ids(self) -> tuple[str, ...]:
        """The Transfer task ids, one per destination endpoint."""
        return tuple(self.task_id.split(",")) if self.task_id else ()


def validate_key(key: Any) -> GlobusKey:
    """Return ``key`` as a `GlobusKey`, or raise `InvalidKeyError`.

    Plain ``(filename, task_id)`` tuples are accepted too.
    """
    if not isinstance(key, tuple) or len(key) != 2:
        raise InvalidKeyError(key, "GlobusStore keys are GlobusKey(filename, task_id)")
    filename, task_id = key
    if type(filename) is not str or _FILENAME.fullmatch(filename) is None:
        raise InvalidKeyError(
            key,
            "the filename must be 1-200 letters, digits, '.', '_' or '-', not "
            "starting with '.' (no separators or absolute paths)",
        )
    if type(task_id) is not str or _TASK_IDS.fullmatch(task_id) is None:
        raise InvalidKeyError(
            key, "the task_id must be comma-separated Globus task ids (or empty)"
        )
    return key if type(key) is GlobusKey else GlobusKey(filename, task_id)
