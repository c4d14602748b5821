"""Log lines about refusals, bounded however many refusals there are.

Anything that refuses input from outside (bad tokens, limits, unknown
fast-path tokens, failed registrations) logs through `RateLimitedLog`, so an
attacker cannot fill the disk or drown real problems in the log.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

DEFAULT_LOG_INTERVAL = 10.0


class RateLimitedLog:
    """Logs at most one line per key every ``interval`` seconds.

    Lines dropped in between are counted and reported with the next line of
    the same key, so the log stays bounded yet still shows how much happened.

    Args:
        logger: Where lines go.
        interval: Seconds between two lines of one key.
        clock: Monotonic clock (for tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()

    def warning(self, key: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` at WARNING unless ``key`` logged recently.

        Returns:
            Whether a line was written.
        """
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] += 1
            return False
        self._next[key] = now + self._interval
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            message += " (%d more like this in the last %gs not logged)"
            args = (*args, dropped, self._interval)
        self._logger.warning(message, *args)
        return True
