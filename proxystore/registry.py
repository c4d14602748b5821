"""One name, two faces: the process-wide registry of stores.

A store name maps to one configuration (the store's class and the keyword
arguments that rebuild it). Each face, sync (`proxystore.store`) and async
(`proxystore.aio`), is an instance built from that configuration the first
time it is asked for. `proxystore.store` and `proxystore.aio` wrap the
functions here with their face fixed.

A configuration's identity (class, name, the arguments its class lists in
``_IDENTITY``) says which data it reaches: one name has one identity, and a
configuration carried by a received proxy is checked (`admit`) against the
registered store of its name, or against `proxystore.policy` for an unknown
name, before anything is built. Only built-in store classes and classes
registered with `register_store_class` are ever built.
"""

from __future__ import annotations

import enum
import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxystore import policy
from proxystore.exceptions import (
    ConfigurationError,
    StoreExistsError,
    StoreIdentityError,
    StoreNotFoundError,
    UnknownStoreTypeError,
    UntrustedProxyError,
    describe,
)

Face = Literal["sync", "async"]
Identity = tuple[str, str, tuple[tuple[str, Any], ...]]
"""(face-neutral kind, name, identity arguments): which data a store reaches."""

_ASYNC_PACKAGE = "proxystore.aio."
_SYNC_PACKAGE = "proxystore.store."


class _StorePath(str):
    """A `STORES` value: the store class's dotted path.

    It also equals the store class itself (either face), as ProxyStore 0.4's
    values were the classes, without importing any store module.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, type):
            return kind_of(other) == str(self)
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__


class STORES(enum.Enum):
    """The store types that ship with proxystore, by `init_store` name."""

    LOCAL = _StorePath("proxystore.aio.local.LocalStore")
    FILE = _StorePath("proxystore.aio.file.FileStore")
    REDIS = _StorePath("proxystore.aio.redis.RedisStore")
    GLOBUS = _StorePath("proxystore.aio.globus.GlobusStore")
    ENDPOINT = _StorePath("proxystore.aio.endpoint.EndpointStore")

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

    def build(self, face: Face, secrets: Mapping[str, Any] | None = None) -> Any:
        """Construct a new store instance of this configuration for `face`.

        Args:
            face: Which face to build.
            secrets: Secret arguments (never part of a configuration) to add.

        Raises:
            UntrustedProxyError: If the class is neither built in nor registered.
            ConfigurationError: If the class has no such face.
        """
        if not has_face(self.kind, face):
            raise ConfigurationError(
                f"store {self.name!r} ({self.kind}) has no {face} face"
            )
        cls = store_class(self.kind, face)
        try:
            return cls(**self.kwargs, **(secrets or {}))
        except (TypeError, ValueError) as err:
            if isinstance(err, ConfigurationError):
                raise
            # A carried configuration may hold values of the wrong type.
            raise ConfigurationError(
                f"cannot build store {self.name!r} as {self.describe()}: {err}"
            ) from err

    def identity(self) -> Identity:
        """Return which data this configuration reaches (tuning left out).

        Two configurations with the same identity are the same store: the
        class (either face), the name, and the arguments the class lists in
        ``_IDENTITY`` (defaults filled in).

        Raises:
            UntrustedProxyError: If the class is neither built in nor registered.
        """
        values = identity_arguments(declaring_class(self.kind), self.kwargs)
        return (
            neutral_kind(self.kind),
            self.name,
            tuple((key, _freeze(value)) for key, value in values.items()),
        )

    def describe(self) -> str:
        """Return ``Class(identity arguments)``, for messages (no secrets)."""
        try:
            values = identity_arguments(declaring_class(self.kind), self.kwargs)
        except UntrustedProxyError:
            return describe(self.kind)
        shown = ", ".join(
            f"{key}={describe(value, 200)}" for key, value in values.items()
        )
        return f"{self.kind.rpartition('.')[2]}({shown})"


def config_of(store: Any) -> StoreConfig:
    """Return a store's configuration, keeping only non-default arguments.

    Arguments equal to their constructor default are left out: proxies stay
    small (they carry the configuration), and two configurations that build
    the same store compare equal however they were spelled. Secrets and
    process-local arguments are never part of it. The store's class becomes
    trusted (`register_store_class`): this process built an instance of it.
    """
    cls = type(store)
    register_store_class(cls)
    defaults = _constructor_defaults(cls)
    dropped = {*getattr(cls, "_SECRETS", ()), *getattr(cls, "_PROCESS_LOCAL", ())}
    kwargs = {
        key: value
        for key, value in store.config().items()
        if key not in dropped
        and (
            key == "name"
            or key not in defaults
            or type(value) is not type(defaults[key])
            or value != defaults[key]
        )
    }
    return StoreConfig(kind_of(cls), store.name, kwargs)


_defaults: dict[type, dict[str, Any]] = {}
_parameters: dict[type, frozenset[str]] = {}


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
        _parameters[cls] = frozenset(
            parameter.name
            for parameter in parameters
            if parameter.kind
            in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        )
    return defaults


def identity_arguments(cls: type, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the identity arguments (``cls._IDENTITY``) of a store's kwargs."""
    defaults = _constructor_defaults(cls)
    return {
        key: kwargs[key] if key in kwargs else defaults.get(key)
        for key in getattr(cls, "_IDENTITY", ())
    }


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    return value


def kind_of(cls: type) -> str:
    """Return the face-neutral kind (dotted path) of a store class."""
    return neutral_kind(f"{cls.__module__}.{cls.__qualname__}")


def neutral_kind(kind: str) -> str:
    """Return a class path with the sync package replaced by the async one."""
    if kind.startswith(_SYNC_PACKAGE):
        return _ASYNC_PACKAGE + kind[len(_SYNC_PACKAGE) :]
    return kind


_BUILTIN_KINDS = frozenset(member.value for member in STORES)
_store_classes: dict[str, type] = {}
_builtin_classes: dict[tuple[str, Face], type] = {}


def register_store_class(cls: type) -> None:
    """Trust a store class: proxies naming it may build it in this process.

    Built-in stores (`STORES`) are always trusted. A proxy carries its
    store's class as a dotted path; unpickling it builds that class only if
    it is built in or registered here, and never imports anything. A class
    you pass to `init_store`, register an instance of, or instantiate is
    registered for you; call this in a consumer that must rebuild your
    store class from proxies before creating any instance of it.

    Raises:
        ConfigurationError: If `cls` is not a `Store` subclass (either face).
    """
    if not isinstance(cls, type) or not _is_store_class(cls):
        raise ConfigurationError(f"{cls!r} is not a Store class")
    kind = kind_of(cls)
    if kind not in _BUILTIN_KINDS and _store_classes.get(kind) is not cls:
        with _lock:
            _store_classes[kind] = cls


def store_class(kind: str, face: Face) -> type:
    """Return the class of a trusted kind for `face`; never imports anything else.

    Raises:
        UntrustedProxyError: If `kind` is neither built in nor registered.
    """
    neutral = neutral_kind(kind)
    if neutral in _BUILTIN_KINDS:
        cls = _builtin_classes.get((neutral, face))
        if cls is None:
            path = StoreConfig(neutral, "", {}).face_kind(face)
            cls = _builtin_classes[neutral, face] = import_class(path)
        return cls
    cls = _store_classes.get(neutral)
    if cls is None:
        raise UntrustedProxyError(
            f"store class {describe(kind)} is neither a built-in store "
            "(proxystore.registry.STORES) nor registered in this process "
            "(register_store_class); nothing was imported or built"
        )
    return cls


def declaring_class(kind: str) -> type:
    """Return a class whose declarations describe the trusted store `kind`.

    Its ``_IDENTITY``, ``_SECRETS``, constructor arguments and defaults are
    those of every face: a built-in store's sync class is generated from its
    async one. Whichever face is already imported is used, so the sync face
    never imports the async one (and asyncio) to answer.

    Raises:
        UntrustedProxyError: If `kind` is neither built in nor registered.
    """
    neutral = neutral_kind(kind)
    if neutral in _BUILTIN_KINDS:
        for face in _FACES:
            cls = _builtin_classes.get((neutral, face))
            if cls is not None:
                return cls
        return store_class(neutral, "sync")
    return store_class(kind, "async")


_FACES: tuple[Face, ...] = ("sync", "async")


def has_face(kind: str, face: Face) -> bool:
    """Whether the trusted store class `kind` has a `face` (sync or async).

    A user's async driver registered without a generated twin has no sync
    face. The one answer for building a face and for choosing how to fetch.

    Raises:
        UntrustedProxyError: If `kind` is neither built in nor registered.
    """
    return getattr(store_class(kind, face), "_IS_SYNC", None) is (face == "sync")


def import_class(path: str) -> type:
    """Import a class from its dotted path (only for paths this process trusts)."""
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
    # By its marks rather than issubclass: the registry imports no face.
    return hasattr(cls, "_IS_SYNC") and hasattr(cls, "store_config")


class _Entry:
    __slots__ = ("config", "faces", "identity", "provisional", "secrets")

    def __init__(
        self,
        config: StoreConfig,
        secrets: dict[str, Any],
        *,
        provisional: bool = False,
    ) -> None:
        self.config = config
        self.identity = config.identity()
        self.secrets = secrets
        # Built from a proxy, not by this process: the application's own
        # init_store or register_store replaces it.
        self.provisional = provisional
        self.faces: dict[Face, Any] = {}


_lock = threading.RLock()
_entries: dict[str, _Entry] = {}


def _entry_of(store: Any) -> _Entry:
    secrets: dict[str, Any] = store._secret_kwargs()
    return _Entry(store.store_config, secrets)


def register(store: Any, face: Face, exist_ok: bool) -> None:
    """Register a store instance as the `face` of its name.

    Args:
        store: The store.
        face: Which face it is.
        exist_ok: Replace a store already registered under the name instead of
            raising.

    Raises:
        StoreExistsError: If the name is taken by a store of another identity,
            or its `face` is already registered (even by this very store),
            and not `exist_ok`.
    """
    config = store.store_config
    identity = config.identity()
    with _lock:
        entry = _entries.get(config.name)
        if entry is not None and not entry.provisional and not exist_ok:
            if entry.identity != identity:
                raise StoreExistsError(
                    config.name, entry.config.describe(), config.describe()
                )
            other = entry.faces.get(face)
            if other is not None:
                raise StoreExistsError(config.name)
        if entry is None or entry.provisional or entry.identity != identity:
            entry = _entries[config.name] = _entry_of(store)
        else:
            entry.secrets = store._secret_kwargs() or entry.secrets
        entry.faces[face] = store


def unregister(name: str) -> None:
    """Forget a store name and every face of it (a no-op if unknown)."""
    with _lock:
        _entries.pop(name, None)


def forget(store: Any) -> None:
    """Unregister the name of `store` if `store` is a registered face of it.

    Called when a store closes: a closed store is never handed out again, so
    `init_store` and proxies of the name build a new one (as in 0.4).
    """
    with _lock:
        entry = _entries.get(store.name)
        if entry is not None and any(face is store for face in entry.faces.values()):
            del _entries[store.name]


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


def admit(config: StoreConfig) -> None:
    """Check a configuration a proxy carries; build, import and connect nothing.

    The class must be built in or registered; every argument must be one
    the class declares, not a secret nor process-local, and plain data. A
    registered name must be registered with the same identity. An unknown
    name must be allowed by the proxy policy (`proxystore.policy`).

    Raises:
        UntrustedProxyError: If the configuration is refused.
        StoreIdentityError: If the name is registered with another identity.
        ConfigurationError: If the policy's environment variables are malformed.
    """
    entry = _entries.get(config.name)
    if entry is not None and entry.config is config:
        return
    cls = declaring_class(config.kind)
    # Plain data first: comparing anything else could run its code.
    _check_plain(config, cls)
    if entry is None or entry.config != config:
        _check_declared(config, cls)
        if entry is not None:
            _check_identity(entry, config)
        else:
            policy.check(
                neutral_kind(config.kind),
                config.name,
                {**_constructor_defaults(cls), **config.kwargs},
                config.describe,
            )
    else:
        # Exactly what this process registered: later proxies share the
        # registered configuration object, which `lookup_or_build` then
        # recognizes by identity.
        config = entry.config
    key = _admitted_key(config.kind, config.kwargs)
    if key is not None:
        if len(_admitted) >= _MAX_ADMITTED:
            _admitted.clear()
        _admitted[key] = (config, entry, policy.in_force())


def admitted(kind: Any, kwargs: Any) -> StoreConfig | None:
    """Return the configuration `admit` admitted for exactly these carried values.

    A fast path for unpickling proxies: most carry a configuration this
    process has admitted already. Only configurations whose arguments are
    all str, int, float, bool or None are remembered, keyed by their kind
    and their arguments with their types (hashing and comparing such values
    runs no foreign code, and ``1``, ``1.0`` and ``True`` stay apart). A
    remembered admission holds only while the name's registry entry and the
    proxy policy in force are those it was made under; anything else
    returns None, and the caller checks the configuration in full.
    """
    key = _admitted_key(kind, kwargs)
    if key is None:
        return None
    found = _admitted.get(key)
    if found is None:
        return None
    config, entry, in_force = found
    if _entries.get(config.name) is not entry or policy.in_force() is not in_force:
        return None
    return config


_MAX_ADMITTED = 1024
_admitted: dict[tuple[Any, ...], tuple[StoreConfig, _Entry | None, Any]] = {}


def _admitted_key(kind: Any, kwargs: Any) -> tuple[Any, ...] | None:
    if type(kind) is not str or type(kwargs) is not dict:
        return None
    items = []
    for key, value in kwargs.items():
        kind_of_value = type(value)
        if type(key) is not str or kind_of_value not in _SCALARS:
            return None
        items.append((key, kind_of_value, value))
    return (kind, *items)


def _check_identity(entry: _Entry, config: StoreConfig) -> None:
    if entry.identity != config.identity():
        raise StoreIdentityError(
            config.name, entry.config.describe(), config.describe()
        )


_MAX_DEPTH = 8
_MAX_ITEMS = 4096
_SCALARS = (str, int, float, bool, type(None))


def _check_plain(config: StoreConfig, cls: type) -> None:
    if config.kwargs.get("name") != config.name:
        where = f"a proxy of store {config.name!r} ({cls.__name__})"
        raise UntrustedProxyError(f"{where} carries a mismatched name argument")
    budget = [_MAX_ITEMS]
    for key, value in config.kwargs.items():
        # Scalars first: most arguments are, and they need no recursion.
        if type(key) is str and type(value) in _SCALARS:
            budget[0] -= 1
            continue
        where = f"a proxy of store {config.name!r} ({cls.__name__})"
        if type(key) is not str:
            raise UntrustedProxyError(f"{where} carries argument {describe(key)}")
        if not _plain(value, 0, budget):
            raise UntrustedProxyError(
                f"{where} carries argument {key!r} = {describe(value)}, which is "
                "not plain data (str, int, float, bool, None, and lists, tuples "
                f"and str-keyed dicts of those, at most {_MAX_DEPTH} deep)"
            )


def _check_declared(config: StoreConfig, cls: type) -> None:
    _constructor_defaults(cls)
    declared = _parameters[cls]
    secrets = getattr(cls, "_SECRETS", ())
    local = getattr(cls, "_PROCESS_LOCAL", ())
    where = f"a proxy of store {config.name!r} ({cls.__name__})"
    for key in config.kwargs:
        if key in secrets:
            raise UntrustedProxyError(
                f"{where} carries the secret {key!r}; secrets never travel in "
                "proxies (a consumer takes them from its environment)"
            )
        if key in local or key not in declared:
            raise UntrustedProxyError(
                f"{where} carries argument {describe(key)}, which "
                f"{cls.__name__} does not take from a proxy"
            )
        allowed = getattr(cls, "_CARRIED_ONLY_AS", {}).get(key)
        if allowed is not None and config.kwargs[key] not in allowed:
            raise UntrustedProxyError(
                f"{where} carries {key} = {describe(config.kwargs[key])}; a "
                f"proxy may only carry {' or '.join(map(repr, allowed))}"
            )


def _plain(value: Any, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        return False
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is list or kind is tuple:
        return all(_plain(item, depth + 1, budget) for item in value)
    if kind is dict:
        return all(
            type(key) is str and _plain(item, depth + 1, budget)
            for key, item in value.items()
        )
    return False


def find(name: str, face: Face) -> Any:
    """Return the `face` of a registered name (building it if needed), or None."""
    try:
        return lookup(name, face)
    except StoreNotFoundError:
        return None


def lookup_or_build(config: StoreConfig, face: Face) -> Any:
    """Return the `face` of the store a proxy names, building it if needed.

    A registered name is used only if the proxy names the same store (same
    identity; its tuning and the secrets it lacks come from the registered
    store). An unknown name is admitted (`admit`), built from the carried
    configuration with secrets from this process's environment, and
    registered provisionally, so every proxy of the store shares one
    instance; the application's own `init_store` replaces it.

    Raises:
        StoreIdentityError: If the name is registered with another identity.
        UntrustedProxyError: If an unknown name's configuration is refused.
    """
    entry = _entries.get(config.name)
    if entry is not None and (entry.config is config or entry.config == config):
        store = entry.faces.get(face)
        if store is not None:
            return store
    with _lock:
        entry = _entries.get(config.name)
        if entry is None:
            admit(config)
            cls: Any = declaring_class(config.kind)
            entry = _Entry(config, cls._environment_secrets(), provisional=True)
            store = entry.config.build(face, entry.secrets)
            entry.faces[face] = store
            _entries[config.name] = entry  # only once it built
            return store
        if not (entry.config is config or entry.config == config):
            _check_identity(entry, config)
        return _face_of(entry, face)


def _face_of(entry: _Entry, face: Face) -> Any:
    store = entry.faces.get(face)
    if store is None:
        store = entry.faces[face] = entry.config.build(face, entry.secrets)
    return store


def init_store(
    store_type: Any, name: str, face: Face, *, replace: bool = False, **kwargs: Any
) -> Any:
    """Create the `face` of a store and register it (see `proxystore.store.init_store`).

    On a taken name: the same configuration returns the registered store;
    the same identity with other tuning (cache size, stats, timeouts...)
    registers the new store in its place, as ProxyStore 0.4 did (it reaches
    the same data, so proxies of the name are unaffected); another identity
    raises `StoreExistsError` unless `replace`. A name only a received proxy
    registered is replaced.
    """
    store = resolve_store_type(store_type, face)(name=name, **kwargs)
    config = store.store_config
    with _lock:
        entry = _entries.get(name)
        if entry is not None and not entry.provisional and not replace:
            if entry.config == config:
                return _face_of(entry, face)
            if entry.identity != config.identity():
                raise StoreExistsError(name, entry.config.describe(), config.describe())
        entry = _entries[name] = _entry_of(store)
        entry.faces[face] = store
    return store


def registered_names() -> list[str]:
    """Return the names currently registered."""
    return list(_entries)
