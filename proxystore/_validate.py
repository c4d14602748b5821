"""Checks of constructor and configuration arguments, with messages that say where."""

from __future__ import annotations

import math

from proxystore.exceptions import ConfigurationError


def check_seconds(value: object, option: str, owner: str) -> float:
    """Return `value` as float if it is a finite number of seconds > 0.

    Args:
        value: What the caller passed.
        option: The argument's name, for the message.
        owner: What it configures (say ``"RedisStore 'cache'"``).

    Raises:
        ConfigurationError: If `value` is not a real number (bools are not),
            or is infinite, NaN, zero or negative.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"{option} of {owner} must be a finite number of seconds > 0, got {value!r}"
        )
    return float(value)


def check_flag(value: object, option: str, owner: str) -> bool:
    """Return `value` if it is a bool, else raise `ConfigurationError`."""
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{option} of {owner} must be True or False, got {value!r}"
        )
    return value
