"""The api-token file and Bearer header helpers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from proxystore.endpoint.credentials import (
    authorization_header,
    create_api_token,
    presented_token,
    read_api_token,
    token_matches,
    token_path,
)
from proxystore.exceptions import ConfigurationError


def test_token_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = create_api_token(tmp_path / "site")
    finally:
        os.umask(old)
    assert path == token_path(tmp_path / "site")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = read_api_token(path)
    assert len(bytes.fromhex(token)) == 32
    assert create_api_token(tmp_path / "site") == path
    assert read_api_token(path) != token
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["api-token"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "64 lower-case hex"), ("ab" * 31, "64 lower-case hex"), ("AB" * 32, "hex")],
)
def test_malformed_token_file_is_refused(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "api-token"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match=reason):
        read_api_token(path)


def test_symlinked_or_missing_token_file_is_refused(tmp_path: Path) -> None:
    real = create_api_token(tmp_path / "real")
    link = tmp_path / "api-token"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match="cannot read API token file"):
        read_api_token(link)
    with pytest.raises(ConfigurationError, match="no API token file"):
        read_api_token(tmp_path / "absent" / "api-token")


def test_bearer_header_parsing_and_comparison() -> None:
    token = "ab" * 32
    assert presented_token(authorization_header(token)) == token
    assert presented_token(f"bearer  {token} ") == token
    for header in (None, "", "Bearer", "Bearer  ", f"Basic {token}", token):
        assert presented_token(header) is None
    assert token_matches(token, token)
    assert not token_matches(token, "ab" * 31)
    assert not token_matches(token, "é" * 64)
