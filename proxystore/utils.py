"""ProxyStore 0.4's `proxystore.utils` helpers, kept so 0.4 code runs (deprecated).

Each call warns with a `DeprecationWarning` naming what to use instead; see
``docs/migrating.md``.
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from collections.abc import Generator
from typing import Any

from proxystore._shared import new_object_id

# Decimal units, as 0.4 used them.
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _deprecated(name: str, replacement: str) -> None:
    warnings.warn(
        f"proxystore.utils.{name} was a ProxyStore 0.4 helper; {replacement}",
        DeprecationWarning,
        stacklevel=3,
    )


def create_key(obj: Any = None) -> str:
    """Return a new unguessable key (`obj` is ignored, as in 0.4).

    Deprecated: stores make keys in `set`.
    """
    _deprecated("create_key", "stores make keys in set()")
    return new_object_id()


def fullname(obj: Any) -> str:
    """Return the dotted name of `obj`'s class (of `obj` if it is a class).

    Builtins have no module prefix (``fullname("s") == "str"``).
    """
    _deprecated("fullname", "use f'{cls.__module__}.{cls.__qualname__}'")
    cls = obj if isinstance(obj, type) else type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def home_dir() -> str:
    """Return the absolute proxystore data directory (``$PROXYSTORE_HOME``...)."""
    _deprecated("home_dir", "use proxystore.endpoint.config.home_dir()")
    explicit = os.environ.get("PROXYSTORE_HOME")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return os.path.abspath(os.path.join(os.path.expanduser(xdg), "proxystore"))


def hostname() -> str:
    """Return this host's name."""
    _deprecated("hostname", "use socket.gethostname()")
    return socket.gethostname()


def chunk_bytes(data: bytes, chunk_size: int) -> Generator[bytes, None, None]:
    """Yield `data` in slices of at most `chunk_size` bytes.

    Raises:
        ValueError: If `chunk_size` is not a positive integer.
    """
    _deprecated("chunk_bytes", "slice the bytes yourself")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise ValueError(f"chunk_size must be an int > 0, got {chunk_size!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be an int > 0, got {chunk_size!r}")
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


def bytes_to_readable(size: int, precision: int = 3) -> str:
    """Return `size` bytes as text in the largest decimal unit up to TB.

    Raises:
        ValueError: If `size` is negative.
    """
    _deprecated("bytes_to_readable", "format sizes yourself")
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    unit = "B"
    for name, scale in _UNITS.items():
        if size >= scale:
            unit = name
    value = round(size / _UNITS[unit], precision)
    text = f"{value:.{max(precision, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {unit}"


def readable_to_bytes(size: str) -> int:
    """Parse text such as ``"1.5 MB"`` or ``"20KB"`` (decimal units) to bytes.

    Raises:
        ValueError: If the text is not a number and an optional unit
            (B, KB, MB, GB, TB).
    """
    _deprecated("readable_to_bytes", "parse sizes yourself")
    text = size.strip()
    split = len(text)
    while split > 0 and text[split - 1].isalpha():
        split -= 1
    number, unit = text[:split].strip(), text[split:].upper() or "B"
    if not number or " " in number:
        raise ValueError(
            f"expected a value and a unit (such as '1.5 MB'), got {size!r}"
        )
    if unit not in _UNITS:
        raise ValueError(
            f"Unknown unit {unit!r} in {size!r}: use one of {list(_UNITS)}"
        )
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"cannot convert {number!r} of {size!r} to a float") from None
    if not math.isfinite(value):
        raise ValueError(f"size {size!r} is not a finite number")
    return round(value * _UNITS[unit])
