"""One name, two faces: the process-wide registry of stores.

A store name maps to one configuration (the store's class and the keyword
arguments that rebuild it). Each face, sync (`proxystore.store`) and async
(`proxystore.aio`), is an instance built from that configuration the first
time it is asked for. `proxystore.store` and `proxystore.aio` wrap the
functions here with their face fixed.
"""

from __future__ import annotations

import enum
import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from proxystore.exceptions import (
    ConfigurationError,
    NotAStoreProxyError,
    StoreExistsError,
    StoreNotFoundError,
    UnknownStoreTypeError,
)

if TYPE_CHECKING:
    from proxystore.aio.base import Store as AsyncStore
    from proxystore.store.base import Store as SyncStore

Face = Literal["sync", "async"]

_ASYNC_PACKAGE = "proxystore.aio."
_SYNC_PACKAGE = "proxystore.store."


class STORES(enum.Enum):
    """The store types that ship with proxystore, by `init_store` name."""

    LOCAL = "proxystore.aio.local.LocalStore"
    FILE = "proxystore.aio.file.FileStore"
    REDIS = "proxystore.aio.redis.RedisStore"
    GLOBUS = "proxystore.aio.globus.GlobusStore"
    ENDPOINT = "proxystore.aio.endpoint.EndpointStore"

    @classmethod
    def from_name(cls, name: str) -> STORES:
        """Return the member for a type name such as ``'redis'`` (any case)."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise UnknownStoreTypeError(name, cls.names()) from None

    @classmethod
    def names(cls) -> list[str]:
        """Return the type names `init_store` accepts."""
        return [member.name.lower() for member in cls]

    @classmethod
    def get_str_by_type(cls, store: type) -> str:
        """Return the member name (``"REDIS"``...) of a store class, either face.

        ProxyStore 0.4's helper: ``STORES[name]`` is the member again.

        Raises:
            KeyError: If `store` is not one of the store types shipped here.
        """
        kind = kind_of(store) if isinstance(store, type) else None
        for member in cls:
            if member.value == kind:
                return member.name
        raise KeyError(f"{store!r} is not a store type of proxystore.store.STORES")


@dataclass(frozen=True)
class StoreConfig:
    """What it takes to rebuild a store in any process, in either face.

    Attributes:
        kind: Dotted path of the store class. For the stores that ship with
            proxystore it names the async class; the sync twin has the same
            name under `proxystore.store`.
        name: The store's registered name.
        kwargs: Constructor keyword arguments, `name` included.
    """

    kind: str
    name: str
    kwargs: dict[str, Any]

    def face_kind(self, face: Face) -> str:
        """Return the dotted class path of this store's class for `face`."""
        if face == "sync" and self.kind.startswith(_ASYNC_PACKAGE):
            return _SYNC_PACKAGE + self.kind[len(_ASYNC_PACKAGE) :]
        if face == "async" and self.kind.startswith(_SYNC_PACKAGE):
            return _ASYNC_PACKAGE + self.kind[len(_SYNC_PACKAGE) :]
        return self.kind

    def build(self, face: Face) -> Any:
        """Construct a new store instance of this configuration for `face`."""
        cls = import_class(self.face_kind(face))
        if getattr(cls, "_IS_SYNC", face == "sync") != (face == "sync"):
            raise ConfigurationError(
                f"store {self.name!r} ({self.kind}) has no {face} face"
            )
        return cls(**self.kwargs)


def config_of(store: Any) -> StoreConfig:
    """Return a store's configuration, keeping only non-default arguments.

    Arguments equal to their constructor default are left out: proxies stay
    small (they carry the configuration), and two configurations that build
    the same store compare equal however they were spelled.
    """
    cls = type(store)
    defaults = _constructor_defaults(cls)
    kwargs = {
        key: value
        for key, value in store.config().items()
        if key == "name"
        or key not in defaults
        or type(value) is not type(defaults[key])
        or value != defaults[key]
    }
    return StoreConfig(kind_of(cls), store.name, kwargs)


_defaults: dict[type, dict[str, Any]] = {}


def _constructor_defaults(cls: type) -> dict[str, Any]:
    defaults = _defaults.get(cls)
    if defaults is None:
        import inspect  # only when a store first builds its configuration

        parameters = inspect.signature(cls).parameters.values()
        defaults = _defaults[cls] = {
            parameter.name: parameter.default
            for parameter in parameters
            if parameter.default is not inspect.Parameter.empty
        }
    return defaults


def kind_of(cls: type) -> str:
    """Return the face-neutral kind (dotted path) of a store class."""
    path = f"{cls.__module__}.{cls.__qualname__}"
    if path.startswith(_SYNC_PACKAGE):
        return _ASYNC_PACKAGE + path[len(_SYNC_PACKAGE) :]
    return path


def import_class(path: str) -> type:
    """Import a class from its dotted path."""
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except ImportError as err:
        raise ConfigurationError(
            f"cannot import store class {path}: {err} "
            "(is the extra it needs installed? e.g. pip install 'proxystore[redis]')"
        ) from err
    except AttributeError as err:
        raise ConfigurationError(f"no store class {path}") from err
    if not isinstance(cls, type):
        raise ConfigurationError(f"{path} is not a class")
    return cls


def resolve_store_type(store_type: Any, face: Face) -> type:
    """Return the store class for a type name, `STORES` member or class."""
    if isinstance(store_type, type):
        if not _is_store_class(store_type):
            raise UnknownStoreTypeError(store_type, STORES.names())
        return store_type
    if isinstance(store_type, STORES):
        member = store_type
    elif isinstance(store_type, str):
        member = STORES.from_name(store_type)
    else:
        raise UnknownStoreTypeError(store_type, STORES.names())
    return import_class(StoreConfig(member.value, "", {}).face_kind(face))


def _is_store_class(cls: type) -> bool:
    # By its marks rather than issubclass: the base classes import this module.
    return hasattr(cls, "_IS_SYNC") and hasattr(cls, "store_config")


class _Entry:
    __slots__ = ("config", "faces")

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.faces: dict[Face, Any] = {}


_lock = threading.RLock()
_entries: dict[str, _Entry] = {}


def register(
    store: SyncStore[Any] | AsyncStore[Any], face: Face, exist_ok: bool
) -> None:
    """Register a store instance as the `face` of its name.

    Args:
        store: The store.
        face: Which face it is.
        exist_ok: Replace a store already registered under the name instead of
            raising.

    Raises:
        StoreExistsError: If the name is taken by a different configuration,
            or its `face` is already registered (even by this very store),
            and not `exist_ok`.
    """
    config = store.store_config
    with _lock:
        entry = _entries.get(config.name)
        if (
            entry is not None
            and not exist_ok
            and (entry.config != config or entry.faces.get(face) is not None)
        ):
            raise StoreExistsError(config.name)
        if entry is None or entry.config != config:
            entry = _entries[config.name] = _Entry(config)
        entry.faces[face] = store


def unregister(name: str) -> None:
    """Forget a store name and every face of it (a no-op if unknown)."""
    with _lock:
        _entries.pop(name, None)


def lookup(name: str, face: Face) -> Any:
    """Return the `face` of a registered name, building it if needed.

    Raises:
        StoreNotFoundError: If no store is registered under `name`.
    """
    entry = _entries.get(name)
    if entry is not None:
        store = entry.faces.get(face)
        if store is not None:
            return store
    with _lock:
        entry = _entries.get(name)
        if entry is None:
            raise StoreNotFoundError(name)
        return _face_of(entry, face)


def find(name: str, face: Face) -> Any:
    """Return the `face` of a registered name (building it if needed), or None."""
    try:
        return lookup(name, face)
    except StoreNotFoundError:
        return None


def lookup_or_build(config: StoreConfig, face: Face) -> Any:
    """Return the `face` of the store a proxy names, building it if needed.

    A name this process already knows wins over the carried configuration;
    an unknown name is registered from it, so every proxy of the store
    shares one instance.
    """
    entry = _entries.get(config.name)
    if entry is not None:
        store = entry.faces.get(face)
        if store is not None:
            return store
    with _lock:
        entry = _entries.get(config.name)
        if entry is None:
            entry = _entries[config.name] = _Entry(config)
        return _face_of(entry, face)


def _face_of(entry: _Entry, face: Face) -> Any:
    store = entry.faces.get(face)
    if store is None:
        store = entry.faces[face] = entry.config.build(face)
    return store


def init_store(store_type: Any, name: str, face: Face, **kwargs: Any) -> Any:
    """Create the `face` of a store and register it (see `proxystore.store.init_store`).

    Calling it again with the same type, name and arguments returns the store
    already registered.
    """
    store = resolve_store_type(store_type, face)(name=name, **kwargs)
    entry = _entries.get(name)
    if entry is not None and entry.config == store.store_config:
        return lookup(name, face)
    register(store, face, exist_ok=False)
    return store


def store_of_proxy(proxy: Any, face: Face) -> Any:
    """Return the `face` of the store a proxy's factory names, building it if needed.

    Raises:
        NotAStoreProxyError: If the proxy was not made by a store.
    """
    from proxystore.proxy import get_factory
    from proxystore.store.factory import StoreFactory

    factory = get_factory(proxy)
    if not isinstance(factory, StoreFactory):
        raise NotAStoreProxyError(factory)
    return lookup_or_build(factory.config, face)


def registered_names() -> list[str]:
    """Return the names currently registered."""
    return list(_entries)
