"""Building the globus-sdk clients a `GlobusStore` and the login CLI use."""

from __future__ import annotations

import os

import globus_sdk
from globus_sdk.scopes import GCSCollectionScopes, Scope, TransferScopes

from proxystore.globus.tokens import TokenFile

CLIENT_ID_ENV = "PROXYSTORE_GLOBUS_CLIENT_ID"
"""Environment variable overriding the native app client ID used to log in."""

DEFAULT_CLIENT_ID = "a3379dba-a492-459a-a8df-5e7676a0472f"
"""The ProxyStore native app registered with Globus Auth."""

TRANSFER_RESOURCE_SERVER = TransferScopes.resource_server


def client_id() -> str:
    """Return the native app client ID (``PROXYSTORE_GLOBUS_CLIENT_ID`` or ours)."""
    return os.environ.get(CLIENT_ID_ENV) or DEFAULT_CLIENT_ID


def native_app_client(
    app_client_id: str | None = None,
) -> globus_sdk.NativeAppAuthClient:
    """Return the Globus Auth client of the ProxyStore native app."""
    return globus_sdk.NativeAppAuthClient(
        app_client_id or client_id(), app_name="proxystore"
    )


def transfer_scope(collections: list[str] | tuple[str, ...] = ()) -> Scope:
    """Return the Transfer scope, with data_access consents for GCS collections.

    Globus Connect Server v5 mapped collections require a ``data_access``
    consent per collection, requested as a dependency of the Transfer scope.
    """
    scope = TransferScopes.all
    if collections:
        scope = scope.with_dependencies(
            GCSCollectionScopes(collection).data_access.with_optional(True)
            for collection in collections
        )
    return scope


def transfer_client_from_login(
    token_file: TokenFile | None = None,
    *,
    base_url: str | None = None,
    auth_client: globus_sdk.AuthLoginClient | None = None,
) -> globus_sdk.TransferClient:
    """Return a `TransferClient` authorized by the stored login.

    The client uses a `globus_sdk.RefreshTokenAuthorizer`: access tokens are
    refreshed automatically when they expire and the refreshed tokens are
    written back to the token file.

    Args:
        token_file: Where the login is stored; defaults to `TokenFile()`.
        base_url: Transfer API base URL; the SDK's default (the Globus
            service, or ``GLOBUS_SDK_SERVICE_URL_TRANSFER``) when None.
        auth_client: Client used to refresh tokens; defaults to
            `native_app_client()`.

    Raises:
        ConfigurationError: If there is no usable login; the message tells the
            user to run ``proxystore-globus-auth``.
    """
    tokens = token_file if token_file is not None else TokenFile()
    data = tokens.load(TRANSFER_RESOURCE_SERVER)
    assert data.refresh_token is not None  # TokenFile.load checks it
    authorizer = globus_sdk.RefreshTokenAuthorizer(
        data.refresh_token,
        auth_client if auth_client is not None else native_app_client(),
        access_token=data.access_token,
        expires_at=data.expires_at_seconds,
        on_refresh=tokens.save,
    )
    return globus_sdk.TransferClient(authorizer=authorizer, base_url=base_url)
