# Generated from proxystore/aio/globus.py by scripts/generate_sync.py: DO NOT EDIT.
"""`GlobusStore`: objects copied between Globus endpoints by Transfer tasks.

`set` writes the object to a file in this host's endpoint directory and
submits a Transfer task copying it to every other endpoint. A process on
another host waits for that task (polling its status) before reading the file
from its own endpoint directory. Which endpoint is "this host's" is decided by
matching each endpoint's ``host_regex`` against the host name (see
`proxystore.globus.endpoints`).

Globus calls are blocking HTTP requests made with globus-sdk; on an event
loop they run in worker threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import globus_sdk

from proxystore._compat import (
    open_file,
    path_exists,
    remove_files,
    sleep,
    to_thread,
)
from proxystore._shared import new_object_id
from proxystore.store.base import Store
from proxystore.store.file import write_file_atomically
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    StoreOperationError,
    StoreTimeoutError,
    describe,
)
from proxystore.globus.client import native_app_client, transfer_client_from_login
from proxystore.globus.endpoints import GlobusEndpoint, GlobusEndpoints
from proxystore.globus.key import GlobusKey, validate_key
from proxystore.globus.tokens import TokenFile
from proxystore.globus.transfer import (
    SYNC_LEVELS,
    SyncLevel,
    TaskState,
    get_task_state,
    submit_copies,
    submit_deletes,
)
from proxystore.serialize import Buffer, Payload
from proxystore.signing import SigningKeysOption

_IS_SYNC = True

# Task ids known to need no more waiting here; forgotten past this many
# (forgetting only costs one more status request).
_MAX_SETTLED = 100_000

EndpointsSpec = (
    GlobusEndpoints
    | Sequence[GlobusEndpoint]
    | Mapping[str, Mapping[str, str]]
    | str
    | os.PathLike[str]
)


class GlobusStore(Store[GlobusKey]):
    """A store whose objects are copied between Globus endpoints.

    Needs a Globus login made once per system with ``proxystore-globus-auth``
    (or an injected ``transfer_client`` / ``authorizer``).

    Consistency: `evict` removes the local file at once but only submits
    delete tasks for the other endpoints, so another host may still see the
    object until its delete task runs. Evicting while the object's Transfer
    task is still running can leave a copy behind on the destination, since
    Globus does not order tasks.

    Args:
        name: The store's name.
        endpoints: The endpoints objects are copied between: `GlobusEndpoints`,
            a list of `GlobusEndpoint`, the mapping `GlobusEndpoints.from_dict`
            reads, or the path of a JSON file holding it.
        polling_interval: Seconds between status requests while waiting for
            a Transfer task.
        sync_level: Transfer sync level: ``'exists'``, ``'size'``,
            ``'mtime'`` or ``'checksum'``.
        timeout: Longest wait, in seconds, for an object's Transfer task
            before `get`/`exists` raise `StoreTimeoutError`.
        base_url: Transfer API base URL; the Globus service by default.
        token_file: Token file of the login; ``$PROXYSTORE_HOME`` default.
        transfer_client: A ready `globus_sdk.TransferClient` to use instead
            of the stored login. Not part of `config()`: a store rebuilt in
            another process uses that process's login.
        authorizer: A globus-sdk authorizer to build the client with
            (with ``base_url``); not part of `config()` either.
        hostname: Host name matched against the endpoints' ``host_regex``;
            `proxystore.globus.endpoints.current_hostname()` by default. Not
            part of `config()`: each process picks its own endpoint.
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        stats: Also record them per key (see `Store.stats`).
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.store.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.

    Raises:
        ConfigurationError: For invalid arguments (including fewer than two
            endpoints), when no endpoint matches this host, or when there is
            no Globus login.

    Example:
        ```python
        # On a host matched by one endpoint's host_regex:
        store = GlobusStore("globus", endpoints="/path/to/endpoints.json")
        proxy = store.proxy(data)
        # The pickled proxy resolves on a host of another endpoint once the
        # Transfer task has copied the object there.
        ```
    """

    _IDENTITY = ("endpoints",)
    _PROCESS_LOCAL = ("transfer_client", "authorizer", "hostname")
    _USER_KEY_REFUSAL = (
        "a key names the Transfer task that copied the object, known only "
        "after the write"
    )

    def __init__(
        self,
        name: str,
        endpoints: EndpointsSpec,
        polling_interval: float = 1.0,
        sync_level: SyncLevel = "mtime",
        timeout: float = 60.0,
        *,
        base_url: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        transfer_client: globus_sdk.TransferClient | None = None,
        authorizer: globus_sdk.authorizers.GlobusAuthorizer | None = None,
        hostname: str | None = None,
        cache_size: int = 16,
        metrics: bool = False,
        stats: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
    ) -> None:
        super().__init__(name, **self._base_options(locals()))
        self.endpoints = _as_endpoints(endpoints)
        if len(self.endpoints) < 2:
            raise ConfigurationError(
                "a GlobusStore copies objects between two or more endpoints, got "
                f"{len(self.endpoints)}: {', '.join(ep.uuid for ep in self.endpoints)}"
            )
        if not _is_positive(polling_interval):
            raise ConfigurationError(
                f"polling_interval must be a number > 0, got {polling_interval!r}"
            )
        if not _is_positive(timeout):
            raise ConfigurationError(f"timeout must be a number > 0, got {timeout!r}")
        if sync_level not in SYNC_LEVELS:
            raise ConfigurationError(
                f"sync_level must be one of {', '.join(SYNC_LEVELS)}, "
                f"got {sync_level!r}"
            )
        if transfer_client is not None and authorizer is not None:
            raise ConfigurationError("pass transfer_client or authorizer, not both")
        self.polling_interval = float(polling_interval)
        self.sync_level: SyncLevel = sync_level
        self.timeout = float(timeout)
        self.base_url = base_url
        self.token_file = None if token_file is None else os.fspath(token_file)
        self.endpoint: GlobusEndpoint = self.endpoints.local(hostname)
        self._others = [ep for ep in self.endpoints if ep.uuid != self.endpoint.uuid]
        try:
            os.makedirs(self.endpoint.local_dir, exist_ok=True)
        except OSError as err:
            raise ConfigurationError(
                f"cannot create local_path {self.endpoint.local_dir!r} of Globus "
                f"endpoint {self.endpoint.uuid} for store {name!r}: {err}"
            ) from err
        # Clients this store created, closed by close; an injected one is
        # the caller's to close.
        self._owned: list[globus_sdk.BaseClient] = []
        if transfer_client is not None:
            self._client = transfer_client
        elif authorizer is not None:
            self._client = globus_sdk.TransferClient(
                authorizer=authorizer, base_url=base_url
            )
            self._owned.append(self._client)
        else:
            auth_client = native_app_client()
            self._client = transfer_client_from_login(
                TokenFile(self.token_file), base_url=base_url, auth_client=auth_client
            )
            self._owned += [self._client, auth_client]
        self._settled: set[str] = set()

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this store anywhere."""
        return {
            **super().config(),
            "endpoints": self.endpoints.to_dict(),
            "polling_interval": self.polling_interval,
            "sync_level": self.sync_level,
            "timeout": self.timeout,
            "base_url": self.base_url,
            "token_file": self.token_file,
        }

    def _validate_key(self, key: Any) -> GlobusKey:
        return validate_key(key)

    def _path(self, filename: str) -> str:
        return os.path.join(self.endpoint.local_dir, filename)

    def _set_bytes(
        self, payload: Payload, key: GlobusKey | None = None
    ) -> GlobusKey:
        keys = self._set_bytes_batch([payload])
        return keys[0]

    def _set_bytes_batch(
        self,
        payloads: Sequence[Payload],
        keys: Sequence[GlobusKey | None] | None = None,
    ) -> list[GlobusKey]:
        if not payloads:
            return []
        filenames: list[str] = []
        submitting = False
        try:
            for payload in payloads:
                filenames.append(self._write_file(payload))
            submitting = True
            task_ids = to_thread(
                submit_copies,
                self._client,
                self.endpoint,
                self._others,
                filenames,
                sync_level=self.sync_level,
                label=f"proxystore {self.name} set",
            )
        except BaseException as err:
            remaining = []
            for filename in filenames:
                try:
                    remove_files(self._path(filename))
                except OSError:
                    remaining.append(filename)
            if not isinstance(err, Exception):
                raise
            # Transfers submitted before the failure may still copy files to
            # other endpoints: say where, so they can be cleaned up.
            others = ", ".join(ep.uuid for ep in self._others)
            detail = (
                f"copies of {filenames} may remain on endpoints {others} "
                "if a transfer was submitted"
                if submitting and self._others
                else ""
            )
            if len(payloads) == 1 and not remaining:
                # One object: keep the error's own type (a login refused is
                # a ConfigurationError); what may remain goes in a note.
                if detail and hasattr(err, "add_note"):
                    err.add_note(f"set on store {self.name!r}: {detail}")
                if isinstance(err, OSError):
                    raise self._file_error("set", err) from err
                raise
            raise BatchWriteError(
                self.name,
                "set_batch",
                len(payloads),
                err,
                written=len(filenames),
                remaining=remaining,
                detail=detail,
            ) from err
        # None of this store's own copies targets this endpoint.
        self._remember_settled(task_ids)
        task_id = ",".join(task_ids)
        return [GlobusKey(filename, task_id) for filename in filenames]

    def _write_file(self, payload: Payload) -> str:
        filename = new_object_id()
        write_file_atomically(self._path(filename), payload)
        return filename

    def _get_bytes(self, key: GlobusKey) -> Buffer | None:
        self._wait_for_transfer(key)
        try:
            with open_file(self._path(key.filename), "rb") as file:
                data: bytes = file.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._file_error("get", err) from err
        return data

    def _exists(self, key: GlobusKey) -> bool:
        self._wait_for_transfer(key)
        return path_exists(self._path(key.filename))

    def _evict(self, key: GlobusKey) -> None:
        try:
            remove_files(self._path(key.filename))
        except OSError as err:
            raise self._file_error("evict", err) from err
        if self._others:
            to_thread(
                submit_deletes,
                self._client,
                self._others,
                key.filename,
                label=f"proxystore {self.name} evict",
            )

    def _file_error(self, operation: str, err: OSError) -> StoreOperationError:
        return StoreOperationError(
            f"{operation} on GlobusStore {self.name!r} at "
            f"{self.endpoint.local_path!r} failed: {err}"
        )

    def _close(self) -> None:
        for client in self._owned:
            client.close()

    def _wait_for_transfer(self, key: GlobusKey) -> None:
        """Wait until the key's Transfer task to this endpoint has SUCCEEDED.

        Tasks copying to other endpoints are not waited for.

        Raises:
            StoreOperationError: If the task FAILED or is unknown to Globus.
            StoreTimeoutError: If it is still running after ``timeout``.
        """
        pending = [task for task in key.task_ids if task not in self._settled]
        deadline = time.monotonic() + self.timeout
        while pending:
            states = [
                to_thread(get_task_state, self._client, task) for task in pending
            ]
            waiting: list[TaskState] = []
            for state in states:
                elsewhere = state.destination not in (None, self.endpoint.uuid)
                if elsewhere or state.status == "SUCCEEDED":
                    self._remember_settled([state.task_id])
                elif state.status == "FAILED":
                    raise state.failure()
                else:
                    waiting.append(state)
            pending = [state.task_id for state in waiting]
            remaining = deadline - time.monotonic()
            if pending and remaining <= 0:
                last = waiting[0]
                status = last.status + (f": {last.detail}" if last.detail else "")
                raise StoreTimeoutError(
                    f"Globus Transfer task {last.task_id} (still {status})",
                    self.timeout,
                    f"waiting for {key.filename} to reach endpoint "
                    f"{self.endpoint.uuid}",
                )
            if pending:
                sleep(min(self.polling_interval, remaining))

    def _remember_settled(self, task_ids: Sequence[str]) -> None:
        if len(self._settled) >= _MAX_SETTLED:
            self._settled.clear()
        self._settled.update(task_ids)


def _as_endpoints(endpoints: EndpointsSpec) -> GlobusEndpoints:
    if isinstance(endpoints, GlobusEndpoints):
        return endpoints
    if isinstance(endpoints, str):
        return GlobusEndpoints.from_json(endpoints)
    if isinstance(endpoints, os.PathLike):
        return GlobusEndpoints.from_json(endpoints)
    if isinstance(endpoints, Mapping):
        return GlobusEndpoints.from_dict(endpoints)
    if isinstance(endpoints, Sequence) and not isinstance(endpoints, str):
        return GlobusEndpoints(endpoints)
    raise ConfigurationError(
        "endpoints must be GlobusEndpoints, a list of GlobusEndpoint, a mapping "
        f"or a JSON file path, got {describe(endpoints)}"
    )


def _is_positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and value != float("inf")
    )
