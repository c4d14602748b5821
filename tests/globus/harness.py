"""Helpers shared by the Globus tests: logins, endpoints and "hosts"."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
import requests

from proxystore.globus.client import native_app_client
from proxystore.globus.endpoints import GlobusEndpoint, GlobusEndpoints
from proxystore.globus.tokens import TokenFile

TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"


def token_response(
    *,
    access_token: str = "access-token",
    refresh_token: str | None = "refresh-token",
    expires_in: int = 3600,
) -> globus_sdk.OAuthTokenResponse:
    """An OAuthTokenResponse as Globus Auth would send it for the Transfer scope."""
    body: dict[str, Any] = {
        "access_token": access_token,
        "scope": TRANSFER_SCOPE,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "resource_server": "transfer.api.globus.org",
        "other_tokens": [],
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    raw = requests.Response()
    raw.status_code = 200
    raw.headers["Content-Type"] = "application/json"
    raw._content = json.dumps(body).encode()
    return globus_sdk.OAuthTokenResponse(raw, client=native_app_client())


def write_login(
    path: Path, *, access_token: str = "access-token", expired: bool = False
) -> TokenFile:
    """Store a login as `proxystore-globus-auth` would, without Globus."""
    tokens = TokenFile(path)
    tokens.save(
        token_response(access_token=access_token, expires_in=-60 if expired else 3600)
    )
    return tokens


def two_endpoints(root: Path) -> tuple[GlobusEndpoints, dict[str, Path]]:
    """Endpoints for host-a and host-b whose file systems are under ``root``.

    Returns the endpoints and the emulator roots (UUID -> directory).
    """
    endpoints = []
    roots = {}
    for host in ("a", "b"):
        endpoint_uuid = str(uuid.uuid4())
        roots[endpoint_uuid] = root / f"fs-{host}"
        endpoints.append(
            GlobusEndpoint(
                uuid=endpoint_uuid,
                endpoint_path="/proxystore",
                local_path=str(root / f"fs-{host}" / "proxystore"),
                host_regex=f"host-{host}",
            )
        )
    return GlobusEndpoints(endpoints), roots
