"""The peer allowlist: which endpoints this endpoint talks to (``peers.allow``).

One UUID per line, ``#`` starts a comment. A missing or empty file allows no
peer at all; the line ``*`` allows any endpoint that proves its key. A
running endpoint re-reads the file when it changes, so ``proxystore-endpoint
peers add`` takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from proxystore.exceptions import ConfigurationError

PEERS_FILE = "peers.allow"
ANY_PEER = "*"


def parse_peer(text: str) -> str:
    """Return ``text`` as a canonical UUID or ``*``.

    Raises:
        ConfigurationError: If it is neither.
    """
    text = text.strip()
    if text == ANY_PEER:
        return ANY_PEER
    try:
        return str(uuid.UUID(text))
    except ValueError as err:
        raise ConfigurationError(
            f"peer {text!r} is not an endpoint uuid (or '*' for any)"
        ) from err


def read_peers(path: Path) -> list[str]:
    """Return the entries of an allowlist file (missing file: none).

    Raises:
        ConfigurationError: If a line is neither a UUID nor ``*``.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigurationError(f"cannot read peer allowlist {path}: {err}") from err
    peers: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            peer = parse_peer(entry)
        except ConfigurationError as err:
            raise ConfigurationError(f"{path}:{number}: {err}") from None
        if peer not in peers:
            peers.append(peer)
    return peers


def write_peers(path: Path, peers: Iterable[str]) -> None:
    """Replace the allowlist file with ``peers`` (atomically, mode 0600)."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("# endpoints allowed to peer with this one: uuid, or * for any\n")
        for peer in peers:
            file.write(f"{peer}\n")
    os.replace(temp, path)


class PeerAllowlist:
    """The allowlist of a running endpoint, re-read when its file changes.

    Args:
        path: The ``peers.allow`` file, or None for a fixed list.
        peers: The fixed list when ``path`` is None.
    """

    def __init__(self, path: Path | None = None, peers: Iterable[str] = ()) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._peers = frozenset(parse_peer(p) for p in peers)
        if path is not None:
            self._reload()

    @classmethod
    def any(cls) -> PeerAllowlist:
        """Return an allowlist admitting every endpoint that proves its key."""
        return cls(peers=[ANY_PEER])

    def _reload(self) -> None:
        assert self._path is not None
        try:
            info = self._path.stat()
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp:
            self._peers = frozenset(read_peers(self._path))
            self._stamp = stamp

    def allows(self, peer_uuid: str) -> bool:
        """Return whether ``peer_uuid`` may connect, be served and be asked.

        A file that became unreadable or invalid keeps the last good list.
        """
        if self._path is not None:
            with contextlib.suppress(ConfigurationError):
                self._reload()
        return ANY_PEER in self._peers or peer_uuid in self._peers

    def __call__(self, peer_uuid: str) -> bool:
        """Same as `allows`, so an allowlist is a ``Callable[[str], bool]``."""
        return self.allows(peer_uuid)
