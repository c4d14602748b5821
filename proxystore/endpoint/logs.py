"""Log setup shared by the endpoint and signaling server commands."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from proxystore.exceptions import ConfigurationError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 10 * 1024 * 1024
"""A log file is rotated when it reaches this size."""
LOG_BACKUPS = 5
"""Rotated log files kept (``.1`` ... ``.5``); older ones are deleted."""
_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def parse_level(level: str) -> int:
    """Return the logging level named ``level`` (any case).

    Raises:
        ConfigurationError: If it is not a level name.
    """
    name = level.strip().upper()
    if name not in _LEVELS:
        raise ConfigurationError(
            f"unknown log level {level!r}: use one of {', '.join(_LEVELS)}"
        )
    return int(getattr(logging, name))


def setup_logging(level: str, log_file: Path | None, stderr: bool = True) -> None:
    """Log with timestamps to ``log_file`` (rotated by size) and/or stderr.

    Raises:
        ConfigurationError: If ``level`` is not a level name or the file
            cannot be opened.
    """
    value = parse_level(level)
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        try:
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    log_file, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS
                )
            )
        except OSError as err:
            raise ConfigurationError(
                f"cannot open log file {log_file}: {err}"
            ) from None
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(value)
