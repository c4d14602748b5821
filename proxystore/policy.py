"""The proxy policy: which stores a received proxy may make this process reach.

A store proxy carries its store's configuration, so a process that never
set the store up can resolve it. Whoever can send you a proxy therefore
chooses where your process connects. The policy decides how much of that
choice a proxy gets when it names a store *this process has not
registered* (a registered name always resolves through the registered store,
and only when the proxy names the same store: `StoreIdentityError`
otherwise):

- ``"open"`` (the default): the store is built from the proxy's
  configuration. A consumer needs no setup, and trusts every sender of
  proxies with any built-in store configuration: any Redis host and port,
  any directory (created if missing; resolving reads a file in it, and an
  ``evict`` proxy deletes one), any endpoint URL. Store classes, argument
  names and value types are checked whatever the policy (see
  `docs/security/proxies.md`).
- ``"strict"``: only registered names, or configurations on the allowlist:
  ``redis:HOST`` / ``redis:HOST:PORT``, ``file:/DIR`` (that directory and
  below), ``endpoint:UUID_OR_NAME`` (an `EndpointStore` whose endpoints are
  all listed and that carries no ``url``). Anything else is refused at
  unpickle time with `UntrustedProxyError`, before any prefetch starts and
  before any connection is opened. A custom deserializer carried by a proxy
  must be one given to `configure` (``deserializers=``).

Set it in code with `configure`, or in the environment (read at the first
proxy unpickled, if `configure` was not called first):
``PROXYSTORE_PROXY_POLICY=strict`` and
``PROXYSTORE_PROXY_ALLOW=redis:db.example.org:6379,file:/scratch/ps``.

Example:
    ```python
    import proxystore.policy

    proxystore.policy.configure(
        "strict", allow=["redis:10.0.0.5:6379", "file:/scratch/shared"]
    )
    ```
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from proxystore.exceptions import ConfigurationError, UntrustedProxyError

Mode = Literal["open", "strict"]

POLICY_ENV = "PROXYSTORE_PROXY_POLICY"
ALLOW_ENV = "PROXYSTORE_PROXY_ALLOW"

_MODES = ("open", "strict")
_REDIS = "proxystore.aio.redis.RedisStore"
_FILE = "proxystore.aio.file.FileStore"
_ENDPOINT = "proxystore.aio.endpoint.EndpointStore"


@dataclass(frozen=True)
class Policy:
    """A proxy policy (see the module documentation).

    Attributes:
        mode: ``"open"`` or ``"strict"``.
        allow: The allowlist entries (``redis:HOST[:PORT]``, ``file:/DIR``,
            ``endpoint:UUID_OR_NAME``).
        deserializers: Custom deserializers a proxy may carry under
            ``"strict"`` (under ``"open"`` any callable is accepted).

    Raises:
        ConfigurationError: If `mode` is not ``open``/``strict``, an
            allowlist entry is malformed, or a deserializer is not callable.
    """

    mode: Mode = "open"
    allow: tuple[str, ...] = ()
    deserializers: frozenset[Callable[..., Any]] = frozenset()
    _redis: frozenset[tuple[str, int | None]] = field(
        init=False, repr=False, compare=False
    )
    _dirs: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _endpoints: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigurationError(
                f"proxy policy must be 'open' or 'strict', got {self.mode!r}"
            )
        redis: set[tuple[str, int | None]] = set()
        dirs: list[str] = []
        endpoints: set[str] = set()
        for entry in self.allow:
            kind, _, value = (
                entry.partition(":") if isinstance(entry, str) else ("",) * 3
            )
            if kind == "redis" and value:
                redis.add(_parse_host_port(entry, value))
            elif kind == "file" and os.path.isabs(value):
                dirs.append(os.path.normpath(value))
            elif kind == "endpoint" and value:
                endpoints.add(value)
            else:
                raise ConfigurationError(
                    f"proxy allowlist entry {entry!r} is not redis:HOST[:PORT], "
                    "file:/ABSOLUTE/DIR or endpoint:UUID_OR_NAME"
                )
        for function in self.deserializers:
            if not callable(function):
                raise ConfigurationError(f"deserializer {function!r} is not callable")
        # Frozen: the derived lookups are set once, here.
        object.__setattr__(self, "_redis", frozenset(redis))
        object.__setattr__(self, "_dirs", tuple(dirs))
        object.__setattr__(self, "_endpoints", frozenset(endpoints))

    def allows(self, kind: str, arguments: Mapping[str, Any]) -> bool:
        """Return whether a proxy may build an unregistered store so configured.

        Args:
            kind: The store's face-neutral class path.
            arguments: The store's constructor arguments (defaults filled in).
        """
        if self.mode == "open":
            return True
        if kind == _REDIS:
            host, port = arguments.get("hostname"), arguments.get("port")
            if not isinstance(host, str) or type(port) is not int:
                return False
            host = host.lower()
            return (host, None) in self._redis or (host, port) in self._redis
        if kind == _FILE:
            return _under(arguments.get("store_dir"), self._dirs)
        if kind == _ENDPOINT:
            endpoints = arguments.get("endpoints") or ()
            if isinstance(endpoints, str):
                endpoints = [endpoints]  # as EndpointStore reads it
            return (
                arguments.get("url") is None
                and isinstance(endpoints, (list, tuple))
                and bool(endpoints)
                and all(
                    isinstance(endpoint, str) and endpoint in self._endpoints
                    for endpoint in endpoints
                )
            )
        return False

    def allows_deserializer(self, deserializer: Callable[..., Any] | None) -> bool:
        """Return whether a proxy may carry this custom deserializer."""
        return (
            deserializer is None
            or self.mode == "open"
            or deserializer in self.deserializers
        )


def _parse_host_port(entry: str, value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"proxy allowlist entry {entry!r}: bad address")
        port_text = rest[1:] if rest else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not port_text:
        return host.lower(), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(
            f"proxy allowlist entry {entry!r}: port must be 1-65535"
        )
    return host.lower(), int(port_text)


def _under(path: Any, dirs: tuple[str, ...]) -> bool:
    if not isinstance(path, str) or not os.path.isabs(path):
        return False
    path = os.path.normpath(path)
    return any(
        path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)
        for directory in dirs
    )


_lock = threading.Lock()
_current: Policy | None = None


def current() -> Policy:
    """Return the policy in force: `configure`'s, else the environment's.

    Raises:
        ConfigurationError: If ``PROXYSTORE_PROXY_POLICY`` or
            ``PROXYSTORE_PROXY_ALLOW`` is malformed.
    """
    policy = _current
    if policy is None:
        with _lock:
            policy = _current if _current is not None else _from_environment()
            _set(policy)
    return policy


def in_force() -> Policy | None:
    """Return the policy `current` would return if already read, else None.

    Never reads the environment: what a cache of admitted configurations
    compares to know the policy did not change (`configure`, `reset`).
    """
    return _current


def _set(policy: Policy | None) -> None:
    global _current
    _current = policy


def _from_environment() -> Policy:
    mode = os.environ.get(POLICY_ENV, "").strip().lower() or "open"
    if mode not in _MODES:
        raise ConfigurationError(
            f"{POLICY_ENV} must be 'open' or 'strict', got {mode!r}"
        )
    allow = [
        entry.strip()
        for entry in os.environ.get(ALLOW_ENV, "").split(",")
        if entry.strip()
    ]
    try:
        return Policy(mode, tuple(allow))  # type: ignore[arg-type]
    except ConfigurationError as err:
        raise ConfigurationError(f"{ALLOW_ENV}: {err}") from None


def configure(
    mode: Mode | None = None,
    *,
    allow: Iterable[str] | None = None,
    deserializers: Iterable[Callable[..., Any]] | None = None,
) -> Policy:
    """Set the proxy policy for this process (overrides the environment).

    Args:
        mode: ``"open"`` or ``"strict"``; None keeps the current mode.
        allow: Allowlist entries (``redis:HOST[:PORT]``, ``file:/DIR``,
            ``endpoint:UUID_OR_NAME``) replacing the current ones; None
            keeps them.
        deserializers: Custom deserializers proxies may carry under
            ``"strict"``, replacing the current ones; None keeps them.

    Returns:
        The policy now in force.

    Raises:
        ConfigurationError: If an argument is malformed (nothing changes).
    """
    for what, value in (("allow", allow), ("deserializers", deserializers)):
        if isinstance(value, str):
            raise ConfigurationError(f"{what} must be a list, not the str {value!r}")
    with _lock:
        base = _current if _current is not None else _from_environment()
        policy = Policy(
            base.mode if mode is None else mode,
            base.allow if allow is None else tuple(allow),
            base.deserializers if deserializers is None else frozenset(deserializers),
        )
        _set(policy)
    return policy


def reset() -> None:
    """Forget `configure`; the next proxy reads the environment again."""
    with _lock:
        _set(None)


def _new_lock_after_fork() -> None:
    global _lock
    # Another thread of the parent may have held it at fork time.
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def check(
    kind: str,
    name: str,
    arguments: Mapping[str, Any],
    described: Callable[[], str],
) -> None:
    """Raise unless the policy lets a proxy build this unregistered store.

    Raises:
        UntrustedProxyError: If the policy is strict and the configuration
            is not on the allowlist.
    """
    policy = current()
    if policy.allows(kind, arguments):
        return
    listed = ", ".join(policy.allow) or "empty"
    raise UntrustedProxyError(
        f"a proxy names store {name!r} as {described()}, which this process has "
        f"not registered and the strict proxy policy does not allow "
        f"({ALLOW_ENV}: {listed}); register the store (init_store) or allow "
        "its configuration (proxystore.policy.configure(allow=...))"
    )
