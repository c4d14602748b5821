"""A small local emulator of the Globus Transfer API, for tests.

It implements only the routes `GlobusStore` calls (``GET /v0.10/submission_id``,
``POST /v0.10/transfer``, ``POST /v0.10/delete``, ``GET /v0.10/task/<id>``)
with the JSON shapes globus-sdk reads, and really copies/deletes files between
local directories that stand for endpoints. Tasks run on one worker thread in
submission order, so a task is ACTIVE for a while before it SUCCEEDS.

What it does NOT verify about the real service: authorization beyond "a Bearer
token is present (and equals ``required_token`` when set)", endpoint
activation, the exact error documents Globus returns, sync levels (files are
always copied), task deadlines, and rate limits.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

Outcome = Literal["succeed", "fail", "hang"]


@dataclass
class Task:
    task_id: str
    kind: Literal["TRANSFER", "DELETE"]
    source: str | None
    destination: str
    items: list[dict[str, Any]]
    status: str = "ACTIVE"
    fatal_error: dict[str, str] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def document(self) -> dict[str, Any]:
        return {
            "DATA_TYPE": "task",
            "task_id": self.task_id,
            "type": self.kind,
            "status": self.status,
            "source_endpoint_id": self.source,
            "destination_endpoint_id": self.destination,
            "nice_status": None if self.status != "ACTIVE" else "Queued",
            "fatal_error": self.fatal_error,
        }


class TransferEmulator:
    """Transfer API emulator on a loopback port; a context manager.

    Args:
        roots: Endpoint UUID -> directory standing for that endpoint's file
            system root (endpoint paths are resolved under it).
        outcome: What new tasks do: copy then SUCCEED, FAIL, or stay ACTIVE
            until `release` is called for them ("hang").
        required_token: If set, requests must carry this Bearer token (else
            401 like Transfer answers an invalid token).
    """

    def __init__(
        self,
        roots: dict[str, Path],
        *,
        outcome: Outcome = "succeed",
        required_token: str | None = None,
    ) -> None:
        self.roots = {str(uuid.UUID(key)): Path(value) for key, value in roots.items()}
        self.outcome: Outcome = outcome
        self.required_token = required_token
        self.tasks: dict[str, Task] = {}
        self.requests: list[tuple[str, str]] = []
        self.polled = threading.Event()
        """Set on every task status request (clear it to wait for the next)."""
        self._submissions: dict[str, str] = {}
        self._lock = threading.Lock()
        self._work: queue.Queue[Task | None] = queue.Queue()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._run_tasks, daemon=True),
        ]

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> TransferEmulator:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> TransferEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def release(self, task_id: str) -> None:
        """Let a held ("hang") task run: copy, then SUCCEED."""
        self._work.put(self.tasks[task_id])

    def local_path(self, endpoint: str, endpoint_path: str) -> Path:
        root = self.roots[str(uuid.UUID(endpoint))]
        path = (root / endpoint_path.lstrip("/")).resolve()
        if not path.is_relative_to(root.resolve()):
            raise PermissionError(f"{endpoint_path} leaves endpoint {endpoint}")
        return path

    # -- routes -------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path))
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or (
            self.required_token is not None
            and authorization != f"Bearer {self.required_token}"
        ):
            return _error(HTTPStatus.UNAUTHORIZED, "AuthenticationFailed", "bad token")
        route = path.split("?", 1)[0]
        if method == "GET" and route == "/v0.10/submission_id":
            return HTTPStatus.OK, {
                "DATA_TYPE": "submission_id",
                "value": str(uuid.uuid4()),
            }
        if method == "GET" and route.startswith("/v0.10/task/"):
            self.polled.set()
            task = self.tasks.get(route.rsplit("/", 1)[1])
            if task is None:
                return _error(HTTPStatus.NOT_FOUND, "ClientError.NotFound", "no task")
            return HTTPStatus.OK, task.document()
        if method == "POST" and route in ("/v0.10/transfer", "/v0.10/delete"):
            return self._submit(json.loads(body))
        return _error(HTTPStatus.NOT_FOUND, "ClientError.NotFound", f"no route {route}")

    def _submit(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        submission_id = str(data.get("submission_id") or "")
        if not submission_id:
            return _error(
                HTTPStatus.BAD_REQUEST, "ClientError.BadRequest", "no submission_id"
            )
        with self._lock:
            if submission_id in self._submissions:
                task_id = self._submissions[submission_id]
                return HTTPStatus.OK, _accepted(
                    data, task_id, submission_id, "Duplicate"
                )
            if data["DATA_TYPE"] == "transfer":
                endpoints = [data["source_endpoint"], data["destination_endpoint"]]
            else:
                endpoints = [data["endpoint"]]
            unknown = [ep for ep in endpoints if str(uuid.UUID(ep)) not in self.roots]
            if unknown:
                return _error(
                    HTTPStatus.NOT_FOUND,
                    "EndpointNotFound",
                    f"no endpoint {unknown[0]}",
                )
            task = Task(
                task_id=str(uuid.uuid4()),
                kind="TRANSFER" if data["DATA_TYPE"] == "transfer" else "DELETE",
                source=str(uuid.UUID(endpoints[0])) if len(endpoints) == 2 else None,
                destination=str(uuid.UUID(endpoints[-1])),
                items=list(data["DATA"]),
            )
            self.tasks[task.task_id] = task
            self._submissions[submission_id] = task.task_id
        if self.outcome != "hang":
            self._work.put(task)
        return HTTPStatus.ACCEPTED, _accepted(
            data, task.task_id, submission_id, "Accepted"
        )

    def _run_tasks(self) -> None:
        while (task := self._work.get()) is not None:
            try:
                if self.outcome == "fail" and task.kind == "TRANSFER":
                    raise PermissionError("emulated failure")
                for item in task.items:
                    if task.kind == "TRANSFER":
                        assert task.source is not None
                        source = self.local_path(task.source, item["source_path"])
                        target = self.local_path(
                            task.destination, item["destination_path"]
                        )
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(source, target)
                    else:
                        self.local_path(task.destination, item["path"]).unlink(
                            missing_ok=True
                        )
            except OSError as err:
                task.fatal_error = {
                    "code": "PERMISSION_DENIED",
                    "description": str(err),
                }
                task.status = "FAILED"
            else:
                task.status = "SUCCEEDED"
            task.done.set()


def _accepted(
    data: dict[str, Any], task_id: str, submission_id: str, code: str
) -> dict[str, Any]:
    kind = "transfer" if data["DATA_TYPE"] == "transfer" else "delete"
    return {
        "DATA_TYPE": f"{kind}_result",
        "code": code,
        "message": f"The {kind} has been accepted and a task has been created",
        "request_id": uuid.uuid4().hex[:9],
        "resource": f"/v0.10/{kind}",
        "submission_id": submission_id,
        "task_id": task_id,
    }


def _error(status: HTTPStatus, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "request_id": uuid.uuid4().hex[:9],
        "resource": "emulator",
    }


def _handler_for(emulator: TransferEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _respond(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, document = emulator.handle(self.command, self.path, headers, body)
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _respond
        do_POST = _respond

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
