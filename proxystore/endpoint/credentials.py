"""The endpoint's API token: the credential every HTTP request carries.

``$PROXYSTORE_HOME/endpoints/NAME/api-token`` holds 64 hex characters (32
random bytes) and a newline, readable by its owner only. The endpoint refuses
to start when the file is missing or readable by group or others; clients on
the same host (`EndpointStore`) read it from there, so whoever can read the
endpoint's configuration directory can use the endpoint and nobody else can.

Dependency-free (standard library only): the `EndpointStore` driver imports it.
"""

from __future__ import annotations

import hmac
import os
import re
import stat
from pathlib import Path

from proxystore.exceptions import ConfigurationError

API_TOKEN_FILE = "api-token"
TOKEN_BYTES = 32
AUTHORIZATION_SCHEME = "Bearer"

_TOKEN_PATTERN = re.compile(f"[0-9a-f]{{{2 * TOKEN_BYTES}}}")


def token_path(directory: Path | str) -> Path:
    """Return the path of the API token file in an endpoint's directory."""
    return Path(directory) / API_TOKEN_FILE


def create_api_token(directory: Path | str) -> Path:
    """Write a fresh random token to ``directory/api-token`` (mode 0600).

    An existing token is replaced (atomically), which revokes it: running
    endpoints keep the token they read at start until restarted.

    Returns:
        The path of the token file.
    """
    path = token_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{API_TOKEN_FILE}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # The mode given to open() is masked by the umask; set it exactly.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(os.urandom(TOKEN_BYTES).hex() + "\n")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, path)
    return path


def read_api_token(path: Path | str) -> str:
    """Return the token stored at ``path`` after checking the file is private.

    Raises:
        ConfigurationError: If the file is missing, unreadable, readable or
            writable by group or others, or does not hold a well-formed token.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ConfigurationError(
            f"no API token file {path}; create one with "
            f"`proxystore-endpoint rotate-token {path.parent.name}`"
        ) from None
    except OSError as err:
        raise ConfigurationError(f"cannot read API token file {path}: {err}") from err
    with os.fdopen(fd) as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"API token file {path} is not a regular file")
        if mode & 0o077:
            raise ConfigurationError(
                f"API token file {path} has mode {stat.S_IMODE(mode):04o}: it must "
                f"not be accessible by group or others (run: chmod 600 {path})"
            )
        text = file.read(4 * TOKEN_BYTES)
    token = text.strip()
    if not _TOKEN_PATTERN.fullmatch(token):
        raise ConfigurationError(
            f"API token file {path} does not hold {2 * TOKEN_BYTES} lower-case "
            "hex characters"
        )
    return token


def authorization_header(token: str) -> str:
    """Return the ``Authorization`` header value presenting ``token``."""
    return f"{AUTHORIZATION_SCHEME} {token}"


def presented_token(header: str | None) -> str | None:
    """Return the token of a ``Bearer`` ``Authorization`` header, else ``None``."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != AUTHORIZATION_SCHEME.lower():
        return None
    token = token.strip()
    return token or None


def token_matches(expected: str, presented: str) -> bool:
    """Compare tokens in time independent of where they differ."""
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))
