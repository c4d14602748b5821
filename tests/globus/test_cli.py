"""``proxystore-globus-auth`` with Globus Auth answered by globus_sdk.testing.

Verified against the SDK's recorded response shapes, not the real service:
that the flow requests refresh tokens (offline access) with PKCE and stores
what Auth returns. Not verified: the browser step and Globus' real consent.
"""

from __future__ import annotations

import stat
import urllib.parse
from pathlib import Path

import pytest
import responses
from globus_sdk.testing import RegisteredResponse, get_last_request, load_response

from proxystore.globus.cli import main
from proxystore.globus.client import TRANSFER_RESOURCE_SERVER
from proxystore.globus.tokens import TokenFile
from tests.globus.harness import TRANSFER_SCOPE, write_login

COLLECTION = "0b9b3c4e-1a1a-4a4a-8a8a-00000000000c"

TOKENS_WITH_REFRESH = RegisteredResponse(
    service="auth",
    path="/v2/oauth2/token",
    method="POST",
    json={
        "access_token": "transfer-access",
        "refresh_token": "transfer-refresh",
        "scope": TRANSFER_SCOPE,
        "expires_in": 172800,
        "token_type": "Bearer",
        "resource_server": TRANSFER_RESOURCE_SERVER,
        "state": "_default",
        "other_tokens": [],
    },
)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def answer_prompt(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt="": code)


def test_login_stores_refresh_tokens_user_only(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    mocked_responses: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_response(TOKENS_WITH_REFRESH)
    answer_prompt(monkeypatch, " the-code \n")

    assert main([]) == 0

    url = capsys.readouterr().out.split("\n\n")[1].strip()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert query["access_type"] == ["offline"]
    assert query["scope"] == [TRANSFER_SCOPE]
    assert "code_challenge" in query
    request = get_last_request()
    assert request is not None
    body = urllib.parse.parse_qs(str(request.body))
    assert body["code"] == ["the-code"]
    assert "code_verifier" in body

    tokens = TokenFile()
    assert tokens.path == home / "globus-tokens.json"
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    data = tokens.load(TRANSFER_RESOURCE_SERVER)
    assert data.refresh_token == "transfer-refresh"


def test_collection_adds_a_data_access_consent(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    mocked_responses: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_response(TOKENS_WITH_REFRESH)
    answer_prompt(monkeypatch, "code")
    assert main(["--collection", COLLECTION]) == 0
    out = urllib.parse.unquote_plus(capsys.readouterr().out)
    assert f"https://auth.globus.org/scopes/{COLLECTION}/data_access" in out


def test_rejected_code_fails_without_storing(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    mocked_responses: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_response("auth.oauth2_exchange_code_for_tokens", case="invalid_grant")
    answer_prompt(monkeypatch, "wrong")
    assert main([]) == 1
    assert "Globus login failed" in capsys.readouterr().err
    assert not TokenFile().exists()


def test_cancelled_prompt(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cancel(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", cancel)
    assert main([]) == 1


def test_delete(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = write_login(home / "globus-tokens.json")
    assert main(["--delete"]) == 0
    assert not tokens.exists()
    assert "Deleted" in capsys.readouterr().out
    assert main(["--delete"]) == 0
    assert "No Globus tokens" in capsys.readouterr().out


def test_token_file_option(tmp_path: Path) -> None:
    tokens = write_login(tmp_path / "elsewhere.json")
    assert main(["--delete", "--token-file", str(tokens.path)]) == 0
    assert not tokens.exists()
