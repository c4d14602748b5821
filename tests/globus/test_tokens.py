"""Token storage on disk; no Globus service involved."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from proxystore.exceptions import ConfigurationError
from proxystore.globus.client import TRANSFER_RESOURCE_SERVER
from proxystore.globus.tokens import (
    TOKENS_FILENAME,
    TokenFile,
    default_token_file,
    proxystore_home,
)
from tests.globus.harness import token_response, write_login


def test_home_honours_proxystore_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path / "ps"))
    assert proxystore_home() == tmp_path / "ps"
    assert default_token_file() == tmp_path / "ps" / TOKENS_FILENAME


def test_home_defaults_to_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROXYSTORE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert proxystore_home() == tmp_path / "data" / "proxystore"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert proxystore_home() == tmp_path / "home" / ".local" / "share" / "proxystore"


def test_save_is_user_only_and_loads_back(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "new" / "tokens.json")
    tokens.save(token_response(refresh_token="refresh-1"))
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.path.parent.stat().st_mode) == 0o700
    data = tokens.load(TRANSFER_RESOURCE_SERVER)
    assert data.refresh_token == "refresh-1"


def test_save_tightens_an_existing_file(tmp_path: Path) -> None:
    tokens = write_login(tmp_path / "tokens.json")
    tokens.path.chmod(0o644)
    tokens.save(token_response(access_token="refreshed"))
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert tokens.load(TRANSFER_RESOURCE_SERVER).access_token == "refreshed"


def test_missing_login_says_how_to_log_in(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "absent.json")
    with pytest.raises(ConfigurationError, match="run `proxystore-globus-auth`"):
        tokens.load(TRANSFER_RESOURCE_SERVER)
    assert not (tmp_path / "absent.json").exists()


def test_login_without_refresh_token_is_refused(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    tokens.save(token_response(refresh_token=None))
    with pytest.raises(ConfigurationError, match="no refresh token"):
        tokens.load(TRANSFER_RESOURCE_SERVER)


def test_corrupt_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="unreadable"):
        TokenFile(path).load(TRANSFER_RESOURCE_SERVER)
    with pytest.raises(ConfigurationError, match="--delete"):
        TokenFile(path).save(token_response())


def test_delete(tmp_path: Path) -> None:
    tokens = write_login(tmp_path / "tokens.json")
    assert tokens.delete()
    assert not tokens.exists()
    assert not tokens.delete()
