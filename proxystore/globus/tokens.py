"""Where the Globus login (refresh tokens) lives on disk, and reading it back.

Tokens are kept with globus-sdk's own `JSONTokenStorage` in
``$PROXYSTORE_HOME/globus-tokens.json``; ``PROXYSTORE_HOME`` defaults to
``$XDG_DATA_HOME/proxystore`` (``~/.local/share/proxystore`` when
``XDG_DATA_HOME`` is unset). The file is readable by its owner only (0600),
in a directory only its owner can enter (0700).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from globus_sdk import OAuthTokenResponse
from globus_sdk.token_storage import JSONTokenStorage, TokenStorageData

from proxystore.exceptions import ConfigurationError

HOME_ENV = "PROXYSTORE_HOME"
"""Environment variable naming proxystore's per-user data directory."""

TOKENS_FILENAME = "globus-tokens.json"
LOGIN_COMMAND = "proxystore-globus-auth"


def proxystore_home() -> Path:
    """Return proxystore's per-user data directory (not created here)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData/Local")
        return Path(base) / "proxystore"
    data_home = os.environ.get("XDG_DATA_HOME")
    base_dir = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base_dir / "proxystore"


def default_token_file() -> Path:
    """Return the token file's path under `proxystore_home()`."""
    return proxystore_home() / TOKENS_FILENAME


def _storage(path: Path) -> JSONTokenStorage:
    return JSONTokenStorage(path, namespace="proxystore")


class TokenFile:
    """The Globus tokens of one login, stored in a user-only JSON file.

    Args:
        path: Token file; defaults to `default_token_file()` resolved now.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_token_file()

    def exists(self) -> bool:
        """Return whether a token file is present."""
        return self.path.is_file()

    def save(self, response: OAuthTokenResponse) -> None:
        """Store (or update) the tokens of a login or refresh response.

        Also used as the ``on_refresh`` callback of a
        `globus_sdk.RefreshTokenAuthorizer`, so refreshed access tokens persist;
        a response without a refresh token keeps the stored one.

        Raises:
            ConfigurationError: If an existing token file is not one this
                module wrote.
        """
        # Made here first so the SDK, which creates missing parents with the
        # default mode, finds a directory only the user can enter.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            storage = _storage(self.path)
            stored = storage.get_token_data_by_resource_server()
            storage.store_token_data_by_resource_server(
                {
                    server: _token_data(tokens, stored.get(server))
                    for server, tokens in response.by_resource_server.items()
                }
            )
        except ValueError as err:
            raise ConfigurationError(
                f"cannot update Globus token file {self.path} ({err}); "
                f"run `{LOGIN_COMMAND} --delete` then `{LOGIN_COMMAND}`"
            ) from err
        # The SDK's umask only applies on creation; an older file keeps its mode.
        os.chmod(self.path, 0o600)

    def load(self, resource_server: str) -> TokenStorageData:
        """Return the stored tokens for ``resource_server``.

        Raises:
            ConfigurationError: If there is no login, or it lacks a refresh
                token for ``resource_server``; the message says to run
                ``proxystore-globus-auth``.
        """
        if not self.exists():
            raise ConfigurationError(
                f"no Globus login found (expected tokens in {self.path}); "
                f"run `{LOGIN_COMMAND}` to log in"
            )
        try:
            data = _storage(self.path).get_token_data(resource_server)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigurationError(
                f"Globus token file {self.path} is unreadable ({err}); "
                f"run `{LOGIN_COMMAND} --delete` then `{LOGIN_COMMAND}`"
            ) from err
        if data is None or not data.refresh_token:
            raise ConfigurationError(
                f"the Globus login in {self.path} has no refresh token for "
                f"{resource_server}; run `{LOGIN_COMMAND}` to log in again"
            )
        return data

    def delete(self) -> bool:
        """Remove the token file; return whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def _token_data(
    tokens: Mapping[str, Any], stored: TokenStorageData | None
) -> TokenStorageData:
    refresh_token = tokens.get("refresh_token")
    if not refresh_token and stored is not None:
        # Refresh grant responses may omit the (unchanged) refresh token.
        refresh_token = stored.refresh_token
    return TokenStorageData(
        resource_server=tokens["resource_server"],
        identity_id=stored.identity_id if stored is not None else None,
        scope=tokens["scope"],
        access_token=tokens["access_token"],
        refresh_token=refresh_token,
        expires_at_seconds=tokens["expires_at_seconds"],
        token_type=tokens.get("token_type"),
    )
