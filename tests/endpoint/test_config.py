from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from proxystore.endpoint.cli import main
from proxystore.endpoint.config import (
    EndpointConfig,
    find_config,
    home_dir,
    list_configs,
    new_config,
    read_config,
    remove_config,
    write_config,
)
from proxystore.exceptions import ConfigurationError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path))
    return tmp_path


def test_home_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROXYSTORE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home_dir() == tmp_path / "xdg" / "proxystore"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert home_dir() == Path.home() / ".local" / "share" / "proxystore"
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path / "ps"))
    assert home_dir() == tmp_path / "ps"


def test_write_read_round_trip_and_private_file(home: Path) -> None:
    config = new_config("site-a", signaling_server="ws://127.0.0.1:1", secret="s")
    path = write_config(config)
    assert path == home / "endpoints" / "site-a" / "endpoint.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_config("site-a") == config
    assert config.port > 0
    assert find_config(config.uuid) == config
    assert find_config("site-a") == config
    assert list_configs() == [config]
    remove_config("site-a")
    assert list_configs() == []


def test_unknown_endpoint_is_a_clear_error(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="no endpoint named 'nope'"):
        read_config("nope")
    with pytest.raises(ConfigurationError, match="no endpoint with name or uuid"):
        find_config("nope")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-lead", "x" * 65])
def test_bad_names_are_refused(name: str, home: Path) -> None:
    with pytest.raises(ConfigurationError, match="invalid endpoint name"):
        new_config(name)


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="invalid uuid"):
        EndpointConfig(name="a", uuid="nope")
    with pytest.raises(ConfigurationError, match="needs the signaling server's secret"):
        new_config("a", signaling_server="ws://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="ws:// or wss://"):
        new_config("a", signaling_server="http://127.0.0.1:1", secret="s")
    with pytest.raises(ConfigurationError, match="unknown endpoint configuration"):
        EndpointConfig.from_json({"name": "a", "uuid": "x", "colour": "red"})


def test_corrupt_config_file_is_reported(home: Path) -> None:
    directory = home / "endpoints" / "broken"
    directory.mkdir(parents=True)
    (directory / "endpoint.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot read endpoint config"):
        read_config("broken")
    assert list_configs() == []


def test_limit_values_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="max_spill -1 is negative"):
        new_config("a", max_spill=-1)
    with pytest.raises(ConfigurationError, match="below max_connections 10"):
        new_config("a", max_requests=10, max_connections=10)
    with pytest.raises(ConfigurationError, match="max_requests 0 must be positive"):
        new_config("a", max_requests=0)
    config = new_config("a", max_spill=0, max_requests=1, max_connections=2)
    assert EndpointConfig.from_json(config.to_json()) == config


def test_configure_writes_limits_token_and_default_spill_dir(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--max-spill", "2G", "--max-connections", "40", "--max-requests", "9"]
    assert main(["configure", "lim", *options]) == 0
    config = read_config("lim")
    assert config.max_spill == 2 * 1024**3
    assert (config.max_connections, config.max_requests) == (40, 9)
    assert config.spill_dir == str(home / "endpoints" / "lim" / "spill")
    assert (home / "endpoints" / "lim" / "api-token").stat().st_mode & 0o777 == 0o600
    assert main(["configure", "bad", "--max-requests", "500"]) == 1
    assert "below max_connections 256" in capsys.readouterr().err
    assert not (home / "endpoints" / "bad").exists()
