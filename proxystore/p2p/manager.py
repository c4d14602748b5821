"""`PeerManager`: an endpoint's connections to every other endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)

from proxystore.endpoint.identity import (
    Identity,
    IdentityError,
    ReplayError,
    ReplayGuard,
    open_signed,
)
from proxystore.endpoint.peers import PeerAllowlist
from proxystore.exceptions import (
    PeerConnectionError,
    PeerError,
    PeerUnknownError,
    StoreTimeoutError,
)
from proxystore.p2p.connection import (
    DEFAULT_FAST_PATH_THRESHOLD,
    DEFAULT_MAX_BODY,
    PeerConnection,
)
from proxystore.p2p.fastpath import Allocate, FastPathServer
from proxystore.p2p.framing import DEFAULT_CHUNK_SIZE
from proxystore.p2p.ice import apply_address_policy, selected_local_address
from proxystore.p2p.messages import Handler, PeerMessage
from proxystore.p2p.signaling_client import SignalingClient

logger = logging.getLogger(__name__)

CHANNEL_LABEL = "proxystore"


class PeerManager:
    """Sends requests to other endpoints and answers theirs with ``handler``.

    The manager registers with the signaling server in the background and
    opens one WebRTC connection per peer on first use, shared by every request
    to that peer (concurrent first requests share one attempt). Bodies of at
    least ``fast_path_threshold`` bytes move over a direct TLS stream when
    both sides have ``fast_path`` enabled.

    Identity: the manager registers under its key's UUID, proving the key to
    the signaling server; offers and answers are signed messages the peer
    checks (sender's UUID derived from the signing key, addressed to it,
    fresh, nonce unseen, sender in ``allow``), so the data channel, whose
    DTLS fingerprints are in the signed SDP, is authenticated end to end and
    neither the signaling server nor anyone on its path can splice itself
    in. The fast path is TLS pinned to the same keys.

    Args:
        identity: This endpoint's key; its UUID is the endpoint's UUID.
        name: This endpoint's name, shown to peers.
        signaling_url: ``wss://`` (or, on loopback, ``ws://``) URL of the
            signaling server.
        secret: Shared secret of the signaling server.
        handler: Answers requests from peers.
        allow: Which peers this endpoint connects to, accepts and serves
            (checked when connecting and on every request). The default
            allows nobody; `PeerAllowlist.any` allows every identity.
        timeout: Default request timeout, and the bound on every internal
            wait (connecting, buffer space, fast-path steps).
        fast_path: Whether to move large bodies over direct TCP.
        fast_path_host: Where the fast-path listener binds: an address, a
            wildcard (``0.0.0.0``), or ``None`` (the default) for the local
            address of each peer connection's selected ICE candidate pair
            (one listener per such address, opened when first needed).
        fast_path_port: Port of the fast-path listener(s); 0 picks free ones.
        fast_path_advertised_host: Address peers are told to connect to
            (default: ``fast_path_host`` if it is an address, else the local
            address of the connection's selected ICE pair; never a
            wildcard). A peer that cannot connect gets the body over WebRTC.
        fast_path_threshold: Smallest body sent over the fast path.
        chunk_size: Largest data channel message (64 KiB is safe with any
            WebRTC implementation).
        reconnect_max_delay: Longest pause between signaling reconnects.
        signaling_ca_file: CA file trusted for a ``wss://`` signaling server
            (default: the system trust store).
        max_body: Largest body accepted from a peer over the fast path.
        request_channel: Whether requests to a peer that also has the fast
            path travel over a TLS request channel to its fast-path listener
            (`proxystore.p2p.channel`) rather than the data channel.

    Example:
        ```
        manager = PeerManager(
            identity, "site-a", "wss://host:8765", secret, handler, allow=allowlist
        )
        await manager.start()
        reply = await manager.request(other_uuid, PeerMessage({"op": "get"}))
        await manager.close()
        ```
    """

    def __init__(
        self,
        identity: Identity,
        name: str,
        signaling_url: str,
        secret: str,
        handler: Handler,
        *,
        allow: Callable[[str], bool] | None = None,
        timeout: float = 30.0,
        fast_path: bool = True,
        fast_path_host: str | None = None,
        fast_path_port: int = 0,
        fast_path_advertised_host: str | None = None,
        fast_path_threshold: int = DEFAULT_FAST_PATH_THRESHOLD,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        reconnect_max_delay: float = 2.0,
        signaling_ca_file: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        request_channel: bool = True,
    ) -> None:
        self.identity = identity
        self._request_channel = request_channel
        self.uuid = identity.uuid
        self.name = name
        self._allow = allow if allow is not None else PeerAllowlist()
        self._max_body = max_body
        self._replay = ReplayGuard()
        self._handler = handler
        self._timeout = timeout
        self._fast_path_enabled = fast_path
        self._fast_path_host = fast_path_host
        self._fast_path_port = fast_path_port
        self._fast_path_advertised_host = fast_path_advertised_host
        self._fast_path_threshold = fast_path_threshold
        self._chunk_size = chunk_size
        self._signaling = SignalingClient(
            signaling_url,
            identity,
            name,
            secret,
            self._on_signal,
            timeout=timeout,
            reconnect_max_delay=reconnect_max_delay,
            ca_file=signaling_ca_file,
        )
        self._fast_path: FastPathServer | None = None
        self._connections: dict[str, PeerConnection] = {}
        # Futures every request to a not-yet-connected peer waits on; resolved
        # by whichever attempt (our offer or the peer's) connects first.
        self._connecting: dict[str, asyncio.Future[PeerConnection]] = {}
        self._dialing: dict[str, asyncio.Task[None]] = {}
        self._accepting: dict[str, asyncio.Task[None]] = {}
        self._answers: dict[
            str, tuple[str, asyncio.Future[tuple[dict[str, Any], bytes]]]
        ] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Closing lost connections is never cancelled, only awaited.
        self._closers: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    @property
    def connected_to_signaling(self) -> bool:
        """Whether the manager is registered with the signaling server now."""
        return self._signaling.connected

    @property
    def signaling_refused(self) -> str | None:
        """Why the signaling server refused our registration, if it did."""
        return self._signaling.refused

    @property
    def signaling_attempted(self) -> bool:
        """Whether a first attempt to register has finished (either way)."""
        return self._signaling.attempted

    @property
    def fast_path_server(self) -> FastPathServer | None:
        """The fast-path listener, when enabled and started."""
        return self._fast_path

    async def wait_for_signaling(self, timeout: float) -> bool:
        """Wait until registered with the signaling server.

        Returns:
            Whether the manager was registered within ``timeout`` seconds.
        """
        return await self._signaling.wait_connected(timeout)

    @property
    def peers(self) -> list[str]:
        """UUIDs of peers with an open connection."""
        return [uuid for uuid, conn in self._connections.items() if conn.is_open]

    def peer_stats(self) -> dict[str, dict[str, Any]]:
        """Return, per peer with an open connection, its state and counters.

        ``request_channel`` says whether a request channel is open;
        ``requests_over_channel`` / ``requests_over_data_channel`` count our
        requests by transport, ``served_over_*`` the peer's, and
        ``resent_after_channel_loss`` the requests sent again over the data
        channel because their request channel broke.
        """
        return {
            uuid: conn.describe()
            for uuid, conn in self._connections.items()
            if conn.is_open
        }

    async def start(self) -> None:
        """Start the fast-path listener and connect to signaling in the background.

        Returns promptly: an unreachable signaling server is retried with
        backoff, and peering starts once it answers.
        """
        if self._started:
            return
        self._started = True
        if self._fast_path_enabled:
            server = FastPathServer(
                self.identity,
                self._fast_path_host,
                self._fast_path_port,
                timeout=self._timeout,
                advertised_host=self._fast_path_advertised_host,
            )
            try:
                await server.start()
            except PeerConnectionError as err:
                logger.warning("fast path disabled: %s", err)
            else:
                self._fast_path = server
        self._signaling.start()

    async def request(
        self,
        peer_uuid: str,
        message: PeerMessage,
        timeout: float | None = None,
        deadline: float | None = None,
        allocate: Allocate | None = None,
    ) -> PeerMessage:
        """Send ``message`` to a peer and return its handler's response.

        Deadlines are on progress, not totals: a large body moves for as
        long as it keeps moving.

        Args:
            peer_uuid: UUID of the endpoint to ask.
            message: The request.
            timeout: Seconds to wait for connecting, and the longest the
                exchange may go without a byte moving (default: the
                manager's timeout).
            deadline: Optional seconds for the whole exchange.
            allocate: Makes the buffer a response body coming over the fast
                path is received into (default: a new bytearray).

        Returns:
            The peer handler's response.

        Raises:
            PeerUnknownError: If no endpoint with that UUID is registered.
            PeerConnectionError: If the peer is not in this endpoint's
                allowlist, cannot be reached, refuses us or goes away before
                answering.
            StoreTimeoutError: If connecting takes over ``timeout``, no
                byte moves for ``timeout`` seconds, or ``deadline`` passes
                (the message says which and how many bytes moved).
            PeerError: If the peer's handler raised.
            SerializationError: If the header is not JSON-serializable.
        """
        if self._closed or not self._started:
            raise PeerConnectionError(
                f"peer {peer_uuid}", "the peer manager is not running"
            )
        timeout = self._timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        began = loop.time()
        end = None if deadline is None else began + deadline
        connect = timeout if end is None else min(timeout, end - began)
        connection = self._connections.get(peer_uuid)
        if connection is not None and connection.is_open and self._allow(peer_uuid):
            # Connected already: no wait to bound (saves a task per request).
            return await connection.request(
                message, idle=timeout, deadline=end, allocate=allocate, began=began
            )
        try:
            connection = await asyncio.wait_for(self._connect(peer_uuid), connect)
            if connection is None:
                return await asyncio.wait_for(
                    self._handler(self.uuid, message), connect
                )
        except StoreTimeoutError:
            raise
        except asyncio.TimeoutError as err:
            raise StoreTimeoutError(f"peer {peer_uuid}", connect, "connect") from err
        return await connection.request(
            message, idle=timeout, deadline=end, allocate=allocate, began=began
        )

    async def close(self) -> None:
        """Close all peer connections, the fast-path listener and the signaling link."""
        if self._closed:
            return
        self._closed = True
        await self._signaling.close()
        waiting: list[asyncio.Future[Any]] = [*self._connecting.values()]
        waiting.extend(answer for _, answer in self._answers.values())
        for future in waiting:
            if not future.done():
                future.set_exception(
                    PeerConnectionError(f"endpoint {self.uuid}", "peer manager closed")
                )
        self._connecting.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._timeout)
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(conn.aclose() for conn in connections))
        if self._closers:
            await asyncio.wait(list(self._closers), timeout=self._timeout)
        if self._fast_path is not None:
            await self._fast_path.close()

    async def __aenter__(self) -> PeerManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connect(self, peer_uuid: str) -> PeerConnection | None:
        """Return the connection to ``peer_uuid`` (``None`` for ourselves)."""
        if peer_uuid == self.uuid:
            return None
        if not self._allow(peer_uuid):
            raise PeerConnectionError(
                f"peer {peer_uuid}",
                f"not in the peers.allow of endpoint {self.name!r} "
                f"(add it with: proxystore-endpoint peers add {self.name} {peer_uuid})",
            )
        return await self._connection_to(peer_uuid)

    async def _connection_to(self, peer_uuid: str) -> PeerConnection:
        connection = self._connections.get(peer_uuid)
        if connection is not None and connection.is_open:
            return connection
        future = self._connecting.get(peer_uuid)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Nobody may await a failed attempt; retrieving keeps asyncio quiet.
            future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
            self._connecting[peer_uuid] = future
            if peer_uuid not in self._accepting:
                # The attempt is shared, so it gets the manager's timeout
                # rather than that of whichever request happened to start it.
                self._dialing[peer_uuid] = self._spawn(
                    self._dial_and_adopt(peer_uuid, self._timeout)
                )
        return await asyncio.shield(future)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _new_peer_connection(self) -> RTCPeerConnection:
        # No STUN/TURN: peers reach each other by host candidates only.
        apply_address_policy()
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def _listen_for(self, pc: RTCPeerConnection, peer_uuid: str) -> None:
        """Open the fast-path listener for our address on ``pc`` if needed.

        After the connection is adopted, so no message the peer sends on the
        open channel meanwhile is missed; until the listener is up, bodies
        take the data channel.
        """
        local_host = selected_local_address(pc)
        if self._fast_path is None or local_host is None:
            return
        try:
            await self._fast_path.listen_on(local_host)
        except PeerConnectionError as err:
            logger.warning("no fast path to peer %s: %s", peer_uuid, err)

    async def _adopt(
        self,
        peer_uuid: str,
        pc: RTCPeerConnection,
        channel: RTCDataChannel,
        peer_fast_path: bool,
        peer_public: bytes,
        local_host: str | None = None,
    ) -> None:
        connection = PeerConnection(
            peer_uuid,
            pc,
            channel,
            self._handler,
            self._on_connection_lost,
            timeout=self._timeout,
            fast_path=self._fast_path,
            peer_fast_path=peer_fast_path,
            fast_path_threshold=self._fast_path_threshold,
            chunk_size=self._chunk_size,
            identity=self.identity,
            peer_public=peer_public,
            allow=self._allow,
            max_body=self._max_body,
            local_host=local_host,
            request_channel=self._request_channel,
        )
        previous = self._connections.get(peer_uuid)
        self._connections[peer_uuid] = connection
        if previous is not None:
            previous.lose("replaced by a new connection")
        # Handlers are attached above, so nothing the peer sends is missed
        # while the listener opens; waiters resume once it is up, so their
        # first large body can take the fast path.
        await self._listen_for(pc, peer_uuid)
        future = self._connecting.pop(peer_uuid, None)
        if future is not None and not future.done():
            future.set_result(connection)
        logger.info(
            "%s connected to peer %s (local address %s)",
            self.uuid,
            peer_uuid,
            local_host,
        )

    def _fail_attempt(self, peer_uuid: str, error: BaseException) -> None:
        if peer_uuid in self._dialing or peer_uuid in self._accepting:
            return  # another attempt is still running and will settle the waiters
        future = self._connecting.pop(peer_uuid, None)
        if future is not None and not future.done():
            future.set_exception(error)

    def _on_connection_lost(self, connection: PeerConnection) -> None:
        if self._connections.get(connection.peer_uuid) is connection:
            del self._connections[connection.peer_uuid]
        if self._closed:
            return  # close() closes every connection itself
        task = asyncio.get_running_loop().create_task(connection.aclose())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _dial_and_adopt(self, peer_uuid: str, timeout: float) -> None:
        task = asyncio.current_task()
        error: BaseException | None = None
        try:
            await asyncio.wait_for(self._dial(peer_uuid), timeout)
        except PeerError as err:
            error = err
        except asyncio.TimeoutError as err:
            error = StoreTimeoutError(f"peer {peer_uuid}", timeout, "connect")
            error.__cause__ = err
        except Exception as err:
            error = PeerConnectionError(
                f"peer {peer_uuid}", f"connecting failed: {err!r}"
            )
            error.__cause__ = err
        finally:
            if self._dialing.get(peer_uuid) is task:
                del self._dialing[peer_uuid]
        if error is not None:
            self._fail_attempt(peer_uuid, error)

    async def _dial(self, peer_uuid: str) -> None:
        # Wait out the first connection attempt only: once one has failed,
        # report the outage now rather than at the request's timeout.
        if not self._signaling.connected and (
            not await self._signaling.wait_attempted(self._timeout)
            or not self._signaling.connected
        ):
            raise PeerConnectionError(
                self._signaling.url,
                f"not connected to the signaling server ({self._signaling.last_error})",
            )
        loop = asyncio.get_running_loop()
        session = secrets.token_hex(8)
        answer: asyncio.Future[tuple[dict[str, Any], bytes]] = loop.create_future()
        opened: asyncio.Future[None] = loop.create_future()
        self._answers[session] = (peer_uuid, answer)
        pc = self._new_peer_connection()
        try:
            channel = pc.createDataChannel(CHANNEL_LABEL, ordered=True)
            channel.on("open", lambda: _settle(opened))
            _fail_on_disconnect(pc, opened, peer_uuid)
            await pc.setLocalDescription(await pc.createOffer())
            await self._send_signed(
                peer_uuid,
                kind="offer",
                session=session,
                sdp=pc.localDescription.sdp,
                fast_path=self._fast_path is not None,
            )
            reply, peer_public = await answer
            if reply.get("kind") == "refused":
                raise PeerConnectionError(
                    f"peer {peer_uuid}",
                    f"refused the connection: {reply.get('reason')}",
                )
            sdp = reply.get("sdp")
            if not isinstance(sdp, str):
                raise PeerConnectionError(f"peer {peer_uuid}", "answer without SDP")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            await opened
        except BaseException:
            await _close_quietly(pc, self._timeout)
            raise
        finally:
            self._answers.pop(session, None)
        await self._adopt(
            peer_uuid,
            pc,
            channel,
            reply.get("fast_path") is True,
            peer_public,
            selected_local_address(pc),
        )

    async def _send_signed(self, peer_uuid: str, **fields: Any) -> None:
        body = self.identity.new_body(peer_uuid, **fields)
        await self._signaling.send(
            {
                "type": "relay",
                "target": peer_uuid,
                "payload": {"signed": self.identity.sign(body)},
            }
        )

    async def _accept_and_adopt(
        self, peer_uuid: str, offer: dict[str, Any], peer_public: bytes
    ) -> None:
        task = asyncio.current_task()
        error: BaseException | None = None
        try:
            await asyncio.wait_for(
                self._accept(peer_uuid, offer, peer_public), self._timeout
            )
        except asyncio.TimeoutError as err:
            error = StoreTimeoutError(f"peer {peer_uuid}", self._timeout, "accept")
            error.__cause__ = err
        except Exception as err:
            logger.warning("could not accept a connection from %s: %r", peer_uuid, err)
            error = PeerConnectionError(
                f"peer {peer_uuid}", f"accepting failed: {err!r}"
            )
            error.__cause__ = err
        finally:
            if self._accepting.get(peer_uuid) is task:
                del self._accepting[peer_uuid]
        if error is not None:
            self._fail_attempt(peer_uuid, error)

    async def _accept(
        self, peer_uuid: str, offer: dict[str, Any], peer_public: bytes
    ) -> None:
        session, sdp = offer.get("session"), offer.get("sdp")
        if not isinstance(session, str) or not isinstance(sdp, str):
            raise PeerConnectionError(f"peer {peer_uuid}", "malformed offer")
        loop = asyncio.get_running_loop()
        channel_ready: asyncio.Future[RTCDataChannel] = loop.create_future()
        pc = self._new_peer_connection()

        def on_datachannel(channel: RTCDataChannel) -> None:
            if not channel_ready.done():
                channel_ready.set_result(channel)

        pc.on("datachannel", on_datachannel)
        _fail_on_disconnect(pc, channel_ready, peer_uuid)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self._send_signed(
                peer_uuid,
                kind="answer",
                session=session,
                sdp=pc.localDescription.sdp,
                fast_path=self._fast_path is not None,
            )
            channel = await channel_ready
            if channel.readyState != "open":
                opened: asyncio.Future[None] = loop.create_future()
                channel.on("open", lambda: _settle(opened))
                _fail_on_disconnect(pc, opened, peer_uuid)
                await opened
        except BaseException:
            await _close_quietly(pc, self._timeout)
            raise
        await self._adopt(
            peer_uuid,
            pc,
            channel,
            offer.get("fast_path") is True,
            peer_public,
            selected_local_address(pc),
        )

    def _on_signal(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "relay":
            source, payload = message.get("source"), message.get("payload")
            if isinstance(source, str) and isinstance(payload, dict):
                self._on_relay(source, payload)
        elif kind == "unknown_peer":
            session = _session_of(message.get("payload"))
            pending = self._answers.get(session) if isinstance(session, str) else None
            if pending is not None and not pending[1].done():
                pending[1].set_exception(PeerUnknownError(pending[0]))
        elif kind == "peer_gone":
            uuid = message.get("uuid")
            if isinstance(uuid, str):
                self._on_peer_gone(uuid)

    def _open_relay(
        self, source: str, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes]:
        body, public = open_signed(payload.get("signed"))
        if body["from"] != source:
            raise IdentityError(f"signed by {body['from']}, relayed as from {source}")
        # Before the nonce cache, so only allowed peers can fill it.
        if not self._allow(source):
            raise IdentityError("sender is not in peers.allow")
        self._replay.check(body, to=self.uuid)
        return body, public

    def _on_relay(self, source: str, payload: dict[str, Any]) -> None:
        try:
            body, public = self._open_relay(source, payload)
        except IdentityError as err:
            logger.warning("refused a session message from %s: %s", source, err)
            self._on_invalid_relay(source, payload, err)
            return
        kind = body.get("kind")
        if kind in ("answer", "refused"):
            session = body.get("session")
            pending = self._answers.get(session) if isinstance(session, str) else None
            if pending is not None and pending[0] == source and not pending[1].done():
                pending[1].set_result((body, public))
        elif kind == "offer" and not self._closed:
            if source in self._dialing and self.uuid > source:
                # Both sides dialed at once: the larger UUID's offer wins, so
                # the peer drops its own attempt and answers ours.
                return
            for attempts in (self._dialing, self._accepting):
                superseded = attempts.pop(source, None)
                if superseded is not None:
                    superseded.cancel()
            self._accepting[source] = self._spawn(
                self._accept_and_adopt(source, body, public)
            )

    def _on_invalid_relay(
        self, source: str, payload: dict[str, Any], error: IdentityError
    ) -> None:
        # Fail fast rather than at the timeout: an attempt of ours whose answer
        # does not verify fails now, and a peer whose offer we refuse is told
        # so (signed, so only a real refusal by us fails its attempt).
        session = _session_of(payload)
        if session is None or self._closed:
            return
        pending = self._answers.get(session)
        if pending is not None and pending[0] == source:
            if not pending[1].done():
                pending[1].set_exception(
                    PeerConnectionError(
                        f"peer {source}", f"invalid session description: {error}"
                    )
                )
        elif _kind_of(payload) == "offer" and not isinstance(error, ReplayError):
            # No answer to a replay: it would fail the genuine attempt.
            self._spawn(self._refuse(source, session, str(error)))

    async def _refuse(self, peer_uuid: str, session: str, reason: str) -> None:
        with contextlib.suppress(PeerError):
            await self._send_signed(
                peer_uuid, kind="refused", session=session, reason=reason
            )

    def _on_peer_gone(self, uuid: str) -> None:
        gone = PeerConnectionError(
            f"peer {uuid}", "disconnected from the signaling server"
        )
        connection = self._connections.get(uuid)
        if connection is not None:
            connection.lose(str(gone))
        for attempts in (self._dialing, self._accepting):
            task = attempts.pop(uuid, None)
            if task is not None:
                task.cancel()
        self._fail_attempt(uuid, gone)


def _fail_on_disconnect(
    pc: RTCPeerConnection, future: asyncio.Future[Any], peer_uuid: str
) -> None:
    """Fail ``future`` as soon as ``pc`` fails or closes, instead of at timeout."""

    def on_state_change() -> None:
        if pc.connectionState in ("failed", "closed") and not future.done():
            future.set_exception(
                PeerConnectionError(
                    f"peer {peer_uuid}", f"connection {pc.connectionState}"
                )
            )
            # Mark retrieved: the attempt may already have given up on it.
            future.exception()

    pc.on("connectionstatechange", on_state_change)


def _unverified_field(payload: object, field: str) -> str | None:
    signed = payload.get("signed") if isinstance(payload, dict) else None
    body = signed.get("body") if isinstance(signed, dict) else None
    value = body.get(field) if isinstance(body, dict) else None
    return value if isinstance(value, str) and len(value) <= 64 else None


def _session_of(payload: object) -> str | None:
    """Return the session id of a (possibly unverified) relayed payload."""
    return _unverified_field(payload, "session")


def _kind_of(payload: object) -> str | None:
    """Return the kind of a (possibly unverified) relayed payload."""
    return _unverified_field(payload, "kind")


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _close_quietly(pc: RTCPeerConnection, timeout: float) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pc.close(), timeout)
