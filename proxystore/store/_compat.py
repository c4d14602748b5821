"""Sync twins of the primitives in `proxystore.aio._compat`.

Hand-written: the generator maps ``proxystore.aio._compat`` imports here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

open_file = open
"""Open a file (the builtin `open`)."""

Lock = threading.Lock
"""A lock for threads."""

sleep = time.sleep
"""Sleep, blocking the thread."""


def run_blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a blocking function directly."""
    return function(*args, **kwargs)


def gather(*results: T) -> list[T]:
    """Return already computed results as a list (their sync evaluation)."""
    return list(results)


class Waiter:
    """A one-shot wake-up that any thread may trigger, waited on by this thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        """Wake the waiting thread."""
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        """Wait for `wake`; return False if `timeout` seconds passed first."""
        return self._event.wait(timeout)
