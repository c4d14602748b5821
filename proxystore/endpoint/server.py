"""The endpoint's HTTP API (aiohttp) and the lifecycle of a running endpoint.

Routes (``OWNER`` is the optional ``endpoint`` query parameter naming the
uuid of the endpoint that owns the object; it defaults to this endpoint):

- ``GET /endpoint``: ``{"uuid", "name", "max_object_size", "peering",
  "signaling"}`` (``signaling``: registered with the signaling server now);
  an endpoint that peers adds ``signaling_attempted`` (a first registration
  attempt finished) and ``signaling_error`` (why the server refused the
  registration, e.g. a wrong secret, or null) and ``peers``: per connected
  peer uuid, whether a request channel is open and how many requests went
  over it and over the data channel (`PeerManager.peer_stats`).
- ``GET /endpoint/status``: a live status for ``proxystore-endpoint status``:
  ``uptime`` (seconds), ``storage`` (objects and bytes held in memory and
  in the spill directory, with their limits: `ObjectStorage.stats`),
  ``requests_in_flight``, ``waiting`` (long-polls in progress),
  ``signaling_state`` (``off``, ``connecting``, ``connected``, ``refused``
  or ``retrying``), ``peers`` (as in ``GET /endpoint``, ``{}`` when not
  peering) and ``fast_path`` (pending body and channel offers, bodies
  served, connections refused; ``null`` without a fast path).
- ``PUT /objects/{key}?endpoint=OWNER``: store the raw request body.
- ``GET /objects/{key}?endpoint=OWNER``: the raw bytes, or 404. A client
  on the same host may take large bodies as shared-memory files instead
  (`proxystore.endpoint.handoff`).
- ``GET /objects/{key}/exists?endpoint=OWNER``: ``{"exists": bool}``.
- ``DELETE /objects/{key}?endpoint=OWNER``: evict (missing is no error).
- ``GET /objects/{key}/wait?endpoint=OWNER&wait=S``: long-poll until the
  object exists (`proxystore.endpoint.waiters`).

Every request must carry ``Authorization: Bearer <token>`` with the token of
the endpoint's ``api-token`` file (`proxystore.endpoint.credentials`):
without it the answer is 401, with a wrong one 403, before anything else.

Errors are JSON ``{"error": <exception class>, "message": ...}`` (see
`proxystore.endpoint.errors`); a missing object is 404 with
``{"error": "MissingKey"}``. Limits answer ``LimitExceededError`` naming the
limit: 413 ``max_object_size``, 429 ``max_requests`` (with ``Retry-After``),
503 ``max_memory`` / ``max_spill``. A client may send
``X-Proxystore-Timeout`` (seconds) to bound how long the server waits for a
peer on its behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxystore.endpoint import waiters
from proxystore.endpoint.config import EndpointConfig, endpoint_dir
from proxystore.endpoint.credentials import (
    AUTHORIZATION_SCHEME,
    presented_token,
    read_api_token,
    token_matches,
    token_path,
)
from proxystore.endpoint.endpoint import Endpoint
from proxystore.endpoint.errors import error_to_json
from proxystore.endpoint.handoff import (
    HANDOFF_HEADER,
    HANDOFF_THRESHOLD,
    LENGTH_HEADER,
    HandoffDir,
    HandoffFile,
)
from proxystore.endpoint.keys import validate_object_id
from proxystore.endpoint.limits import (
    DEFAULT_KEEPALIVE_TIMEOUT,
    ConnectionGuard,
    RateLimitedLog,
    default_max_memory,
    default_max_spill,
)
from proxystore.endpoint.persist import OBJECTS_DIR
from proxystore.endpoint.protocol import MISSING_KEY, OWNER_PARAM, TIMEOUT_HEADER
from proxystore.endpoint.storage import ObjectStorage
from proxystore.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    LimitExceededError,
    PeerConnectionError,
    PeerUnknownError,
    ProxyStoreError,
    StoreConnectionError,
    StoreTimeoutError,
)

if TYPE_CHECKING:
    from proxystore.p2p.manager import PeerManager

logger = logging.getLogger(__name__)

_ENDPOINT_KEY = web.AppKey("endpoint", Endpoint)
_MAX_SIZE_KEY = web.AppKey("max_object_size", int)
_IDLE_TIMEOUT_KEY = web.AppKey("body_idle_timeout", float)
_SIGNALING_KEY: web.AppKey[Callable[[], bool]] = web.AppKey("signaling")
_SIGNALING_STATE_KEY: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey(
    "signaling_state"
)
_GATE_KEY: web.AppKey[_Gate] = web.AppKey("gate")
_STATUS_KEY: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("status")
_STARTED_KEY = web.AppKey("started", float)
_HANDOFF_KEY: web.AppKey[HandoffDir | None] = web.AppKey("handoff")

DEFAULT_BODY_IDLE_TIMEOUT = 60.0
HANDOFF_TTL = 60.0
"""Seconds a handed-off body waits for its client before it is removed."""
RESPONSE_CHUNK = 1024 * 1024
"""Bytes per write of a large response body (each waits for the socket)."""
_COPY_PIECE = 64 * 1024 * 1024
SHUTDOWN_TIMEOUT = 5.0
RETRY_AFTER = 1
"""Seconds a client refused for ``max_requests`` is told to wait."""
_LIMIT_STATUS = {"max_object_size": 413, "max_requests": 429}

# INSECURE, benchmarks only: benchmarks/bench_endpoint.py measures the cost of
# authentication by running the same server with the check left out. Set only
# from code in the endpoint's own process; there is no option, argument or
# environment variable, and the server logs a warning when it is set.
_INSECURE_SKIP_API_TOKEN_CHECK = False


@dataclasses.dataclass
class _Gate:
    """What every request goes through: the token and the request limit."""

    api_token: str | None
    """``None`` only under `_INSECURE_SKIP_API_TOKEN_CHECK`."""
    max_requests: int | None
    log: RateLimitedLog
    guard: ConnectionGuard | None = None
    body_budget: int | None = None
    in_flight: int = 0
    body_bytes: int = 0


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _status_of(error: ProxyStoreError) -> int:
    if isinstance(error, LimitExceededError):
        return _LIMIT_STATUS.get(error.limit, 503)
    if isinstance(error, InvalidKeyError):
        return 400
    if isinstance(error, PeerUnknownError):
        return 404
    if isinstance(error, StoreTimeoutError):
        return 504
    if isinstance(error, PeerConnectionError | StoreConnectionError):
        return 502
    return 500


def _error_response(status: int, data: dict[str, Any]) -> web.Response:
    return web.json_response(data, status=status)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    gate = request.app[_GATE_KEY]
    if gate.api_token is not None:
        presented = presented_token(request.headers.get("Authorization"))
        if presented is None:
            return _refuse(request, 401, "missing", "no Bearer token in Authorization")
        if not token_matches(gate.api_token, presented):
            return _refuse(request, 403, "wrong", "wrong API token")
    return await handler(request)


def _refuse(request: web.Request, status: int, kind: str, why: str) -> web.Response:
    request.app[_GATE_KEY].log.warning(
        f"auth-{kind}",
        "refused %s %s from %s: %s",
        request.method,
        request.path,
        request.remote,
        why,
    )
    response = _error_response(
        status,
        {
            "error": "AuthenticationError",
            "message": (
                f"{why}: every request to this endpoint needs the token of its "
                "api-token file as 'Authorization: Bearer <token>'"
            ),
        },
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = (
            f'{AUTHORIZATION_SCHEME} realm="proxystore-endpoint"'
        )
    # Close rather than read and discard a body nobody may send.
    response.force_close()
    return response


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One INFO line per object operation: method, key prefix, size, time, peer."""
    if not request.path.startswith("/objects/"):
        return await handler(request)
    start = time.perf_counter()
    status: int | str = "error"
    size: int | None = request.content_length
    try:
        response = await handler(request)
        status = response.status
        if request.method == "GET":
            handed = response.headers.get(LENGTH_HEADER)
            size = int(handed) if handed is not None else response.content_length
        return response
    finally:
        key = request.match_info.get("key", "")
        logger.info(
            "%s %s %s %s bytes %.1f ms owner=%s",
            request.method,
            key[:8] + ("..." if len(key) > 8 else ""),
            status,
            "-" if size is None else size,
            (time.perf_counter() - start) * 1e3,
            _owner(request) or "local",
        )


@web.middleware
async def _limit_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    gate = request.app[_GATE_KEY]
    if gate.max_requests is not None and gate.in_flight >= gate.max_requests:
        raise LimitExceededError(
            "max_requests",
            f"the endpoint is serving its max_requests of {gate.max_requests} "
            f"requests at once; retry in {RETRY_AFTER}s",
        )
    gate.in_flight += 1
    transport = request.transport
    if gate.guard is not None:
        gate.guard.busy(transport)
    try:
        return await handler(request)
    finally:
        gate.in_flight -= 1
        if gate.guard is not None:
            gate.guard.idle(transport)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LimitExceededError as err:
        request.app[_GATE_KEY].log.warning(
            f"limit-{err.limit}",
            "refused %s %s from %s: %s",
            request.method,
            request.path,
            request.remote,
            err,
        )
        response = _error_response(_status_of(err), error_to_json(err))
        if err.limit == "max_requests":
            response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    except ProxyStoreError as err:
        return _error_response(_status_of(err), error_to_json(err))
    except web.HTTPRequestEntityTooLarge as err:
        limit = request.app[_MAX_SIZE_KEY]
        error = LimitExceededError(
            "max_object_size",
            f"request body is larger than this endpoint's max_object_size of "
            f"{limit} bytes ({err.text})",
        )
        return _error_response(413, error_to_json(error))
    except web.HTTPException:
        raise
    except Exception as err:
        logger.exception("%s %s failed", request.method, request.path)
        return _error_response(
            500,
            {
                "error": "StoreOperationError",
                "message": f"{request.method} {request.path} failed: {err!r}",
            },
        )


def _owner(request: web.Request) -> str | None:
    return request.query.get(OWNER_PARAM) or None


def _timeout(request: web.Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"{TIMEOUT_HEADER} {raw!r} is not a number"
        ) from None
    return value if value > 0 else None


async def _describe(request: web.Request) -> web.Response:
    endpoint = request.app[_ENDPOINT_KEY]
    return web.json_response(
        {
            "uuid": endpoint.uuid,
            "name": endpoint.name,
            "max_object_size": request.app[_MAX_SIZE_KEY],
            "peering": endpoint.peers is not None,
            "signaling": request.app[_SIGNALING_KEY](),
            **request.app[_SIGNALING_STATE_KEY](),
            **_describe_handoff(request.app[_HANDOFF_KEY]),
        }
    )


def signaling_state(
    peering: bool, connected: bool, attempted: bool, refused: str | None
) -> str:
    """Name the state of an endpoint's registration with its signaling server.

    ``off`` (no signaling server configured), ``connected``, ``refused``
    (the server refused the registration: wrong secret, identity refused),
    ``connecting`` (no attempt finished yet) or ``retrying`` (not
    registered: the endpoint keeps reconnecting with backoff).
    """
    if not peering:
        return "off"
    if connected:
        return "connected"
    if refused:
        return "refused"
    return "retrying" if attempted else "connecting"


async def _status(request: web.Request) -> web.Response:
    app = request.app
    endpoint = app[_ENDPOINT_KEY]
    signaling = app[_SIGNALING_STATE_KEY]()
    return web.json_response(
        {
            "uuid": endpoint.uuid,
            "name": endpoint.name,
            "uptime": time.monotonic() - app[_STARTED_KEY],
            "storage": endpoint.storage.stats(),
            # This request is one of them: count the others.
            "requests_in_flight": max(app[_GATE_KEY].in_flight - 1, 0),
            "waiting": waiters.waiters_of(app).waiting,
            "signaling_state": signaling_state(
                endpoint.peers is not None,
                app[_SIGNALING_KEY](),
                bool(signaling.get("signaling_attempted")),
                signaling.get("signaling_error"),
            ),
            "signaling_error": signaling.get("signaling_error"),
            "peers": signaling.get("peers", {}),
            "fast_path": None,
            **app[_STATUS_KEY](),
        }
    )


def _describe_handoff(handoff: HandoffDir | None) -> dict[str, Any]:
    return {} if handoff is None else {"handoff": handoff.describe()}


class _HandoffFiles:
    """Files made for one GET: the one handed to the client, or none."""

    def __init__(self, handoff: HandoffDir) -> None:
        self.handoff = handoff
        self.made: list[HandoffFile] = []

    def allocate(self, size: int) -> bytearray | memoryview:
        """Make the buffer a peer's body is received into."""
        if size >= HANDOFF_THRESHOLD:
            try:
                file = self.handoff.new(size)
            except OSError as err:
                logger.warning("cannot hand off %d bytes: %s", size, err)
            else:
                if file is not None:
                    self.made.append(file)
                    return file.view
        return bytearray(size)

    async def file_for(
        self, data: bytes | bytearray | memoryview
    ) -> HandoffFile | None:
        """Return the file holding ``data`` (made or filled here), if possible."""
        for made in self.made:
            if made.view is data:  # received straight into the file
                self.made.remove(made)
                return made
        try:
            file = self.handoff.new(len(data))
        except OSError as err:
            logger.warning("cannot hand off %d bytes: %s", len(data), err)
            return None
        if file is None:  # the files not yet taken hold the cap
            return None
        try:
            # A copy of up to max_object_size bytes: in pieces, so other
            # requests are served meanwhile.
            view = memoryview(data).cast("B")
            for start in range(0, len(view), _COPY_PIECE):
                file.write_at(view[start : start + _COPY_PIECE], start)
                await asyncio.sleep(0)
        except BaseException:
            file.discard()
            raise
        return file

    def discard(self) -> None:
        for file in self.made:
            file.discard()
        self.made.clear()


async def _get(request: web.Request) -> web.StreamResponse:
    endpoint = request.app[_ENDPOINT_KEY]
    key = request.match_info["key"]
    handoff = request.app[_HANDOFF_KEY]
    files = (
        _HandoffFiles(handoff)
        if handoff is not None and request.headers.get(HANDOFF_HEADER) == "1"
        else None
    )
    try:
        data = await endpoint.get(
            key,
            _owner(request),
            _timeout(request),
            allocate=None if files is None else files.allocate,
        )
        if data is None:
            return _error_response(
                404, {"error": MISSING_KEY, "message": f"no object {key!r}"}
            )
        if files is not None and len(data) >= HANDOFF_THRESHOLD:
            file = await files.file_for(data)
            if file is not None:
                del data  # may be a view of the file, released by publish()
                name = files.handoff.publish(file)
                return web.Response(
                    status=200,
                    headers={HANDOFF_HEADER: name, LENGTH_HEADER: str(file.size)},
                )
        return await _send_body(request, data)
    finally:
        if files is not None:
            files.discard()


async def _send_body(
    request: web.Request, data: bytes | bytearray | memoryview
) -> web.StreamResponse:
    if len(data) <= RESPONSE_CHUNK:
        return web.Response(body=data, content_type="application/octet-stream")
    # Written in pieces that each wait for the socket: handing the whole body
    # to the transport at once copies all of it (more than once) first.
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    response.content_length = len(data)
    await response.prepare(request)
    view = memoryview(data).cast("B")
    for start in range(0, len(view), RESPONSE_CHUNK):
        await response.write(view[start : start + RESPONSE_CHUNK])
    await response.write_eof()
    return response


async def _put(request: web.Request) -> web.Response:
    endpoint = request.app[_ENDPOINT_KEY]
    key = request.match_info["key"]
    owner = _owner(request)
    # Refuse a bad key or owner before reading a possibly large body.
    validate_object_id(key)
    endpoint.is_local(owner)
    reservation = _Reservation(request.app[_GATE_KEY])
    try:
        data = await _read_body(request, reservation)
        await endpoint.set(key, data, owner, _timeout(request))
    finally:
        reservation.release()
    return web.Response(status=204)


class _Reservation:
    """The bytes of one request body counted as in flight."""

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate
        self._held = 0

    def grow(self, total: int) -> None:
        """Hold ``total`` bytes in all, within the gate's body budget."""
        more = total - self._held
        gate = self._gate
        if more <= 0:
            return
        if gate.body_budget is not None and gate.body_bytes + more > gate.body_budget:
            raise LimitExceededError(
                "max_memory",
                f"request bodies being received would take more than the "
                f"{gate.body_budget} bytes this endpoint allows in flight "
                f"(max(max_memory, max_object_size); {gate.body_bytes} in "
                "flight); retry later",
            )
        gate.body_bytes += more
        self._held = total

    def release(self) -> None:
        """Give back everything held."""
        self._gate.body_bytes -= self._held
        self._held = 0


async def _read_body(request: web.Request, reservation: _Reservation) -> bytearray:
    limit = request.app[_MAX_SIZE_KEY]
    idle = request.app[_IDLE_TIMEOUT_KEY]
    length = request.content_length
    if length is not None and length > limit:
        raise LimitExceededError(
            "max_object_size",
            f"request body of {length} bytes is larger than this endpoint's "
            f"max_object_size of {limit} bytes",
        )
    # Reserved up front when announced, so concurrent uploads cannot together
    # take more memory than the budget before any of them is refused.
    reservation.grow(length or 0)
    body = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.readany(), idle)
        except asyncio.TimeoutError as err:
            raise StoreTimeoutError(
                f"client {request.remote}", idle, f"request body of PUT {request.path}"
            ) from err
        except ConnectionError as err:
            # A client that went away mid-upload is no server failure to log.
            raise StoreConnectionError(
                f"client {request.remote}",
                f"closed the connection during the body of PUT {request.path}",
            ) from err
        if not chunk:
            return body
        body += chunk
        if len(body) > limit:
            raise LimitExceededError(
                "max_object_size",
                f"request body of at least {len(body)} bytes is larger than "
                f"this endpoint's max_object_size of {limit} bytes",
            )
        reservation.grow(len(body))


async def _exists(request: web.Request) -> web.Response:
    endpoint = request.app[_ENDPOINT_KEY]
    found = await endpoint.exists(
        request.match_info["key"], _owner(request), _timeout(request)
    )
    return web.json_response({"exists": found})


async def _evict(request: web.Request) -> web.Response:
    endpoint = request.app[_ENDPOINT_KEY]
    await endpoint.evict(request.match_info["key"], _owner(request), _timeout(request))
    return web.Response(status=204)


def create_app(
    endpoint: Endpoint,
    max_object_size: int,
    signaling: Callable[[], bool] = lambda: False,
    body_idle_timeout: float = DEFAULT_BODY_IDLE_TIMEOUT,
    *,
    api_token: str,
    max_requests: int | None = None,
    guard: ConnectionGuard | None = None,
    body_budget: int | None = None,
    signaling_state: Callable[[], dict[str, Any]] | None = None,
    handoff: HandoffDir | None = None,
    status: Callable[[], dict[str, Any]] | None = None,
) -> web.Application:
    """Return the aiohttp application serving ``endpoint``.

    Args:
        endpoint: The endpoint whose objects are served.
        max_object_size: Largest request body accepted; larger ones get 413.
        signaling: Tells whether the endpoint is registered with its
            signaling server right now (reported by ``GET /endpoint``).
        body_idle_timeout: Seconds a client may pause while sending a body
            before the request fails.
        api_token: Token every request must present as a Bearer token.
        max_requests: Most requests served at once (``None``: no limit);
            more get 429.
        guard: Connection cap told which connections are busy, if any.
        body_budget: Most bytes of request bodies held while being received
            (``None``: no limit); more get 503 naming ``max_memory``.
        signaling_state: More fields for ``GET /endpoint`` about signaling
            (``signaling_attempted``, ``signaling_error``).
        handoff: Where large bodies are handed to same-host clients as
            files (``None``: always in the response).
        status: More fields for ``GET /endpoint/status`` (``fast_path``).
    """
    if not isinstance(api_token, str) or not api_token:
        raise ConfigurationError(
            "an endpoint needs a non-empty API token: every request must present it"
        )
    if _INSECURE_SKIP_API_TOKEN_CHECK:
        logger.warning("INSECURE: API token check disabled (benchmark hook)")
    gate = _Gate(
        None if _INSECURE_SKIP_API_TOKEN_CHECK else api_token,
        max_requests,
        RateLimitedLog(logger),
        guard,
        body_budget,
    )
    app = web.Application(
        client_max_size=max_object_size,
        middlewares=[_authenticate, _log_requests, _errors_as_json, _limit_requests],
    )
    app[_GATE_KEY] = gate
    app[_ENDPOINT_KEY] = endpoint
    app[_MAX_SIZE_KEY] = max_object_size
    app[_SIGNALING_KEY] = signaling
    app[_SIGNALING_STATE_KEY] = signaling_state or dict
    app[_IDLE_TIMEOUT_KEY] = body_idle_timeout
    app[_HANDOFF_KEY] = handoff
    app[_STATUS_KEY] = status or dict
    app[_STARTED_KEY] = time.monotonic()
    app.router.add_get("/endpoint", _describe)
    app.router.add_get("/endpoint/status", _status)
    app.router.add_put("/objects/{key}", _put)
    app.router.add_get("/objects/{key}", _get)
    app.router.add_get("/objects/{key}/exists", _exists)
    app.router.add_delete("/objects/{key}", _evict)
    waiters.install(app, endpoint, max_requests)  # GET /objects/{key}/wait
    return app


class EndpointServer:
    """A running endpoint: storage, peer manager, and HTTP server.

    Args:
        config: The endpoint's configuration.
        api_token: Token clients must present (default: read from the
            ``api-token`` file in the endpoint's directory at start, which
            must then exist and be private). There is no way to run without
            one: a missing, empty or unreadable token refuses the start.

    Example:
        ```python
        server = EndpointServer(config)
        await server.start()
        ...
        await server.close()
        ```
    """

    def __init__(self, config: EndpointConfig, *, api_token: str | None = None) -> None:
        self.config = config
        self._api_token = api_token
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._peers: PeerManager | None = None
        self._storage: ObjectStorage | None = None
        self._handoff: HandoffDir | None = None
        self._port = config.port

    @property
    def url(self) -> str:
        """URL of the HTTP server (with the real port once started)."""
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Start peering (if configured) and listen for HTTP requests.

        A signaling server that is down at start is not an error: the peer
        manager keeps reconnecting while local objects are already served.
        """
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        config = self.config
        token = self._api_token
        if token is None:
            token = read_api_token(token_path(endpoint_dir(config.name)))
        max_memory = config.max_memory
        if max_memory is None:
            max_memory = default_max_memory()
        persist_dir = (
            endpoint_dir(config.name) / OBJECTS_DIR if config.persist else None
        )
        disk = persist_dir if persist_dir is not None else config.spill_dir
        max_spill = config.max_spill
        if max_spill is None and disk is not None:
            max_spill = default_max_spill(disk)
        self._storage = ObjectStorage(
            max_memory, config.spill_dir, max_spill, persist_dir=persist_dir
        )
        endpoint = Endpoint(
            config.uuid,
            config.name,
            self._storage,
            peer_timeout=config.peer_timeout,
            max_object_size=config.max_object_size,
            peer_deadline=config.peer_deadline,
        )
        if config.signaling_server is not None:
            from proxystore.endpoint.peering import peer_manager

            self._peers = peer_manager(config, endpoint.handle_peer_request)
            endpoint.peers = self._peers
            await self._peers.start()
        try:
            # Files not yet taken are memory too: at most max_memory of them.
            self._handoff = HandoffDir(config.uuid, HANDOFF_TTL, max_bytes=max_memory)
        except OSError as err:
            logger.warning(
                "large bodies go over HTTP only: no handoff directory (%s)", err
            )
        guard = ConnectionGuard(config.max_connections, RateLimitedLog(logger))
        app = create_app(
            endpoint,
            config.max_object_size,
            self._is_signaling,
            api_token=token,
            max_requests=config.max_requests,
            guard=guard,
            # Bodies in flight get as much memory as stored objects (but room
            # for one object of any accepted size, which may go to spill).
            body_budget=max(max_memory, config.max_object_size),
            signaling_state=self._signaling_state,
            handoff=self._handoff,
            status=self._status,
        )
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            # Requests still waiting on a peer must not hold up a stop for
            # the whole peer timeout.
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            keepalive_timeout=DEFAULT_KEEPALIVE_TIMEOUT,
        )
        await self._runner.setup()
        assert self._runner.server is not None
        # Our own listener instead of a TCPSite, so that every connection
        # goes through the guard first.
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                guard.wrap(self._runner.server), config.host, config.port
            )
        except OSError as err:
            raise ConfigurationError(
                f"cannot listen on {config.host}:{config.port}: bind failed "
                f"({err.strerror or err}); is another process using the port? "
                "(choose another with configure --port)"
            ) from None
        self._port = self._listener.sockets[0].getsockname()[1]
        logger.info(
            "endpoint %s (%s) listening on %s", config.name, config.uuid, self.url
        )
        logger.info(
            "limits: max_object_size=%d max_memory=%d spill_dir=%s max_spill=%s "
            "max_connections=%d max_requests=%d persist=%s",
            config.max_object_size,
            max_memory,
            persist_dir or config.spill_dir,
            max_spill,
            config.max_connections,
            config.max_requests,
            config.persist,
        )

    def _signaling_state(self) -> dict[str, Any]:
        if self._peers is None:
            return {}
        return {
            "signaling_attempted": self._peers.signaling_attempted,
            "signaling_error": self._peers.signaling_refused,
            "peers": self._peers.peer_stats(),
        }

    def _status(self) -> dict[str, Any]:
        server = None if self._peers is None else self._peers.fast_path_server
        if server is None:
            return {}
        return {
            "fast_path": {
                "pending_offers": server.pending_offers,
                "pending_channel_offers": server.pending_channel_offers,
                "served": server.served,
                "refused": server.refused,
            }
        }

    def _is_signaling(self) -> bool:
        return self._peers is not None and self._peers.connected_to_signaling

    async def close(self) -> None:
        """Stop serving, close peer connections, and drop stored objects."""
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._listener is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._listener.wait_closed(), SHUTDOWN_TIMEOUT)
            self._listener = None
        if self._peers is not None:
            await self._peers.close()
            self._peers = None
        if self._storage is not None:
            await self._storage.close()
            self._storage = None
        if self._handoff is not None:
            self._handoff.close()
            self._handoff = None

    async def __aenter__(self) -> EndpointServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    config: EndpointConfig, stop: asyncio.Event, api_token: str | None = None
) -> None:
    """Run the endpoint described by ``config`` until ``stop`` is set.

    ``api_token`` ``None`` reads the endpoint's ``api-token`` file (see
    `EndpointServer`): the endpoint is never served without authentication.
    """
    async with EndpointServer(config, api_token=api_token):
        await stop.wait()
