"""Globus endpoint configuration and the choice of this host's endpoint.

A `GlobusStore` spans two or more Globus endpoints (collections). Each one is
described by a `GlobusEndpoint`: its UUID, the directory objects live in as the
Globus service sees it (``endpoint_path``), the same directory as this host's
file system sees it (``local_path``), and a regular expression matched against
host names to decide which endpoint is "local" to the running process.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxystore.exceptions import ConfigurationError, InvalidArgumentError, describe

HOSTNAME_ENV = "PROXYSTORE_GLOBUS_HOSTNAME"
"""Environment variable that overrides `socket.gethostname()` for endpoint matching."""

_FIELDS = ("endpoint_path", "local_path", "host_regex")

# ProxyStore 0.4 took any string as an endpoint id ("EP1UUID" in its docs and
# tests); such ids still work, limited to characters safe in a request path.
_LEGACY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def current_hostname() -> str:
    """Return the host name used to pick the local endpoint.

    The value of the ``PROXYSTORE_GLOBUS_HOSTNAME`` environment variable when it
    is set and not empty, else `socket.gethostname()`.
    """
    return os.environ.get(HOSTNAME_ENV) or socket.gethostname()


def _require_text(field: str, value: object, endpoint: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"Globus endpoint {endpoint}: {field} must be a non-empty string, "
            f"got {describe(value)}"
        )
    if not value:
        raise ConfigurationError(
            f"Globus endpoint {endpoint}: {field} must be a non-empty string, "
            f"got {describe(value)}"
        )
    return value


@dataclass(frozen=True)
class GlobusEndpoint:
    """One Globus endpoint (collection) that holds a copy of every object.

    Args:
        uuid: The endpoint's (collection's) UUID.
        endpoint_path: Directory for objects, as the Globus service sees it
            (the path given to Transfer tasks), e.g. ``/~/proxystore``.
        local_path: The same directory as seen by processes on the hosts
            matched by ``host_regex``, e.g. ``/home/user/proxystore``. ``~``
            and environment variables are expanded by each host when used
            (`local_dir`), never in the configuration proxies carry.
        host_regex: Regular expression that must match a whole host name
            (`re.fullmatch`) for this endpoint to be that host's local one
            (a compiled pattern is kept as its source).

    Raises:
        ConfigurationError: If a field is empty or not a string, ``uuid`` is
            not a UUID, or ``host_regex`` does not compile.
    """

    uuid: str
    endpoint_path: str
    local_path: str
    host_regex: str

    def __post_init__(self) -> None:
        if isinstance(self.uuid, uuid.UUID):
            object.__setattr__(self, "uuid", str(self.uuid))
        if isinstance(self.host_regex, re.Pattern):
            object.__setattr__(self, "host_regex", self.host_regex.pattern)
        name = describe(self.uuid)
        _require_text("uuid", self.uuid, name)
        try:
            canonical = str(uuid.UUID(self.uuid))
        except ValueError as err:
            if _LEGACY_ID.fullmatch(self.uuid) is None:
                raise ConfigurationError(
                    f"Globus endpoint uuid {name} is not a UUID (nor a 0.4-style id "
                    "of letters, digits, '.', '_', '-')"
                ) from err
            warnings.warn(
                f"Globus endpoint uuid {name} is not a UUID; ProxyStore 0.4 "
                "accepted any id, Globus endpoints (collections) are named by UUIDs",
                DeprecationWarning,
                stacklevel=4,
            )
            canonical = self.uuid
        object.__setattr__(self, "uuid", canonical)
        for field in _FIELDS:
            _require_text(field, getattr(self, field), canonical)
        try:
            re.compile(self.host_regex)
        except re.error as err:
            raise ConfigurationError(
                f"Globus endpoint {canonical}: host_regex {self.host_regex!r} "
                f"is not a valid regular expression: {err}"
            ) from err

    @property
    def local_dir(self) -> str:
        """`local_path` with ``~`` and environment variables expanded on this host."""
        return os.path.expandvars(os.path.expanduser(self.local_path))

    def matches(self, hostname: str) -> bool:
        """Return whether ``host_regex`` matches the whole of ``hostname``."""
        return re.fullmatch(self.host_regex, hostname) is not None

    def to_dict(self) -> dict[str, str]:
        """Return the fields other than ``uuid`` (the form `from_dict` reads)."""
        return {field: getattr(self, field) for field in _FIELDS}


class GlobusEndpoints:
    r"""The set of endpoints a `GlobusStore` copies objects between.

    Args:
        endpoints: One or more endpoints with distinct UUIDs, in the order
            host names are matched against them.

    Raises:
        ConfigurationError: If ``endpoints`` is empty, holds something other
            than `GlobusEndpoint`, or repeats a UUID.

    Example:
        ```python
        endpoints = GlobusEndpoints.from_dict({
            "0b9b3c4e-...": {
                "endpoint_path": "/~/proxystore",
                "local_path": "/home/me/proxystore",
                "host_regex": "login[0-9]+\\.cluster\\.org",
            },
            ...
        })
        local = endpoints.local()
        ```
    """

    def __init__(self, endpoints: Iterable[GlobusEndpoint]) -> None:
        self._endpoints: dict[str, GlobusEndpoint] = {}
        for endpoint in endpoints:
            if not isinstance(endpoint, GlobusEndpoint):
                raise ConfigurationError(
                    f"expected a GlobusEndpoint, got {describe(endpoint)}"
                )
            if endpoint.uuid in self._endpoints:
                raise ConfigurationError(
                    f"Globus endpoint {endpoint.uuid} is listed more than once"
                )
            self._endpoints[endpoint.uuid] = endpoint
        if not self._endpoints:
            raise ConfigurationError("at least one Globus endpoint is required")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlobusEndpoints:
        """Build from ``{uuid: {"endpoint_path", "local_path", "host_regex"}}``.

        Raises:
            ConfigurationError: If the mapping has the wrong shape, a field is
                missing or unknown, or a value is invalid.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                "Globus endpoints must be a mapping of endpoint UUID to "
                f"{{{', '.join(_FIELDS)}}}, got {describe(data)}"
            )
        endpoints = []
        for endpoint_uuid, fields in data.items():
            if not isinstance(fields, Mapping):
                raise ConfigurationError(
                    f"Globus endpoint {describe(endpoint_uuid)}: expected a "
                    f"mapping with {', '.join(_FIELDS)}, got {describe(fields)}"
                )
            missing = [field for field in _FIELDS if field not in fields]
            unknown = sorted(str(field) for field in fields if field not in _FIELDS)
            if missing or unknown:
                problems = []
                if missing:
                    problems.append(f"missing {', '.join(missing)}")
                if unknown:
                    problems.append(f"unknown {', '.join(unknown)}")
                raise ConfigurationError(
                    f"Globus endpoint {describe(endpoint_uuid)}: " + "; ".join(problems)
                )
            endpoints.append(GlobusEndpoint(uuid=endpoint_uuid, **fields))
        return cls(endpoints)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> GlobusEndpoints:
        """Build from a JSON file holding the mapping `from_dict` reads.

        Raises:
            ConfigurationError: If the file cannot be read, is not JSON, or
                does not describe valid endpoints.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigurationError(
                f"cannot read Globus endpoints file {os.fspath(path)!r}: {err}"
            ) from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigurationError(
                f"Globus endpoints file {os.fspath(path)!r} is not valid JSON: {err}"
            ) from err
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, dict[str, str]]:
        """Return the JSON-friendly mapping `from_dict` reads."""
        return {uuid_: ep.to_dict() for uuid_, ep in self._endpoints.items()}

    def local(self, hostname: str | None = None) -> GlobusEndpoint:
        """Return the first endpoint whose ``host_regex`` matches this host.

        Args:
            hostname: Host name to match; defaults to `current_hostname()`.

        Raises:
            ConfigurationError: If no endpoint matches, naming the host and
                every pattern tried.
        """
        hostname = current_hostname() if hostname is None else hostname
        for endpoint in self._endpoints.values():
            if endpoint.matches(hostname):
                return endpoint
        tried = ", ".join(repr(ep.host_regex) for ep in self._endpoints.values())
        raise ConfigurationError(
            f"no Globus endpoint matches host name {hostname!r}; host_regex "
            f"patterns tried: {tried} (set {HOSTNAME_ENV} to override the "
            "host name)"
        )

    def get_by_host(self, host: str) -> GlobusEndpoint:
        """Return the first endpoint whose ``host_regex`` matches `host` (0.4's name).

        Raises:
            ConfigurationError: If none matches (a `ValueError`, as in 0.4).
        """
        return self.local(host)

    def dict(self) -> dict[str, dict[str, str]]:
        """Return the mapping `from_dict` reads (0.4's name for `to_dict`)."""
        return self.to_dict()

    def __getitem__(self, endpoint_uuid: str | uuid.UUID) -> GlobusEndpoint:
        try:
            canonical = str(uuid.UUID(str(endpoint_uuid)))
        except ValueError:
            canonical = str(endpoint_uuid)  # a 0.4-style id, kept as written
        try:
            return self._endpoints[canonical]
        except KeyError:
            raise KeyError(f"no endpoint with UUID {canonical!r}") from None

    def __iter__(self) -> Iterator[GlobusEndpoint]:
        return iter(self._endpoints.values())

    def __len__(self) -> int:
        return len(self._endpoints)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GlobusEndpoints):
            return NotImplemented
        return list(self) == list(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"GlobusEndpoints({list(self)!r})"
