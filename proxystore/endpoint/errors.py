"""Carrying proxystore errors across HTTP and peer messages as JSON.

The endpoint server and its peers report failures as a small JSON object
(``{"error": <class name>, "message": ..., <fields>}``) so the client on the
other side can raise the same exception class, never by pickling exceptions.
"""

from __future__ import annotations

from typing import Any

from proxystore.exceptions import (
    AuthenticationError,
    InvalidKeyError,
    LimitExceededError,
    PeerConnectionError,
    PeerError,
    PeerUnknownError,
    ProxyStoreError,
    StoreConnectionError,
    StoreOperationError,
    StoreTimeoutError,
)


def error_to_json(error: BaseException) -> dict[str, Any]:
    """Describe ``error`` as JSON that :func:`error_from_json` turns back."""
    data: dict[str, Any] = {"error": type(error).__name__, "message": str(error)}
    if isinstance(error, PeerUnknownError):
        data["peer"] = error.peer
    elif isinstance(error, StoreConnectionError):
        data["target"] = error.target
        data["detail"] = _detail(error)
    elif isinstance(error, StoreTimeoutError):
        data["target"] = error.target
        data["timeout"] = error.timeout
    elif isinstance(error, InvalidKeyError):
        data["key"] = str(error.key)
        data["reason"] = error.reason
    elif isinstance(error, LimitExceededError):
        data["limit"] = error.limit
    return data


def error_from_json(data: dict[str, Any]) -> ProxyStoreError:
    """Rebuild the exception described by :func:`error_to_json` output.

    Unknown or malformed descriptions become `StoreOperationError` carrying
    the message, so a newer server never crashes an older client.
    """
    kind = data.get("error")
    message = str(data.get("message", "unknown error"))
    try:
        if kind == "PeerUnknownError":
            return PeerUnknownError(str(data["peer"]))
        if kind == "PeerConnectionError":
            return PeerConnectionError(str(data["target"]), str(data["detail"]))
        if kind == "StoreConnectionError":
            return StoreConnectionError(str(data["target"]), str(data["detail"]))
        if kind == "StoreTimeoutError":
            error = StoreTimeoutError(str(data["target"]), float(data["timeout"]))
            error.args = (message,)
            return error
        if kind == "InvalidKeyError":
            return InvalidKeyError(data["key"], str(data["reason"]))
        if kind == "PeerError":
            return PeerError(message)
        if kind == "LimitExceededError":
            return LimitExceededError(str(data["limit"]), message)
        if kind == "AuthenticationError":
            return AuthenticationError(message)
    except (KeyError, TypeError, ValueError):
        pass
    return StoreOperationError(message)


def _detail(error: StoreConnectionError) -> str:
    message = str(error)
    prefix = f"cannot reach {error.target}: "
    return message[len(prefix) :] if message.startswith(prefix) else ""
