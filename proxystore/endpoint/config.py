"""Endpoint configuration: where it lives on disk, and reading and writing it.

Each endpoint owns a directory ``$PROXYSTORE_HOME/endpoints/NAME/`` holding its
configuration (``endpoint.json``), its pid file while running, and its log.
``$PROXYSTORE_HOME`` defaults to ``$XDG_DATA_HOME/proxystore`` (itself
defaulting to ``~/.local/share``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from proxystore.exceptions import ConfigurationError

CONFIG_FILE = "endpoint.json"
PID_FILE = "endpoint.pid"
LOG_FILE = "endpoint.log"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_OBJECT_SIZE = 1024**3
DEFAULT_PEER_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_REQUESTS = 128

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def home_dir() -> Path:
    """Return the per-user proxystore data directory.

    ``$PROXYSTORE_HOME`` wins; otherwise ``$XDG_DATA_HOME/proxystore``, with
    ``XDG_DATA_HOME`` defaulting to ``~/.local/share`` as the XDG spec says.
    """
    explicit = os.environ.get("PROXYSTORE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "proxystore"


def endpoints_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory holding one subdirectory per configured endpoint.

    Args:
        home: Use this instead of `home_dir()` (``~`` is expanded).
    """
    base = home_dir() if home is None else Path(home).expanduser()
    return base / "endpoints"


def validate_name(name: str) -> str:
    """Return ``name`` if it is usable as an endpoint name (and directory name).

    Raises:
        ConfigurationError: If the name is empty, too long, or has characters
            outside ``A-Z a-z 0-9 _ . -`` (or starts with one of ``_.-``).
    """
    if not _NAME_PATTERN.fullmatch(name):
        raise ConfigurationError(
            f"invalid endpoint name {name!r}: use 1-64 characters from "
            "A-Z a-z 0-9 _ . - starting with a letter or digit"
        )
    return name


def endpoint_dir(name: str, home: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory of the endpoint called ``name`` (under `home`)."""
    return endpoints_dir(home) / validate_name(name)


def _is_wildcard(host: str) -> bool:
    if host in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def check_local_address(host: str, option: str = "--host") -> str:
    """Return ``host`` if this host can listen on it.

    Raises:
        ConfigurationError: If ``host`` is not an address of this host (or a
            wildcard) or a name that does not resolve to one.
    """
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise ConfigurationError(f"{option} {host!r} does not resolve: {err}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address[0], 0))
        except OSError as err:
            raise ConfigurationError(
                f"{option} {host!r} is not an address of this host "
                f"(cannot listen on it: {err.strerror or err})"
            ) from None
    return host


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class EndpointConfig:
    """Everything an endpoint needs to start.

    Attributes:
        name: Human-friendly name, unique on this host.
        uuid: Identity of the endpoint among its peers; created once at
            configure time and kept for the endpoint's life.
        host: Address the HTTP API listens on (default loopback: only
            processes on this host use it).
        port: Port the HTTP API listens on.
        signaling_server: ``wss://`` (or, on loopback, ``ws://``) URL of the
            signaling server used to find peers, or ``None`` to serve only
            local objects.
        secret: Shared secret presented to the signaling server; endpoints
            that peer must share it.
        signaling_ca_file: PEM file of the CA(s) trusted for a ``wss://``
            signaling server (``None``: the system trust store).
        max_memory: Bytes of objects kept in memory before new objects spill
            to ``spill_dir`` (``None``: a quarter of physical memory, read
            when the endpoint starts).
        spill_dir: Directory for objects beyond ``max_memory`` (``None``:
            objects beyond it are refused). ``configure`` sets it to
            ``spill/`` in the endpoint's directory.
        max_object_size: Largest request body accepted, in bytes.
        peer_timeout: Seconds to wait to connect to a peer, and the longest a
            transfer with a peer may go without a byte moving (a transfer
            that keeps moving is not cut off by it, whatever its size).
        fast_path: Let peers on reachable hosts use direct TCP instead of a
            WebRTC data channel.
        max_spill: Bytes of objects kept in ``spill_dir`` (``None``: half the
            free space of its file system when the endpoint starts).
        max_connections: Most HTTP connections open at once; at the cap a new
            connection closes the oldest idle one.
        max_requests: Most HTTP requests served at once; more get 429. Must
            be below ``max_connections``.
        fast_path_host: Where the fast-path listener binds: an address of
            this host, a wildcard (``0.0.0.0``), or ``None`` (default): the
            local address of each peer connection's selected ICE candidate
            pair, i.e. the interface peers already reach us through.
        fast_path_port: Port of the fast-path listener (0: a free one).
        peer_deadline: Optional total seconds for one request to a peer
            (``None``: no total deadline).
        fast_path_advertise: Address put in fast-path tickets (``None``:
            ``fast_path_host`` if it is an address, else the local address of
            the selected ICE pair). Never a wildcard.
        persist: Keep every object in ``objects/`` of the endpoint's
            directory, so objects survive a stop, restart or crash (memory is
            then a cache, ``spill_dir`` unused, ``max_spill`` the limit of
            that directory). Default ``False``: objects go with the process.
    """

    name: str
    uuid: str
    host: str = DEFAULT_HOST
    port: int = 0
    signaling_server: str | None = None
    secret: str | None = None
    max_memory: int | None = None
    spill_dir: str | None = None
    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
    peer_timeout: float = DEFAULT_PEER_TIMEOUT
    fast_path: bool = True
    max_spill: int | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_requests: int = DEFAULT_MAX_REQUESTS
    signaling_ca_file: str | None = None
    fast_path_host: str | None = None
    fast_path_port: int = 0
    fast_path_advertise: str | None = None
    peer_deadline: float | None = None
    persist: bool = False

    def __post_init__(self) -> None:
        validate_name(self.name)
        try:
            uuid.UUID(self.uuid)
        except ValueError as err:
            raise ConfigurationError(
                f"endpoint {self.name!r} has an invalid uuid {self.uuid!r}"
            ) from err
        if self.signaling_server is not None:
            if not self.signaling_server.startswith(("ws://", "wss://")):
                raise ConfigurationError(
                    f"signaling server {self.signaling_server!r} must be a "
                    "ws:// or wss:// URL"
                )
            if not self.secret:
                raise ConfigurationError(
                    f"endpoint {self.name!r} needs the signaling server's secret "
                    "to peer (--secret-file or PROXYSTORE_SIGNALING_SECRET)"
                )
        for field in ("port", "fast_path_port"):
            value = getattr(self, field)
            if not 0 <= value <= 65535:
                raise ConfigurationError(f"{field} {value} is not in 0-65535")
        if self.fast_path_advertise is not None and _is_wildcard(
            self.fast_path_advertise
        ):
            raise ConfigurationError(
                f"fast_path_advertise {self.fast_path_advertise!r} is a wildcard: "
                "peers need an address of this host they can connect to"
            )
        if self.max_memory is not None and self.max_memory < 0:
            raise ConfigurationError(f"max_memory {self.max_memory} is negative")
        if self.max_object_size <= 0:
            raise ConfigurationError(
                f"max_object_size {self.max_object_size} must be positive"
            )
        if self.peer_timeout <= 0:
            raise ConfigurationError(
                f"peer_timeout {self.peer_timeout} must be positive"
            )
        if self.peer_deadline is not None and self.peer_deadline <= 0:
            raise ConfigurationError(
                f"peer_deadline {self.peer_deadline} must be positive"
            )
        if self.max_spill is not None and self.max_spill < 0:
            raise ConfigurationError(f"max_spill {self.max_spill} is negative")
        if not 0 < self.max_requests < self.max_connections:
            # Busy connections then never fill the cap, so a new connection
            # can always be admitted by closing an idle one.
            raise ConfigurationError(
                f"max_requests {self.max_requests} must be positive and below "
                f"max_connections {self.max_connections}"
            )

    @property
    def url(self) -> str:
        """HTTP URL of the endpoint's server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        """Return the configuration as a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndpointConfig:
        """Build a configuration from :meth:`to_json` output.

        Raises:
            ConfigurationError: If fields are missing, unknown, or invalid.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigurationError(
                f"unknown endpoint configuration fields: {sorted(unknown)}"
            )
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigurationError(f"bad endpoint configuration: {err}") from err


def new_config(name: str, **options: Any) -> EndpointConfig:
    """Return a configuration with, if not given, a fresh uuid and a free port.

    Endpoints that peer get their uuid from their identity key
    (`proxystore.endpoint.identity`); ``proxystore-endpoint configure``
    passes it.
    """
    host = options.get("host") or DEFAULT_HOST
    options["host"] = host
    if not options.get("port"):
        options["port"] = free_port(host)
    endpoint_uuid = options.pop("uuid", None) or str(uuid.uuid4())
    return EndpointConfig(name=name, uuid=endpoint_uuid, **options)


def write_config(config: EndpointConfig) -> Path:
    """Write ``config`` to its endpoint directory; return the file written.

    The file is readable by its owner only since it holds the peering secret.
    """
    directory = endpoint_dir(config.name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(config.to_json(), file, indent=2)
    os.replace(temp, path)
    return path


def read_config(
    name: str, home: str | os.PathLike[str] | None = None
) -> EndpointConfig:
    """Read the configuration of the endpoint called ``name``.

    Raises:
        ConfigurationError: If no endpoint of that name is configured or its
            file is unreadable.
    """
    path = endpoint_dir(name, home) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigurationError(
            f"no endpoint named {name!r} is configured (looked for {path})"
        ) from err
    except (OSError, ValueError) as err:
        raise ConfigurationError(f"cannot read endpoint config {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigurationError(f"endpoint config {path} is not a JSON object")
    return EndpointConfig.from_json(data)


def list_configs(home: str | os.PathLike[str] | None = None) -> list[EndpointConfig]:
    """Return the configurations of every endpoint under :func:`endpoints_dir`.

    Directories without a readable configuration are skipped.
    """
    root = endpoints_dir(home)
    if not root.is_dir():
        return []
    configs = []
    for directory in sorted(root.iterdir()):
        if (directory / CONFIG_FILE).is_file():
            try:
                configs.append(read_config(directory.name, home))
            except ConfigurationError:
                continue
    return configs


def find_config(
    name_or_uuid: str, home: str | os.PathLike[str] | None = None
) -> EndpointConfig:
    """Return the configuration of an endpoint given its name or uuid.

    Args:
        name_or_uuid: The endpoint's name or uuid.
        home: Look under this ``$PROXYSTORE_HOME`` instead of `home_dir()`.

    Raises:
        ConfigurationError: If no configured endpoint matches.
    """
    if (
        _NAME_PATTERN.fullmatch(name_or_uuid)
        and (endpoint_dir(name_or_uuid, home) / CONFIG_FILE).is_file()
    ):
        return read_config(name_or_uuid, home)
    for config in list_configs(home):
        if config.uuid == name_or_uuid:
            return config
    raise ConfigurationError(
        f"no endpoint with name or uuid {name_or_uuid!r} is configured "
        f"under {endpoints_dir(home)}"
    )


def remove_config(name: str) -> None:
    """Delete the directory of the endpoint called ``name``.

    Raises:
        ConfigurationError: If no endpoint of that name is configured.
    """
    directory = endpoint_dir(name)
    if not (directory / CONFIG_FILE).is_file():
        raise ConfigurationError(f"no endpoint named {name!r} is configured")
    shutil.rmtree(directory)
