"""The endpoint's HTTP API (aiohttp) and the lifecycle of a running endpoint.

Routes (``OWNER`` is the optional ``endpoint`` query parameter naming the
uuid of the endpoint that owns the object; it defaults to this endpoint):

- ``GET /endpoint``: ``{"uuid", "name", "max_object_size", "peering",
  "signaling"}`` (``signaling``: registered with the signaling server now).
- ``PUT /objects/{key}?endpoint=OWNER``: store the raw request body.
- ``GET /objects/{key}?endpoint=OWNER``: the raw bytes, or 404.
- ``GET /objects/{key}/exists?endpoint=OWNER``: ``{"exists": bool}``.
- ``DELETE /objects/{key}?endpoint=OWNER``: evict (missing is no error).

Errors are JSON ``{"error": <exception class>, "message": ...}`` (see
`proxystore.endpoint.errors`); a missing object is 404 with
``{"error": "MissingKey"}``. A client may send ``X-Proxystore-Timeout``
(seconds) to bound how long the server waits for a peer on its behalf.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxystore.endpoint.config import EndpointConfig
from proxystore.endpoint.endpoint import Endpoint
from proxystore.endpoint.errors import error_to_json
from proxystore.endpoint.keys import validate_object_id
from proxystore.endpoint.protocol import MISSING_KEY, OWNER_PARAM, TIMEOUT_HEADER
from proxystore.endpoint.storage import ObjectStorage
from proxystore.exceptions import (
    InvalidKeyError,
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

DEFAULT_BODY_IDLE_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _status_of(error: ProxyStoreError) -> int:
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
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyStoreError as err:
        return _error_response(_status_of(err), error_to_json(err))
    except web.HTTPRequestEntityTooLarge as err:
        limit = request.app[_MAX_SIZE_KEY]
        return _error_response(
            413,
            {
                "error": "StoreOperationError",
                "message": (
                    f"request body of {request.content_length} bytes is larger "
                    f"than this endpoint's max_object_size of {limit} bytes"
                ),
                "detail": err.text,
            },
        )
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
        }
    )


async def _get(request: web.Request) -> web.Response:
    endpoint = request.app[_ENDPOINT_KEY]
    key = request.match_info["key"]
    data = await endpoint.get(key, _owner(request), _timeout(request))
    if data is None:
        return _error_response(
            404, {"error": MISSING_KEY, "message": f"no object {key!r}"}
        )
    return web.Response(body=data, content_type="application/octet-stream")


async def _put(request: web.Request) -> web.Response:
    endpoint = request.app[_ENDPOINT_KEY]
    key = request.match_info["key"]
    owner = _owner(request)
    # Refuse a bad key or owner before reading a possibly large body.
    validate_object_id(key)
    endpoint.is_local(owner)
    data = await _read_body(request)
    await endpoint.set(key, data, owner, _timeout(request))
    return web.Response(status=204)


async def _read_body(request: web.Request) -> bytearray:
    limit = request.app[_MAX_SIZE_KEY]
    idle = request.app[_IDLE_TIMEOUT_KEY]
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    body = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.readany(), idle)
        except asyncio.TimeoutError as err:
            raise StoreTimeoutError(
                f"client {request.remote}", idle, f"request body of PUT {request.path}"
            ) from err
        if not chunk:
            return body
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))


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
) -> web.Application:
    """Return the aiohttp application serving ``endpoint``.

    Args:
        endpoint: The endpoint whose objects are served.
        max_object_size: Largest request body accepted; larger ones get 413.
        signaling: Tells whether the endpoint is registered with its
            signaling server right now (reported by ``GET /endpoint``).
        body_idle_timeout: Seconds a client may pause while sending a body
            before the request fails.
    """
    app = web.Application(
        client_max_size=max_object_size, middlewares=[_errors_as_json]
    )
    app[_ENDPOINT_KEY] = endpoint
    app[_MAX_SIZE_KEY] = max_object_size
    app[_SIGNALING_KEY] = signaling
    app[_IDLE_TIMEOUT_KEY] = body_idle_timeout
    app.router.add_get("/endpoint", _describe)
    app.router.add_put("/objects/{key}", _put)
    app.router.add_get("/objects/{key}", _get)
    app.router.add_get("/objects/{key}/exists", _exists)
    app.router.add_delete("/objects/{key}", _evict)
    return app


class EndpointServer:
    """A running endpoint: storage, peer manager, and HTTP server.

    Args:
        config: The endpoint's configuration.

    Example:
        ```python
        server = EndpointServer(config)
        await server.start()
        ...
        await server.close()
        ```
    """

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self._runner: web.AppRunner | None = None
        self._peers: PeerManager | None = None
        self._storage: ObjectStorage | None = None
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
        self._storage = ObjectStorage(config.max_memory, config.spill_dir)
        endpoint = Endpoint(
            config.uuid,
            config.name,
            self._storage,
            peer_timeout=config.peer_timeout,
        )
        if config.signaling_server is not None:
            from proxystore.endpoint.peering import peer_manager

            self._peers = peer_manager(config, endpoint.handle_peer_request)
            endpoint.peers = self._peers
            await self._peers.start()
        self._runner = web.AppRunner(
            create_app(endpoint, config.max_object_size, self._is_signaling),
            handle_signals=False,
            access_log=None,
            # Requests still waiting on a peer must not hold up a stop for
            # the whole peer timeout.
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.host, config.port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        logger.info(
            "endpoint %s (%s) listening on %s", config.name, config.uuid, self.url
        )

    def _is_signaling(self) -> bool:
        return self._peers is not None and self._peers.connected_to_signaling

    async def close(self) -> None:
        """Stop serving, close peer connections, and drop stored objects."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._peers is not None:
            await self._peers.close()
            self._peers = None
        if self._storage is not None:
            await self._storage.close()
            self._storage = None

    async def __aenter__(self) -> EndpointServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(config: EndpointConfig, stop: asyncio.Event) -> None:
    """Run the endpoint described by ``config`` until ``stop`` is set."""
    async with EndpointServer(config):
        await stop.wait()
