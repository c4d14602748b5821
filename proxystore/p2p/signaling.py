"""The signaling server endpoints use to find each other and exchange SDP.

Endpoints keep one websocket open to the server, register under their UUID
after proving they know the shared secret, and relay JSON payloads (SDP
offers and answers) to each other by UUID. The server never sees peer data:
bodies flow over WebRTC or the fast path. See
`proxystore.p2p.signaling_protocol` for the messages.

Registration proves both the shared secret and possession of the
endpoint's identity key (its UUID derives from the key), so the secret alone
does not let anyone register as another endpoint. Serve TLS (``wss://``)
with ``certfile``/``keyfile`` anywhere but loopback; the secret is read from
``--secret-file`` or ``$PROXYSTORE_SIGNALING_SECRET``, never the command line.

Example:
    ```
    async with await serve("127.0.0.1", 8765, secret=secret) as server:
        await server.serve_forever()
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import ssl
import sys
from pathlib import Path
from types import TracebackType

import websockets
from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed

from proxystore._ratelimit import RateLimitedLog
from proxystore.exceptions import ConfigurationError, StoreConnectionError
from proxystore.p2p import signaling_protocol as protocol

logger = logging.getLogger(__name__)

SECRET_ENV = "PROXYSTORE_SIGNALING_SECRET"
REGISTRATION_WINDOW = 120.0
MAX_MESSAGE_SIZE = 256 * 1024
"""Largest signaling message accepted (SDPs are a few KiB)."""
DEFAULT_MAX_PENDING = 64
"""Connections that have not registered yet, at most, by default."""
DEFAULT_MAX_ENDPOINTS = 4096
"""Registered endpoints, at most, by default."""
CLOSE_TRY_AGAIN_LATER = 1013
"""Websocket close code for a connection refused because a limit is reached."""


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names this machine only (loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_secret(path: str | os.PathLike[str] | None) -> str:
    """Return the signaling secret from ``path``, else ``$PROXYSTORE_SIGNALING_SECRET``.

    The file holds the secret on its first line and must not be readable by
    group or others.

    Raises:
        ConfigurationError: If neither gives a non-empty secret, or the file
            is unreadable or too open.
    """
    if path is not None:
        file = Path(path).expanduser()
        try:
            mode = file.stat().st_mode
            text = file.read_text()
        except OSError as err:
            raise ConfigurationError(f"cannot read secret file {file}: {err}") from err
        if mode & 0o077:
            raise ConfigurationError(
                f"secret file {file} is accessible by group or others "
                f"(mode {mode & 0o777:o}); run: chmod 600 {file}"
            )
        secret = text.strip()
        if not secret:
            raise ConfigurationError(f"secret file {file} is empty")
        return secret
    secret = os.environ.get(SECRET_ENV, "").strip()
    if not secret:
        raise ConfigurationError(
            f"no signaling secret: pass --secret-file PATH or set {SECRET_ENV}"
        )
    return secret


class SignalingServer:
    """A running signaling server; close it or use it as an async context manager.

    Created by `serve`.
    """

    def __init__(
        self,
        secret: str,
        *,
        auth_timeout: float,
        tls: ssl.SSLContext | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
    ) -> None:
        self._secret = secret
        self._tls = tls
        self._auth_timeout = auth_timeout
        self._max_pending = max_pending
        self._max_endpoints = max_endpoints
        self._pending = 0
        self._refusals = RateLimitedLog(logger)
        self._clients: dict[str, ServerConnection] = {}
        self._names: dict[str, str] = {}
        self._server: Server | None = None
        self._closing = False
        self.relayed = 0
        """Number of messages relayed between endpoints so far."""

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._socket_name()[0])

    @property
    def port(self) -> int:
        """The port the server listens on (useful after asking for port 0)."""
        return int(self._socket_name()[1])

    @property
    def url(self) -> str:
        """The ``wss://`` (TLS) or ``ws://`` URL endpoints connect to."""
        scheme = "wss" if self._tls is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def registered(self) -> dict[str, str]:
        """Registered endpoints, UUID to name."""
        return dict(self._names)

    def _socket_name(self) -> tuple[str, int]:
        if self._server is None:
            raise StoreConnectionError("signaling server", "not started")
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return host, port

    async def _start(self, host: str, port: int, ping_interval: float) -> None:
        try:
            self._server = await websockets.serve(
                self._handle,
                host,
                port,
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                compression=None,
                ssl=self._tls,
                max_size=MAX_MESSAGE_SIZE,
            )
        except OSError as err:
            raise StoreConnectionError(f"{host}:{port}", str(err)) from err
        if self._tls is None and not is_loopback(host):
            logger.warning(
                "signaling server on %s serves plain ws://: anyone on the path "
                "can read and block signaling (peer identities stay protected); "
                "pass --certfile/--keyfile to serve wss://",
                host,
            )

    async def serve_forever(self) -> None:
        """Serve until the server is closed or the task is cancelled."""
        if self._server is not None:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Close every connection and stop listening."""
        if self._server is None:
            return
        # Endpoints dropped by our own shutdown are not gone: their peer
        # connections stay valid while they wait for the server to return.
        self._closing = True
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> SignalingServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, websocket: ServerConnection) -> None:
        if self._pending >= self._max_pending:
            self._refusals.warning(
                "pending",
                "refused a connection from %s: %d connections are still "
                "registering (max_pending)",
                websocket.remote_address,
                self._pending,
            )
            await self._refuse(
                websocket,
                CLOSE_TRY_AGAIN_LATER,
                f"too many connections registering at once (max {self._max_pending})",
            )
            return
        self._pending += 1
        try:
            uuid = await self._register(websocket)
        finally:
            self._pending -= 1
        if uuid is None:
            return
        try:
            async for raw in websocket:
                await self._dispatch(websocket, uuid, raw)
        except ConnectionClosed:
            pass
        finally:
            if self._clients.get(uuid) is websocket:
                del self._clients[uuid]
                del self._names[uuid]
                logger.info("endpoint %s disconnected", uuid)
                if not self._closing:
                    websockets.broadcast(
                        self._clients.values(),
                        protocol.encode({"type": "peer_gone", "uuid": uuid}),
                    )

    async def _register(self, websocket: ServerConnection) -> str | None:
        nonce = secrets.token_hex(16)
        try:
            await websocket.send(protocol.encode({"type": "challenge", "nonce": nonce}))
            raw = await asyncio.wait_for(websocket.recv(), self._auth_timeout)
            message = protocol.decode(raw)
            uuid = protocol.require_str(message, "uuid")
            proof = protocol.require_str(message, "auth")
            name = message.get("name")
            name = name[:64] if isinstance(name, str) else ""
            accepted = message["type"] == "register" and protocol.verify_auth(
                self._secret, nonce, uuid, proof
            )
            if accepted:
                # The UUID derives from the key the proof is signed with: a
                # registration under someone else's UUID cannot pass.
                protocol.verify_registration(message, nonce, REGISTRATION_WINDOW)
        except (ConnectionClosed, asyncio.TimeoutError):
            return None
        except protocol.SignalingProtocolError as err:
            self._refusals.warning(
                "invalid",
                "refused a registration from %s: %s",
                websocket.remote_address,
                err,
            )
            await self._refuse(websocket, protocol.CLOSE_AUTH_FAILED, str(err))
            return None
        if not accepted:
            self._refusals.warning(
                "secret",
                "refused endpoint %s from %s: bad secret",
                uuid,
                websocket.remote_address,
            )
            await self._refuse(
                websocket, protocol.CLOSE_AUTH_FAILED, "authentication failed"
            )
            return None
        if uuid not in self._clients and len(self._clients) >= self._max_endpoints:
            self._refusals.warning(
                "endpoints",
                "refused endpoint %s from %s: %d endpoints are registered "
                "(max_endpoints)",
                uuid,
                websocket.remote_address,
                len(self._clients),
            )
            await self._refuse(
                websocket,
                CLOSE_TRY_AGAIN_LATER,
                f"too many endpoints registered (max {self._max_endpoints})",
            )
            return None

        previous = self._clients.get(uuid)
        self._clients[uuid] = websocket
        self._names[uuid] = name
        if previous is not None:
            # Only the holder of the key can register its UUID again: this is
            # the endpoint restarted or reconnecting, so the old link is stale
            # and peers must drop connections to the old process.
            await previous.close(protocol.CLOSE_REPLACED, "replaced by a new login")
            websockets.broadcast(
                [c for c in self._clients.values() if c is not websocket],
                protocol.encode({"type": "peer_gone", "uuid": uuid}),
            )
        logger.info("endpoint %s (%s) registered", uuid, name)
        try:
            await websocket.send(protocol.encode({"type": "registered"}))
        except ConnectionClosed:
            return None
        return uuid

    async def _refuse(
        self, websocket: ServerConnection, code: int, reason: str
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            await websocket.send(protocol.encode({"type": "error", "reason": reason}))
            # A close frame's reason is limited to 123 bytes; the full one went above.
            await websocket.close(code, reason.encode()[:120].decode(errors="ignore"))

    async def _dispatch(
        self, websocket: ServerConnection, uuid: str, raw: str | bytes
    ) -> None:
        try:
            message = protocol.decode(raw)
            if message["type"] != "relay":
                raise protocol.SignalingProtocolError(
                    f"unexpected signaling message {message['type']!r}"
                )
            target = protocol.require_str(message, "target")
            payload = message.get("payload")
            if not isinstance(payload, dict):
                raise protocol.SignalingProtocolError("relay payload is not an object")
        except protocol.SignalingProtocolError as err:
            await websocket.send(protocol.encode({"type": "error", "reason": str(err)}))
            return
        peer = self._clients.get(target)
        if peer is not None:
            forward = {
                "type": "relay",
                "source": uuid,
                "source_name": self._names.get(uuid, ""),
                "payload": payload,
            }
            with contextlib.suppress(ConnectionClosed):
                await peer.send(protocol.encode(forward))
                self.relayed += 1
                return
        await websocket.send(
            protocol.encode(
                {"type": "unknown_peer", "target": target, "payload": payload}
            )
        )


async def serve(
    host: str,
    port: int,
    secret: str,
    *,
    auth_timeout: float = 10.0,
    ping_interval: float = 20.0,
    tls: ssl.SSLContext | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
) -> SignalingServer:
    """Start a signaling server.

    Args:
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one (see `SignalingServer.port`).
        secret: Shared secret endpoints must prove they know.
        auth_timeout: Seconds a new connection has to register.
        ping_interval: Seconds between websocket keepalive pings; a client
            silent for as long again is dropped and reported gone to peers.
        tls: Server-side TLS context: serve ``wss://`` (see `tls_context`).
        max_pending: Connections that have not registered yet, at most;
            more are closed at once (code 1013, "try again later").
        max_endpoints: Registered endpoints, at most; a new one beyond is
            refused (code 1013), a registered one may always log in again.

    Returns:
        The running server.

    Raises:
        ConfigurationError: If ``secret`` is empty or a limit is not a
            positive integer.
        StoreConnectionError: If the address cannot be bound.
    """
    if not secret:
        raise ConfigurationError("the signaling server needs a non-empty secret")
    for option, value in (
        ("max_pending", max_pending),
        ("max_endpoints", max_endpoints),
    ):
        if type(value) is not int or value < 1:
            raise ConfigurationError(
                f"signaling server {option} must be a positive integer, not {value!r}"
            )
    server = SignalingServer(
        secret,
        auth_timeout=auth_timeout,
        tls=tls,
        max_pending=max_pending,
        max_endpoints=max_endpoints,
    )
    await server._start(host, port, ping_interval)
    return server


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """Return a server TLS context for ``wss://`` from PEM files.

    Raises:
        ConfigurationError: If the certificate or key cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as err:
        raise ConfigurationError(
            f"cannot load TLS certificate {certfile} / key {keyfile}: {err}"
        ) from err
    return context


async def _run(
    host: str,
    port: int,
    secret: str,
    tls: ssl.SSLContext | None,
    limits: dict[str, int],
) -> None:
    async with await serve(host, port, secret, tls=tls, **limits) as server:
        print(f"signaling server listening on {server.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the signaling server until SIGINT or SIGTERM (`signaling-server`).

    Args:
        argv: Command line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="signaling-server", description="ProxyStore endpoint signaling server."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on")
    parser.add_argument(
        "--secret-file",
        default=None,
        help=f"file holding the shared secret (mode 0600; default: ${SECRET_ENV})",
    )
    parser.add_argument(
        "--secret",
        default=None,
        help="removed: a secret on the command line is visible to every local "
        "user; use --secret-file or " + SECRET_ENV,
    )
    parser.add_argument("--certfile", default=None, help="TLS certificate (PEM)")
    parser.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    parser.add_argument(
        "--max-pending",
        type=int,
        default=DEFAULT_MAX_PENDING,
        help="connections not yet registered, at most (default: %(default)s)",
    )
    parser.add_argument(
        "--max-endpoints",
        type=int,
        default=DEFAULT_MAX_ENDPOINTS,
        help="registered endpoints, at most (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level")
    parser.add_argument(
        "--log-file",
        default=None,
        help="also log to this file (rotated at 10 MiB, 5 kept)",
    )
    args = parser.parse_args(argv)
    try:
        from proxystore.endpoint.logs import setup_logging

        setup_logging(args.log_level, Path(args.log_file) if args.log_file else None)
        if args.secret is not None:
            raise ConfigurationError(
                "--secret is no longer accepted (command lines are visible to "
                f"every local user): use --secret-file PATH or set {SECRET_ENV}"
            )
        secret = read_secret(args.secret_file)
        if (args.certfile is None) != (args.keyfile is None):
            raise ConfigurationError("pass both --certfile and --keyfile, or neither")
        tls = (
            tls_context(args.certfile, args.keyfile)
            if args.certfile is not None
            else None
        )
        limits = {
            "max_pending": args.max_pending,
            "max_endpoints": args.max_endpoints,
        }
        asyncio.run(_run(args.host, args.port, secret, tls, limits))
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StoreConnectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
