"""An endpoint's link to the signaling server, kept up in the background."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.uri import parse_uri

from proxystore.exceptions import ConfigurationError, PeerConnectionError
from proxystore.p2p import signaling_protocol as protocol
from proxystore.p2p.signaling import MAX_MESSAGE_SIZE, is_loopback

if TYPE_CHECKING:
    from proxystore.endpoint.identity import Identity

logger = logging.getLogger(__name__)

MessageCallback = Callable[[dict[str, Any]], None]

# Keyword arguments for `connect` that keep the link direct. websockets 15
# added proxy support, on by default (it follows HTTP(S)_PROXY and ALL_PROXY).
# websockets 13 and 14 have no `proxy` argument (they never use a proxy) and
# hand unknown arguments to `loop.create_connection`, which raises TypeError;
# so the argument is passed only where it exists.
DIRECT_CONNECTION: dict[str, Any] = (
    {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}
)


class SignalingClient:
    """Registers with the signaling server and relays messages, reconnecting on loss.

    The link is owned by one background task started by `start`. While the
    server is unreachable the client retries with exponential backoff
    (jittered, capped at ``reconnect_max_delay``) and `connected` is false.

    Registration answers the server's challenge with the shared secret and a
    signature by the endpoint's identity key. A ``wss://`` server's
    certificate is verified against ``ca_file`` (default: the system trust
    store); plain ``ws://`` to a host other than loopback logs a warning.

    Args:
        url: ``ws://`` or ``wss://`` URL of the signaling server.
        identity: This endpoint's key; it registers under the key's UUID.
        name: Human-readable endpoint name.
        secret: Shared secret used to answer the server's challenge.
        on_message: Called with every message the server sends after
            registration (relays, unknown peers, departures).
        timeout: Longest wait for the websocket handshake and registration.
        reconnect_max_delay: Longest pause between connection attempts.
        ca_file: PEM file of the CA(s) trusted for a ``wss://`` server.

    Raises:
        ConfigurationError: If ``url`` is not a websocket URL or ``ca_file``
            cannot be loaded.
    """

    def __init__(
        self,
        url: str,
        identity: Identity,
        name: str,
        secret: str,
        on_message: MessageCallback,
        *,
        timeout: float = 30.0,
        reconnect_max_delay: float = 2.0,
        ca_file: str | None = None,
    ) -> None:
        try:
            parsed = parse_uri(url)
        except InvalidURI as err:
            raise ConfigurationError(
                f"signaling URL {url!r} is not a ws:// URL"
            ) from err
        self._tls: ssl.SSLContext | None = None
        if parsed.secure:
            try:
                self._tls = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as err:
                raise ConfigurationError(
                    f"cannot load signaling CA file {ca_file}: {err}"
                ) from err
        elif not is_loopback(parsed.host):
            logger.warning(
                "signaling server %s is plain ws:// on a non-loopback host: anyone "
                "on the path can read and block signaling; use wss://",
                url,
            )
        self.url = url
        self._identity = identity
        self._uuid = identity.uuid
        self._name = name
        self._secret = secret
        self._on_message = on_message
        self._timeout = timeout
        self._reconnect_max_delay = reconnect_max_delay
        self._websocket: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.refused: str | None = None
        """Why the server refused our registration (bad secret, identity
        refused), until a registration succeeds: no retry fixes that without
        a configuration change."""

    @property
    def connected(self) -> bool:
        """Whether the client is registered with the server right now."""
        return self._websocket is not None

    @property
    def attempted(self) -> bool:
        """Whether a first connection attempt registered or failed."""
        return self._attempted.is_set()

    def start(self) -> None:
        """Start connecting in the background; returns immediately."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"signaling-client-{self._uuid}"
            )

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until registered; return whether that happened within ``timeout``."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_attempted(self, timeout: float) -> bool:
        """Wait until a first connection attempt registered or failed.

        Returns:
            Whether an attempt finished within ``timeout``; then `connected`
            and `last_error` tell how it went.
        """
        try:
            await asyncio.wait_for(self._attempted.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message to the server.

        Raises:
            PeerConnectionError: If the client is not registered right now.
        """
        websocket = self._websocket
        if websocket is None:
            raise PeerConnectionError(
                self.url, f"not connected to the signaling server ({self.last_error})"
            )
        try:
            await asyncio.wait_for(
                websocket.send(protocol.encode(message)), self._timeout
            )
        except (ConnectionClosed, asyncio.TimeoutError) as err:
            raise PeerConnectionError(self.url, f"signaling link lost: {err}") from err

    async def close(self) -> None:
        """Stop reconnecting and close the link."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = 0.05
        first = True
        while True:
            replaced = False
            was_up = False
            opened: ClientConnection | None = None
            try:
                async with connect(
                    self.url,
                    open_timeout=self._timeout,
                    close_timeout=min(self._timeout, 2.0),
                    compression=None,
                    **DIRECT_CONNECTION,
                    ssl=self._tls,
                    max_size=MAX_MESSAGE_SIZE,
                ) as websocket:
                    opened = websocket
                    await self._register(websocket)
                    delay = 0.05
                    self.last_error = None
                    self.refused = None
                    self._websocket = websocket
                    self._connected.set()
                    self._attempted.set()
                    was_up = True
                    logger.info("%s registered with %s", self._uuid, self.url)
                    async for raw in websocket:
                        self._dispatch(raw)
                    # `websocket.close_code` exists from websockets 13.1 on.
                    close_code = websocket.protocol.close_code
                    replaced = close_code == protocol.CLOSE_REPLACED
                    self.last_error = f"server closed the link ({close_code})"
            except ConnectionClosed as err:
                replaced = (
                    err.rcvd is not None and err.rcvd.code == protocol.CLOSE_REPLACED
                )
                self.last_error = f"connection closed: {err}"
            except (
                OSError,
                asyncio.TimeoutError,
                InvalidHandshake,
                protocol.SignalingProtocolError,
            ) as err:
                self.last_error = f"{type(err).__name__}: {err}"
            except Exception as err:
                # A defect (ours or a dependency's): retrying would fail the
                # same way, so report it as permanent instead of "retrying".
                logger.exception("signaling client for %s failed", self.url)
                self.last_error = f"internal error: {type(err).__name__}: {err}"
                self.refused = self.last_error
                return
            finally:
                if opened is not None:
                    # Python 3.10's TLS transport stays "open" when the server
                    # closed the connection first (as it does once the close
                    # handshake is done) and warns when collected; closing it
                    # again is a no-op.
                    opened.transport.close()
                self._websocket = None
                self._connected.clear()
                self._attempted.set()
            if replaced:
                logger.error(
                    "another process holding this endpoint's key registered as %s "
                    "at %s; this one stops signaling (endpoint started twice?)",
                    self._uuid,
                    self.url,
                )
                self.last_error = "replaced by another process with the same key"
                return
            # INFO once per outage (when a link was up, or the first attempt
            # failed); each further retry only at DEBUG.
            level = logging.INFO if was_up or first else logging.DEBUG
            logger.log(
                level, "signaling link to %s down: %s", self.url, self.last_error
            )
            first = False
            # Jitter keeps endpoints restarted together from reconnecting in step.
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._reconnect_max_delay)

    async def _register(self, websocket: ClientConnection) -> None:
        challenge = protocol.decode(
            await asyncio.wait_for(websocket.recv(), self._timeout)
        )
        if challenge["type"] != "challenge":
            raise protocol.SignalingProtocolError(
                f"expected a challenge, got {challenge['type']!r}"
            )
        nonce = protocol.require_str(challenge, "nonce")
        await websocket.send(
            protocol.encode(
                {
                    "type": "register",
                    "uuid": self._uuid,
                    "name": self._name,
                    "auth": protocol.auth_digest(self._secret, nonce, self._uuid),
                    "identity": self._identity.sign(
                        {
                            "from": self._uuid,
                            "to": protocol.SERVER_IDENTITY,
                            "nonce": nonce,
                            "ts": time.time(),
                            "name": self._name,
                        }
                    ),
                }
            )
        )
        try:
            raw = await asyncio.wait_for(websocket.recv(), self._timeout)
        except ConnectionClosed as err:
            # The server refuses by an error message and then closing.
            if err.rcvd is not None and err.rcvd.code == protocol.CLOSE_AUTH_FAILED:
                self.refused = err.rcvd.reason or "authentication failed"
            raise
        reply = protocol.decode(raw)
        if reply["type"] != "registered":
            self.refused = str(reply.get("reason", reply["type"]))
            raise protocol.SignalingProtocolError(
                f"registration refused: {reply.get('reason', reply['type'])}"
            )

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            message = protocol.decode(raw)
        except protocol.SignalingProtocolError as err:
            logger.warning("ignoring signaling message: %s", err)
            return
        if message["type"] == "error":
            logger.warning("signaling server: %s", message.get("reason"))
            return
        self._on_message(message)
