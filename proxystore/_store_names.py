"""The store classes both faces' packages export, imported on first use.

`proxystore.store.RedisStore` and `proxystore.aio.RedisStore` name the two
faces of one store. Each package resolves these names in its module
`__getattr__`, so importing a package imports no store's optional extra, and
using a store whose extra is missing raises `MissingExtraError` naming it.
"""

from __future__ import annotations

import importlib
from typing import Any

from proxystore.exceptions import MissingExtraError

# class name -> (module in each face's package, the extra it needs)
_STORES: dict[str, tuple[str, str | None]] = {
    "Store": ("base", None),
    "LocalStore": ("local", None),
    "FileStore": ("file", None),
    "RedisStore": ("redis", "redis"),
    "GlobusStore": ("globus", "globus"),
    "EndpointStore": ("endpoint", "endpoints"),
}

STORE_NAMES = tuple(_STORES)


def store_attribute(package: str, name: str) -> Any:
    """Return the store class `name` of a face's `package`, importing it now.

    Raises:
        AttributeError: If `name` is not a store class name.
        MissingExtraError: If the store's optional extra is not installed.
    """
    found = _STORES.get(name)
    if found is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module, extra = found
    try:
        imported = importlib.import_module(f"{package}.{module}")
    except ModuleNotFoundError as err:
        if extra is None or (err.name or "").split(".")[0] == "proxystore":
            raise
        raise MissingExtraError(
            f"{package}.{name} needs the {extra!r} extra, which is not "
            f"installed (no module {err.name!r}): pip install 'proxystore[{extra}]'"
        ) from err
    return getattr(imported, name)
