"""One WebRTC connection to a peer, carrying framed requests and responses."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel, RTCPeerConnection

from proxystore.exceptions import (
    LimitExceededError,
    PeerConnectionError,
    PeerError,
    SerializationError,
    StoreTimeoutError,
)
from proxystore.p2p.channel import (
    CHANNEL_CHUNK_SIZE,
    ChannelClosedError,
    RequestChannel,
    dial_channel,
)
from proxystore.p2p.fastpath import (
    PROGRESS_LOG_BYTES,
    Allocate,
    Body,
    FastPathServer,
    FastPathTicket,
    fetch,
    transfer_deadline_error,
    transfer_stalled_error,
)
from proxystore.p2p.framing import (
    DEFAULT_CHUNK_SIZE,
    Envelope,
    FramingError,
    Reassembler,
    encode_abort,
    encode_frames,
)
from proxystore.p2p.messages import Handler, PeerMessage

if TYPE_CHECKING:
    from proxystore.endpoint.identity import Identity

logger = logging.getLogger(__name__)

DEFAULT_HIGH_WATER = 4 * 1024 * 1024
DEFAULT_LOW_WATER = 1024 * 1024
DEFAULT_FAST_PATH_THRESHOLD = 1024 * 1024
DEFAULT_MAX_BODY = 2**48
CHANNEL_RETRY_FIRST = 0.5
"""Seconds before retrying a request channel that failed to open or broke."""
CHANNEL_RETRY_MAX = 60.0
"""Longest pause between two attempts to open a request channel."""
CHANNEL_STABLE = 60.0
"""A channel that lived this long resets the retry pause when it breaks."""
MAX_CHANNELS = 2
"""Request channels kept per connection (one dialed by each side at most)."""


def _allow_all(peer_uuid: str) -> bool:
    return True


class PeerConnection:
    """A data channel to one peer with request multiplexing and flow control.

    Requests and responses are framed (`proxystore.p2p.framing`) and matched
    by message id, so any number can be in flight at once. Sending pauses
    while the channel's ``bufferedAmount`` is above ``high_water`` and resumes
    on the channel's ``bufferedamountlow`` event. Bodies of at least
    ``fast_path_threshold`` bytes travel over the TCP fast path when both
    sides enabled it; when the receiver cannot reach the sender's listener it
    asks for the body over the data channel instead, and the sender stops
    offering the fast path to this peer.

    When both sides have the fast path, messages travel over a request
    channel (`proxystore.p2p.channel`) instead: a TLS stream to the peer's
    fast-path listener, pinned to its identity, opened by the first side
    with a request to send and used by both. Until it is open, while it is
    retried (with backoff) after a failure, and for any message it could
    not carry, the data channel carries the messages. Requests still
    awaiting their answer when a channel breaks are sent again over the
    data channel (so a handler may see a request twice: the endpoint's
    operations are idempotent).

    The peer is who its signed session description said (DTLS pins the data
    channel to the fingerprints in it), so ``peer_uuid`` and ``peer_public``
    are authenticated; each request is still checked against ``allow``, so
    a peer removed from the allowlist is refused from then on.

    Args:
        peer_uuid: UUID of the remote endpoint.
        pc: The connected peer connection (owned: closed by `aclose`).
        channel: Its open data channel.
        handler: Answers the peer's requests.
        on_lost: Called once when the connection stops working.
        timeout: Longest wait for buffer space, a fast-path fetch step, or
            closing.
        fast_path: Our fast-path listener, or None when we must not use it.
        peer_fast_path: Whether the peer accepts fast-path tickets.
        fast_path_threshold: Smallest body sent over the fast path.
        chunk_size: Largest data channel message.
        high_water: Buffered bytes above which sending waits.
        low_water: Buffered bytes at which sending resumes.
        identity: This endpoint's identity (signs fast-path fetches).
        peer_public: The peer's raw public key (pins its fast-path listener).
        allow: Whether the peer may still be served (checked per request).
        max_body: Largest fast-path body accepted from the peer.
        local_host: Our address on this connection (the local side of the
            ICE pair in use), which tickets advertise when the fast path
            listens per address or on a wildcard.
        request_channel: Whether to carry messages over a request channel
            when both sides have the fast path.
    """

    def __init__(
        self,
        peer_uuid: str,
        pc: RTCPeerConnection,
        channel: RTCDataChannel,
        handler: Handler,
        on_lost: Callable[[PeerConnection], None],
        *,
        timeout: float = 30.0,
        fast_path: FastPathServer | None = None,
        peer_fast_path: bool = False,
        fast_path_threshold: int = DEFAULT_FAST_PATH_THRESHOLD,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int = DEFAULT_LOW_WATER,
        identity: Identity | None = None,
        peer_public: bytes = b"",
        allow: Callable[[str], bool] = _allow_all,
        max_body: int = DEFAULT_MAX_BODY,
        local_host: str | None = None,
        request_channel: bool = True,
    ) -> None:
        self.peer_uuid = peer_uuid
        self.local_host = local_host
        self.peer_public = peer_public
        self._identity = identity
        self._allow = allow
        self._max_body = max_body
        self._pc = pc
        self._channel = channel
        self._handler = handler
        self._on_lost = on_lost
        self._timeout = timeout
        self._fast_path = fast_path
        self._offer_fast_path = (
            fast_path is not None and peer_fast_path and identity is not None
        )
        self._fast_path_threshold = fast_path_threshold
        self._chunk_size = chunk_size
        self._high_water = high_water
        self._reassembler = Reassembler()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Envelope]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writable = asyncio.Event()
        self._lost_reason: str | None = None
        self._lost = asyncio.Event()
        self._target = f"peer {peer_uuid}"
        self.bytes_moved = 0
        """Bytes sent and received on this connection (data channel and fast
        path): what progress deadlines watch."""
        self._next_log = PROGRESS_LOG_BYTES
        self._channel_wanted = (
            request_channel
            and fast_path is not None
            and peer_fast_path
            and identity is not None
        )
        self._streams: list[RequestChannel] = []
        # The channel ticket we issued last: a new one withdraws it, so a
        # peer holds at most one unused channel token of ours.
        self._channel_ticket: FastPathTicket | None = None
        self._opening_stream = False
        self._stream_retry_at = 0.0
        self._stream_backoff = CHANNEL_RETRY_FIRST
        # Requests sent over a request channel and not answered yet: what to
        # send again over the data channel if that channel breaks.
        self._on_stream: dict[
            int, tuple[RequestChannel, dict[str, Any], bytes | bytearray | memoryview]
        ] = {}
        self.stats = {
            "requests_over_channel": 0,
            "requests_over_data_channel": 0,
            "served_over_channel": 0,
            "served_over_data_channel": 0,
            "resent_after_channel_loss": 0,
            "channels_opened": 0,
        }
        """Counters of this connection's requests per transport."""

        channel.bufferedAmountLowThreshold = low_water
        channel.on("bufferedamountlow", self._writable.set)
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.lose("data channel closed"))
        pc.on("connectionstatechange", self._on_state_change)

    @property
    def is_open(self) -> bool:
        """Whether requests can be sent."""
        return self._lost_reason is None and self._channel.readyState == "open"

    async def wait_lost(self, timeout: float) -> bool:
        """Wait until the connection is lost; return whether it was in time."""
        try:
            await asyncio.wait_for(self._lost.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @property
    def request_channel_open(self) -> bool:
        """Whether a request channel is open now."""
        return any(stream.is_open for stream in self._streams)

    def describe(self) -> dict[str, Any]:
        """Return this connection's state and counters (JSON-serializable)."""
        return {
            "request_channel": self.request_channel_open,
            "local_address": self.local_host,
            **self.stats,
        }

    async def request(
        self,
        message: PeerMessage,
        *,
        idle: float | None = None,
        deadline: float | None = None,
        allocate: Allocate | None = None,
        began: float | None = None,
    ) -> PeerMessage:
        """Send a request and wait for the peer handler's response.

        Deadlines are on progress: the request fails when no byte moved on
        the connection for ``idle`` seconds, however long a moving transfer
        takes, or when the optional total ``deadline`` passes.

        Args:
            message: The request.
            idle: Longest time without a byte moving (default: the
                connection's timeout).
            deadline: End of the whole request, in the running loop's
                `time()` (default: none).
            allocate: Makes the buffer a response body coming over the
                fast path is received into (default: a new bytearray).
            began: When the caller's request began, in the running loop's
                `time()` (default: now): errors count from there, so a
                deadline error quotes the seconds the caller gave.

        Raises:
            PeerConnectionError: If the connection is or gets lost.
            PeerError: If the peer's handler failed.
            SerializationError: If the header is not JSON-serializable.
            StoreTimeoutError: If nothing moved for ``idle`` seconds or
                ``deadline`` passed (the message says which, and how many
                bytes had moved).
        """
        self._check_open()
        idle = self._timeout if idle is None else idle
        message_id = next(self._ids)
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        loop = asyncio.get_running_loop()
        started = (loop.time() if began is None else began, self.bytes_moved)
        fields: dict[str, Any] = {"header": message.header}
        stream = self._request_stream()
        if stream is not None:
            self._on_stream[message_id] = (stream, fields, message.body)
            self.stats["requests_over_channel"] += 1
        else:
            self.stats["requests_over_data_channel"] += 1
        try:
            await self._send(message_id, False, fields, message.body, via=stream)
            envelope = await self._wait_moving(future, idle, deadline, started)
        except StoreTimeoutError:
            on_stream = self._on_stream.pop(message_id, None)
            if on_stream is not None and on_stream[0].is_open:
                # Nothing came back on the channel for the idle timeout: it
                # may be dead without an error (a peer gone silently), so the
                # next requests take the data channel until it is reopened.
                on_stream[0].close(f"a request on it moved nothing for {idle:g}s")
            raise
        finally:
            self._pending.pop(message_id, None)
            self._on_stream.pop(message_id, None)
        error = envelope.fields.get("error")
        if error is not None:
            raise PeerError(
                f"peer {self.peer_uuid} failed to handle the request: {error}"
            )
        return await self._to_message(envelope, idle, deadline, started, allocate)

    async def _wait_moving(
        self,
        future: asyncio.Future[Envelope],
        idle: float,
        deadline: float | None,
        started: tuple[float, int],
    ) -> Envelope:
        """Wait for ``future`` while bytes keep moving on the connection."""
        loop = asyncio.get_running_loop()
        while True:
            last = self._progress_mark()
            wait = idle if deadline is None else min(idle, deadline - loop.time())
            done, _ = await asyncio.wait([future], timeout=max(wait, 0.0))
            if done:
                return future.result()
            moved = self.bytes_moved - started[1]
            if deadline is not None and loop.time() >= deadline:
                raise transfer_deadline_error(
                    self._target, deadline - started[0], moved
                )
            if self._progress_mark() == last:
                raise transfer_stalled_error(
                    self._target, idle, moved, loop.time() - started[0]
                )

    def _progress_mark(self) -> tuple[int, int]:
        # What we handed the channel counts when sent; it is still on its way
        # while the channel's buffer drains, which is progress too.
        buffered = self._channel.bufferedAmount
        return self.bytes_moved, buffered + sum(s.buffered for s in self._streams)

    def _moved(self, nbytes: int) -> None:
        self.bytes_moved += nbytes
        if self.bytes_moved >= self._next_log:
            self._next_log = self.bytes_moved + PROGRESS_LOG_BYTES
            logger.debug(
                "connection to %s: %d bytes moved", self.peer_uuid, self.bytes_moved
            )

    def lose(self, reason: str) -> None:
        """Mark the connection broken and fail every request waiting on it."""
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        self._lost.set()
        logger.debug("connection to %s lost: %s", self.peer_uuid, reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._lost_error())
        self._writable.set()
        if self._channel_ticket is not None and self._fast_path is not None:
            self._fast_path.withdraw(self._channel_ticket)
        for stream in list(self._streams):
            stream.close(reason)
        self._on_lost(self)

    async def aclose(self) -> None:
        """Close the data channel and peer connection and stop serving requests."""
        self.lose("connection closed")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._timeout)
        for stream in list(self._streams):
            await stream.aclose(self._timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pc.close(), self._timeout)

    def _lost_error(self) -> PeerConnectionError:
        # A fresh instance per raise: one shared across waiters would pile up
        # their tracebacks.
        return PeerConnectionError(self._target, self._lost_reason or "lost")

    def _check_open(self) -> None:
        if self._lost_reason is None and self._channel.readyState != "open":
            self.lose(f"data channel is {self._channel.readyState}")
        if self._lost_reason is not None:
            raise self._lost_error()

    def _on_state_change(self) -> None:
        if self._pc.connectionState in ("failed", "closed"):
            self.lose(f"peer connection {self._pc.connectionState}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self,
        message_id: int,
        is_response: bool,
        fields: dict[str, Any],
        body: bytes | bytearray | memoryview,
        *,
        inline: bool = False,
        via: RequestChannel | None = None,
    ) -> None:
        """Send one message over ``via`` (a request channel) or the data channel.

        A message the request channel could not carry goes over the data
        channel, unless it is a request the channel's loss already sent again.
        """
        ticket: FastPathTicket | None = None
        if (
            not inline
            and self._offer_fast_path
            and self._fast_path is not None
            and len(body) >= self._fast_path_threshold
            # A listener serves our address on this connection (it may open
            # a moment after the connection does).
            and self._fast_path.ticket_host(self.local_host) is not None
        ):
            ticket = self._fast_path.offer(
                body, self.peer_public, ttl=self._timeout, local_host=self.local_host
            )
            fields = {**fields, "fast_path": ticket.to_json()}
            body = b""
        finished = started = False
        try:
            if via is not None:
                try:
                    await self._send_over(via, message_id, is_response, fields, body)
                    finished = True
                    return
                except ChannelClosedError:
                    if not is_response:
                        if self._on_stream.pop(message_id, None) is None:
                            finished = True  # `_on_stream_closed` resent it
                            return
                        self.stats["resent_after_channel_loss"] += 1
            for frame in encode_frames(
                message_id,
                is_response=is_response,
                fields=fields,
                body=body,
                chunk_size=self._chunk_size,
            ):
                await self._wait_writable()
                self._channel.send(frame)
                self._moved(len(frame))
                started = True
            finished = True
        finally:
            if not finished:
                if ticket is not None and self._fast_path is not None:
                    self._fast_path.withdraw(ticket)
                if started and self.is_open:
                    # Let the peer free what it buffered of the unfinished message.
                    self._channel.send(
                        encode_abort(message_id, is_response=is_response)
                    )

    async def _send_over(
        self,
        via: RequestChannel,
        message_id: int,
        is_response: bool,
        fields: dict[str, Any],
        body: bytes | bytearray | memoryview,
    ) -> None:
        for frame in encode_frames(
            message_id,
            is_response=is_response,
            fields=fields,
            body=body,
            chunk_size=CHANNEL_CHUNK_SIZE,
        ):
            await via.send_frame(frame)
            self._moved(len(frame))

    async def _wait_writable(self) -> None:
        while True:
            self._check_open()
            if self._channel.bufferedAmount <= self._high_water:
                return
            self._writable.clear()
            try:
                await asyncio.wait_for(self._writable.wait(), self._timeout)
            except asyncio.TimeoutError as err:
                self.lose(f"data channel stalled for {self._timeout:g}s")
                raise PeerConnectionError(self._target, "data channel stalled") from err

    def _on_message(self, data: bytes | str) -> None:
        if isinstance(data, str):
            self._protocol_error("text message on a binary channel")
            return
        self._on_frame(data, self._reassembler, None)

    def _on_stream_frame(self, stream: RequestChannel, frame: bytes) -> None:
        self._on_frame(frame, stream.reassembler, stream)

    def _on_frame(
        self, data: bytes, reassembler: Reassembler, via: RequestChannel | None
    ) -> None:
        """Handle one frame from the data channel or (``via``) a request channel.

        Both feed the same dispatch: a request is served (and checked) the
        same whichever way it came.
        """
        self._moved(len(data))
        try:
            envelope = reassembler.feed(data)
        except FramingError as err:
            self._protocol_error(str(err))
            return
        if envelope is None:
            return
        if "fallback" in envelope.fields and not envelope.is_response:
            self._spawn(self._serve_fallback(envelope))
        elif "channel" in envelope.fields and not envelope.is_response:
            self._spawn(self._serve_channel_request(envelope))
        elif envelope.is_response:
            future = self._pending.get(envelope.message_id)
            if future is None or future.done():
                logger.debug(
                    "dropping late response %d from %s",
                    envelope.message_id,
                    self.peer_uuid,
                )
            else:
                future.set_result(envelope)
        else:
            over = "served_over_data_channel" if via is None else "served_over_channel"
            self.stats[over] += 1
            self._spawn(self._serve_request(envelope, via))

    def _protocol_error(self, reason: str) -> None:
        logger.warning("closing connection to %s: %s", self.peer_uuid, reason)
        self.lose(f"protocol error: {reason}")

    async def _to_message(
        self,
        envelope: Envelope,
        idle: float | None = None,
        deadline: float | None = None,
        started: tuple[float, int] | None = None,
        allocate: Allocate | None = None,
    ) -> PeerMessage:
        header = envelope.fields.get("header")
        if not isinstance(header, dict):
            raise FramingError(f"message from {self.peer_uuid} has no header object")
        body: Body = envelope.body
        if "fast_path" in envelope.fields:
            ticket = FastPathTicket.from_json(
                envelope.fields["fast_path"], max_length=self._max_body
            )
            if self._identity is None:
                raise PeerConnectionError(self._target, "fast path without identity")
            try:
                body = await fetch(
                    ticket,
                    identity=self._identity,
                    peer_public=self.peer_public,
                    timeout=self._timeout if idle is None else idle,
                    deadline=deadline,
                    progress=self._moved,
                    allocate=allocate,
                    began=None if started is None else started[0],
                )
            except PeerConnectionError as err:
                self._check_open()
                logger.warning(
                    "fast path to %s failed (%s); using the data channel",
                    self.peer_uuid,
                    err,
                )
                body = await self._fetch_inline(ticket, idle, deadline, started)
        return PeerMessage(header, body)

    async def _fetch_inline(
        self,
        ticket: FastPathTicket,
        idle: float | None,
        deadline: float | None,
        started: tuple[float, int] | None,
    ) -> bytearray:
        loop = asyncio.get_running_loop()
        message_id = next(self._ids)
        future: asyncio.Future[Envelope] = loop.create_future()
        self._pending[message_id] = future
        try:
            await self._send(message_id, False, {"fallback": ticket.token}, b"")
            envelope = await self._wait_moving(
                future,
                self._timeout if idle is None else idle,
                deadline,
                started or (loop.time(), self.bytes_moved),
            )
        finally:
            self._pending.pop(message_id, None)
        if "error" in envelope.fields:
            raise PeerConnectionError(
                self._target, f"fast-path fallback refused: {envelope.fields['error']}"
            )
        return envelope.body

    async def _serve_fallback(self, envelope: Envelope) -> None:
        # The peer cannot reach our listener: stop offering it the fast path.
        self._offer_fast_path = False
        token = envelope.fields["fallback"]
        body = None
        if self._fast_path is not None and isinstance(token, str):
            body = self._fast_path.reclaim(token)
        fields: dict[str, Any] = {"header": {}}
        if body is None:
            fields["error"] = "unknown or expired fast-path token"
        try:
            await self._send(
                envelope.message_id, True, fields, body or b"", inline=True
            )
        except PeerError as err:
            logger.debug("could not resend a body to %s: %s", self.peer_uuid, err)

    async def _serve_request(
        self, envelope: Envelope, via: RequestChannel | None = None
    ) -> None:
        fields: dict[str, Any]
        body: bytes | bytearray | memoryview = b""
        if not self._allow(self.peer_uuid):
            logger.warning(
                "refused a request from %s: not in peers.allow", self.peer_uuid
            )
            refusal = {
                "header": {},
                "error": "not allowed: not in the peer's allowlist",
            }
            with contextlib.suppress(PeerError):
                await self._send(
                    envelope.message_id, True, refusal, b"", via=_usable(via)
                )
            self.lose("peer removed from peers.allow")
            return
        try:
            request = await self._to_message(envelope)
            response = await self._handler(self.peer_uuid, request)
            fields, body = {"header": response.header}, response.body
        except LimitExceededError as err:
            # Refused before the body moved; answered in the shape the
            # endpoint's handler uses, so the peer sees the limit's name.
            limit = {"error": type(err).__name__, "message": str(err)}
            limit["limit"] = err.limit
            fields, body = {"header": {"ok": False, "error": limit}}, b""
        except Exception as err:
            logger.exception("handler failed on a request from %s", self.peer_uuid)
            fields = {"header": {}, "error": f"{type(err).__name__}: {err}"}
        try:
            try:
                await self._send(
                    envelope.message_id, True, fields, body, via=_usable(via)
                )
            except SerializationError as err:
                error = {"header": {}, "error": f"unsendable response: {err}"}
                await self._send(
                    envelope.message_id, True, error, b"", via=_usable(via)
                )
        except PeerError as err:
            logger.debug("could not answer %s: %s", self.peer_uuid, err)

    # Request channels.

    def _request_stream(self) -> RequestChannel | None:
        """Return the request channel to send on, and start opening one if due."""
        for stream in reversed(self._streams):
            if stream.is_open:
                return stream
        if (
            self._channel_wanted
            and not self._opening_stream
            and self._lost_reason is None
            and asyncio.get_running_loop().time() >= self._stream_retry_at
        ):
            self._opening_stream = True
            self._spawn(self._open_stream())
        return None

    async def _open_stream(self) -> None:
        try:
            ticket = await self._ask_channel_ticket()
            assert self._identity is not None
            reader, writer = await dial_channel(
                ticket,
                identity=self._identity,
                peer_public=self.peer_public,
                timeout=self._timeout,
            )
        except (PeerError, OSError, asyncio.TimeoutError) as err:
            self._stream_failed(f"cannot open a request channel: {err}")
        else:
            if self._lost_reason is not None:
                writer.transport.abort()
            else:
                self._adopt_stream(reader, writer, dialed=True)
        finally:
            self._opening_stream = False

    def _stream_failed(self, reason: str) -> None:
        delay = self._stream_backoff
        self._stream_backoff = min(2 * delay, CHANNEL_RETRY_MAX)
        self._stream_retry_at = asyncio.get_running_loop().time() + delay
        logger.info(
            "%s to %s; using the data channel (next try in %.3gs)",
            reason,
            self.peer_uuid,
            delay,
        )

    async def _ask_channel_ticket(self) -> FastPathTicket:
        """Ask the peer, over the data channel, for a request channel ticket."""
        loop = asyncio.get_running_loop()
        message_id = next(self._ids)
        future: asyncio.Future[Envelope] = loop.create_future()
        self._pending[message_id] = future
        try:
            await self._send(
                message_id, False, {"header": {}, "channel": "open"}, b"", inline=True
            )
            envelope = await asyncio.wait_for(future, self._timeout)
        finally:
            self._pending.pop(message_id, None)
        data = envelope.fields.get("channel")
        if data is None:
            error = envelope.fields.get("error", "the peer offers none")
            raise PeerConnectionError(self._target, f"no request channel: {error}")
        return FastPathTicket.from_json(data, max_length=0)

    async def _serve_channel_request(self, envelope: Envelope) -> None:
        fields: dict[str, Any] = {"header": {}}
        host = None
        if self._fast_path is not None and self._channel_wanted:
            host = self._fast_path.ticket_host(self.local_host)
        if not self._allow(self.peer_uuid):
            fields["error"] = "not allowed: not in the peer's allowlist"
        elif self._fast_path is None or host is None or not self._offer_fast_path:
            # (No offer either once the peer could not reach our listener.)
            fields["error"] = "no fast-path listener for this connection"
        else:
            if self._channel_ticket is not None:
                self._fast_path.withdraw(self._channel_ticket)
            ticket = self._fast_path.offer_channel(
                self.peer_public,
                self._accept_stream,
                ttl=self._timeout,
                local_host=self.local_host,
            )
            self._channel_ticket = ticket
            fields["channel"] = ticket.to_json()
        try:
            await self._send(envelope.message_id, True, fields, b"", inline=True)
        except PeerError as err:
            logger.debug("could not answer %s: %s", self.peer_uuid, err)

    def _accept_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Take a request channel the peer dialed with our token."""
        if self._lost_reason is not None or not self._allow(self.peer_uuid):
            return False
        self._adopt_stream(reader, writer, dialed=False)
        return True

    def _adopt_stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        dialed: bool,
    ) -> None:
        stream = RequestChannel(
            reader,
            writer,
            self._on_stream_frame,
            self._on_stream_closed,
            dialed=dialed,
        )
        self._streams.append(stream)
        self.stats["channels_opened"] += 1
        if len(self._streams) > MAX_CHANNELS:
            self._streams[0].close("replaced by a newer request channel")
        logger.info(
            "request channel to %s open (%s)",
            self.peer_uuid,
            "dialed" if dialed else "accepted",
        )

    def _on_stream_closed(
        self, stream: RequestChannel, reason: str, protocol_error: bool
    ) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        if protocol_error:
            # A protocol error on the channel is one on the connection.
            self._protocol_error(f"request channel: {reason}")
            return
        if self._lost_reason is not None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - stream.opened >= CHANNEL_STABLE:
            self._stream_backoff = CHANNEL_RETRY_FIRST
        self._stream_failed(f"request channel closed ({reason})")
        for message_id, (via, fields, body) in list(self._on_stream.items()):
            if via is stream:
                del self._on_stream[message_id]
                self.stats["resent_after_channel_loss"] += 1
                self._spawn(self._resend(message_id, fields, body))

    async def _resend(
        self,
        message_id: int,
        fields: dict[str, Any],
        body: bytes | bytearray | memoryview,
    ) -> None:
        """Send a request again over the data channel (its channel broke)."""
        future = self._pending.get(message_id)
        if future is None or future.done():
            return
        try:
            await self._send(message_id, False, fields, body)
        except PeerError as err:
            if not future.done():
                future.set_exception(err)


def _usable(stream: RequestChannel | None) -> RequestChannel | None:
    """Return ``stream`` if it can still carry an answer, else None."""
    return stream if stream is not None and stream.is_open else None
