from __future__ import annotations

import pytest

from proxystore.endpoint.errors import error_from_json, error_to_json
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


@pytest.mark.parametrize(
    "error",
    [
        PeerUnknownError("b2c0"),
        PeerConnectionError("peer-1", "went away"),
        StoreConnectionError("127.0.0.1:9", "refused"),
        StoreTimeoutError("peer-1", 2.5, "get"),
        InvalidKeyError("a/b", "bad chars"),
        StoreOperationError("disk full"),
        PeerError("handler of peer x failed"),
        LimitExceededError("max_spill", "full"),
        AuthenticationError("wrong API token"),
    ],
)
def test_round_trip_keeps_class_and_message(error: ProxyStoreError) -> None:
    rebuilt = error_from_json(error_to_json(error))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_unknown_or_malformed_description_becomes_operation_error() -> None:
    assert isinstance(
        error_from_json({"error": "Nope", "message": "m"}), StoreOperationError
    )
    rebuilt = error_from_json({"error": "PeerUnknownError", "message": "m"})
    assert isinstance(rebuilt, StoreOperationError)
    assert str(rebuilt) == "m"


def test_limit_name_survives_the_round_trip() -> None:
    rebuilt = error_from_json(error_to_json(LimitExceededError("max_requests", "m")))
    assert isinstance(rebuilt, LimitExceededError)
    assert rebuilt.limit == "max_requests"
    malformed = error_from_json({"error": "LimitExceededError", "message": "m"})
    assert type(malformed) is StoreOperationError
