"""Blocking Globus Transfer calls used by `GlobusStore`, with errors translated.

Each function makes one or a few globus-sdk calls; the store runs them off the
event loop. globus-sdk errors become proxystore errors (see `translate_errors`).
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, NamedTuple

import globus_sdk

from proxystore.exceptions import (
    ConfigurationError,
    StoreConnectionError,
    StoreOperationError,
)
from proxystore.globus.endpoints import GlobusEndpoint
from proxystore.globus.tokens import LOGIN_COMMAND

SyncLevel = Literal["exists", "size", "mtime", "checksum"]
SYNC_LEVELS: tuple[SyncLevel, ...] = ("exists", "size", "mtime", "checksum")

_LABEL_REFUSED = re.compile(r"[^A-Za-z0-9 _,-]")


@contextmanager
def translate_errors(client: globus_sdk.TransferClient, action: str) -> Iterator[None]:
    """Turn globus-sdk errors raised while doing ``action`` into proxystore errors.

    A refused or expired login (token refresh fails, or Transfer answers 401)
    becomes a `ConfigurationError` telling the user to log in again; network
    failures a `StoreConnectionError`; other API errors a `StoreOperationError`.
    """
    try:
        yield
    except globus_sdk.AuthAPIError as err:
        raise ConfigurationError(
            f"Globus login was refused while trying to {action} "
            f"({err.http_status} {err.code}: the refresh token expired or was "
            f"revoked); run `{LOGIN_COMMAND}` to log in again"
        ) from err
    except globus_sdk.TransferAPIError as err:
        if err.http_status == 401:
            raise ConfigurationError(
                f"Globus Transfer rejected the login while trying to {action}; "
                f"run `{LOGIN_COMMAND}` to log in again"
            ) from err
        raise StoreOperationError(
            f"Globus Transfer could not {action}: {err.http_status} "
            f"{err.code}: {err.message}"
        ) from err
    except globus_sdk.NetworkError as err:
        raise StoreConnectionError(
            f"Globus Transfer at {client.base_url}", f"while trying to {action}: {err}"
        ) from err


def submit_copies(
    client: globus_sdk.TransferClient,
    source: GlobusEndpoint,
    destinations: Iterable[GlobusEndpoint],
    filenames: Sequence[str],
    *,
    sync_level: SyncLevel,
    label: str,
) -> list[str]:
    """Submit transfers of files to every destination; return the task ids.

    A Globus Transfer task has a single destination endpoint, so this submits
    one task per destination (one in total for a two-endpoint store), each
    carrying every file.
    """
    task_ids = []
    for destination in destinations:
        data = globus_sdk.TransferData(
            source.uuid, destination.uuid, label=_label(label), sync_level=sync_level
        )
        for filename in filenames:
            data.add_item(
                posixpath.join(source.endpoint_path, filename),
                posixpath.join(destination.endpoint_path, filename),
            )
        with translate_errors(client, f"submit a transfer to {destination.uuid}"):
            task_ids.append(str(client.submit_transfer(data)["task_id"]))
    return task_ids


def submit_deletes(
    client: globus_sdk.TransferClient,
    endpoints: Iterable[GlobusEndpoint],
    filename: str,
    *,
    label: str,
) -> list[str]:
    """Submit one delete task per endpoint for ``filename``; return the task ids."""
    task_ids = []
    for endpoint in endpoints:
        data = globus_sdk.DeleteData(
            endpoint.uuid, label=_label(label), ignore_missing=True
        )
        data.add_item(posixpath.join(endpoint.endpoint_path, filename))
        with translate_errors(client, f"submit a delete on {endpoint.uuid}"):
            task_ids.append(str(client.submit_delete(data)["task_id"]))
    return task_ids


class TaskState(NamedTuple):
    """What the store needs to know about a Transfer task."""

    task_id: str
    status: str
    """``ACTIVE``, ``INACTIVE``, ``SUCCEEDED`` or ``FAILED``."""
    destination: str | None
    """Destination endpoint UUID (canonical form), when the service reports it."""
    detail: str
    """Why the task failed or is stalled, as Globus reports it ('' if nothing)."""

    def failure(self) -> StoreOperationError:
        """Return the error that reports this task as FAILED."""
        reason = f" ({self.detail})" if self.detail else ""
        return StoreOperationError(
            f"Globus Transfer task {self.task_id} FAILED{reason}"
        )


def get_task_state(client: globus_sdk.TransferClient, task_id: str) -> TaskState:
    """Return the state of a task.

    Raises:
        StoreOperationError: If the service no longer knows the task (expired
            or never submitted), or refuses the request.
    """
    try:
        with translate_errors(client, f"get the status of task {task_id}"):
            task = client.get_task(task_id)
    except StoreOperationError as err:
        cause = err.__cause__
        if isinstance(cause, globus_sdk.TransferAPIError) and cause.http_status == 404:
            raise StoreOperationError(
                f"Globus Transfer task {task_id} is unknown to the service "
                "(expired or never submitted)"
            ) from cause
        raise
    # Globus reports why in fatal_error (e.g. code EXPIRED once a task's
    # deadline passes); otherwise nice_status says what a task is stuck on.
    fatal = task.get("fatal_error") or {}
    code = fatal.get("code") or task.get("nice_status") or ""
    reason = fatal.get("description") or task.get("nice_status_details") or ""
    detail = f"{code}: {reason}" if code and reason else code or reason
    destination = task.get("destination_endpoint_id")
    return TaskState(
        task_id,
        str(task["status"]),
        str(uuid.UUID(str(destination))) if destination else None,
        str(detail),
    )


def _label(text: str) -> str:
    # Transfer refuses labels with characters outside this set or over 128.
    return _LABEL_REFUSED.sub("-", text)[:128]
