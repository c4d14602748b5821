"""Transfer helpers against globus_sdk.testing's recorded Transfer responses.

Verified: the request shapes we send (one task per destination, paths joined
under each endpoint_path, sync level, ignore_missing deletes) and how we read
task documents and API errors, as far as the SDK's recorded fixtures and the
documented task fields go. Not verified: the real service's behaviour.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import globus_sdk
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, get_last_request, load_response
from globus_sdk.transport import RetryConfig

from proxystore.exceptions import (
    ConfigurationError,
    StoreConnectionError,
    StoreOperationError,
)
from proxystore.globus.endpoints import GlobusEndpoint
from proxystore.globus.transfer import get_task_state, submit_copies, submit_deletes

A = GlobusEndpoint("0b9b3c4e-1a1a-4a4a-8a8a-00000000000a", "/~/ps/", "/l/a", "a")
B = GlobusEndpoint("0b9b3c4e-1a1a-4a4a-8a8a-00000000000b", "/data/ps", "/l/b", "b")
C = GlobusEndpoint("0b9b3c4e-1a1a-4a4a-8a8a-00000000000c", "/c", "/l/c", "c")
TASK = "42b4fb5e-a6f2-11ee-9f5d-0242ac110002"


@pytest.fixture
def client(mocked_responses: responses.RequestsMock) -> globus_sdk.TransferClient:
    return globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer("token"),
        retry_config=RetryConfig(max_retries=0),
    )


def task_response(status: str, **fields: Any) -> RegisteredResponse:
    return RegisteredResponse(
        service="transfer",
        path=f"/v0.10/task/{TASK}",
        json={"DATA_TYPE": "task", "task_id": TASK, "status": status, **fields},
    )


def sent_json() -> dict[str, Any]:
    request = get_last_request()
    assert request is not None
    assert request.body is not None
    assert isinstance(request.body, (str, bytes))
    return json.loads(request.body)  # type: ignore[no-any-return]


def test_submit_copies_one_task_per_destination(
    client: globus_sdk.TransferClient,
) -> None:
    load_response("transfer.get_submission_id")
    submitted = load_response("transfer.submit_transfer")

    task_ids = submit_copies(
        client, A, [B, C], ["f1", "f2"], sync_level="checksum", label="ps/x set!"
    )

    assert task_ids == [submitted.metadata["task_id"]] * 2
    body = sent_json()
    assert body["source_endpoint"] == A.uuid
    assert body["destination_endpoint"] == C.uuid
    assert body["sync_level"] == 3
    assert body["label"] == "ps-x set-"
    assert [(i["source_path"], i["destination_path"]) for i in body["DATA"]] == [
        ("/~/ps/f1", "/c/f1"),
        ("/~/ps/f2", "/c/f2"),
    ]


def test_submit_refused(client: globus_sdk.TransferClient) -> None:
    load_response("transfer.get_submission_id")
    load_response("transfer.submit_transfer", case="failure")
    with pytest.raises(StoreOperationError, match="NoTransferItems") as info:
        submit_copies(client, A, [B], ["f"], sync_level="mtime", label="x")
    assert isinstance(info.value.__cause__, globus_sdk.TransferAPIError)


def test_submit_deletes(client: globus_sdk.TransferClient) -> None:
    load_response("transfer.get_submission_id")
    submitted = load_response("transfer.submit_delete")
    assert submit_deletes(client, [B], "f1", label="x") == [
        submitted.metadata["task_id"]
    ]
    body = sent_json()
    assert body["endpoint"] == B.uuid
    assert body["ignore_missing"] is True
    assert [item["path"] for item in body["DATA"]] == ["/data/ps/f1"]


def test_task_state_active_then_succeeded(client: globus_sdk.TransferClient) -> None:
    # `responses` answers repeated requests with the registered responses in order.
    load_response(task_response("ACTIVE", destination_endpoint_id=B.uuid.upper()))
    load_response(task_response("SUCCEEDED", destination_endpoint_id=B.uuid))
    first = get_task_state(client, TASK)
    assert (first.status, first.destination) == ("ACTIVE", B.uuid)
    assert get_task_state(client, TASK).status == "SUCCEEDED"


def test_failed_task_names_the_task_and_reason(
    client: globus_sdk.TransferClient,
) -> None:
    load_response(
        task_response(
            "FAILED",
            fatal_error={"code": "EXPIRED", "description": "deadline passed"},
        )
    )
    state = get_task_state(client, TASK)
    assert state.status == "FAILED"
    message = str(state.failure())
    assert TASK in message
    assert "EXPIRED: deadline passed" in message


def test_unknown_task(client: globus_sdk.TransferClient) -> None:
    load_response(
        RegisteredResponse(
            service="transfer",
            path=f"/v0.10/task/{TASK}",
            status=404,
            json={"code": "ClientError.NotFound", "message": "not found"},
        )
    )
    with pytest.raises(StoreOperationError, match=f"{TASK} is unknown"):
        get_task_state(client, TASK)


def test_rejected_token_asks_to_log_in_again(client: globus_sdk.TransferClient) -> None:
    load_response(
        RegisteredResponse(
            service="transfer",
            path=f"/v0.10/task/{TASK}",
            status=401,
            json={"code": "AuthenticationFailed", "message": "Token is not active"},
        )
    )
    with pytest.raises(ConfigurationError, match="proxystore-globus-auth"):
        get_task_state(client, TASK)


def test_unreachable_service() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer("token"),
        base_url=f"http://127.0.0.1:{port}/",
        retry_config=RetryConfig(max_retries=0),
    )
    with pytest.raises(StoreConnectionError, match=f"127.0.0.1:{port}"):
        get_task_state(client, TASK)
