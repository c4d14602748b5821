"""Request channels: peer messages over a persistent TLS stream.

Once two peers have a connection and both have the fast path, their requests
(not only large bodies) travel over one TLS 1.3 stream to the other side's
fast-path listener instead of the WebRTC data channel, whose round trip
(SCTP with a SACK per packet, DTLS in Python) dominates small requests. The
data channel stays open: a channel that cannot be opened or breaks falls
back to it (`proxystore.p2p.connection.PeerConnection`).

Opening one (the dialer is the side that first has a request to send):

1. The dialer asks over the data channel (``{"channel": "open"}``); the
   other side registers a one-time channel token for the dialer's identity
   key with its `FastPathServer` and answers with a ticket (its listener's
   address, as for a body).
2. The dialer connects, sends `CHANNEL_PREAMBLE`, completes TLS pinned to
   the listener's identity key, and proves the token with its own key (see
   `proxystore.p2p.fastpath`). The listener hands the streams to the
   connection the token was issued on, which answers `CHANNEL_ACCEPTED`.

Then both directions carry the frames of `proxystore.p2p.framing`, each
preceded by its length::

    length:u32 | frame

A length over the peer frame cap (1 MiB) is a protocol error: the channel
is closed before the frame is read. Every message that arrives is handled
exactly like one from the data channel (same allowlist check per request,
same limits), so the channel is only a faster wire, never another way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxystore.exceptions import PeerConnectionError
from proxystore.p2p.fastpath import (
    CHANNEL_ACCEPTED,
    CHANNEL_PREAMBLE,
    CHANNEL_READ_LIMIT,
    PUBLIC_KEY_SIZE,
    FastPathTicket,
    channel_proof,
    check_pinned,
    client_context,
)
from proxystore.p2p.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FRAME_HEADER,
    Reassembler,
)

if TYPE_CHECKING:
    from proxystore.endpoint.identity import Identity

logger = logging.getLogger(__name__)

LENGTH = struct.Struct("!I")
CHANNEL_CHUNK_SIZE = 256 * 1024
"""Largest frame a channel sends (below the 1 MiB cap every peer enforces)."""


class ChannelClosedError(PeerConnectionError):
    """The request channel closed; the message must take the data channel."""


class RequestChannel:
    """One open request channel: framed messages over a TLS stream.

    Args:
        reader: The stream's reader (TLS already established and
            authenticated).
        writer: The stream's writer.
        on_frame: Called with each frame received, in order.
        on_closed: Called once when the channel closes, with the reason and
            whether the peer broke the protocol.
        dialed: Whether this side dialed it (for stats and logs).
        max_frame_size: Largest frame accepted.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_frame: Callable[[RequestChannel, bytes], None],
        on_closed: Callable[[RequestChannel, str, bool], None],
        *,
        dialed: bool,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_frame = on_frame
        self._on_closed = on_closed
        self.dialed = dialed
        self.max_frame_size = max_frame_size
        self.reassembler = Reassembler(max_frame_size=max_frame_size)
        """Rebuilds the messages of this channel (its own: a message never
        spans two transports)."""
        self.opened = asyncio.get_running_loop().time()
        self.closed_reason: str | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @property
    def is_open(self) -> bool:
        """Whether messages can be sent."""
        return self.closed_reason is None

    @property
    def buffered(self) -> int:
        """Bytes written and not yet handed to the kernel."""
        transport = self._writer.transport
        return 0 if transport.is_closing() else transport.get_write_buffer_size()

    def cut(self) -> None:
        """Shut the underlying socket down, as a network failure would (tests)."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def send_frame(self, frame: bytes) -> None:
        """Write one frame and wait for room in the write buffer.

        Raises:
            ChannelClosedError: If the channel is or gets closed.
        """
        if self.closed_reason is not None:
            raise ChannelClosedError("request channel", self.closed_reason)
        self._writer.write(LENGTH.pack(len(frame)) + frame)
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as err:
            self.close(f"write failed: {err!r}")
        if self.closed_reason is not None:
            raise ChannelClosedError("request channel", self.closed_reason)

    def close(self, reason: str = "closed", *, protocol_error: bool = False) -> None:
        """Close the channel (idempotent) and report it once."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        # Abort, not close: nothing queued may be delivered any more, the
        # other side resends what it did not get an answer to.
        self._writer.transport.abort()
        if self._task is not asyncio.current_task():
            self._task.cancel()
        self._on_closed(self, reason, protocol_error)

    async def aclose(self, timeout: float) -> None:
        """Close the channel and wait (at most ``timeout``) for its reader."""
        self.close()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def _read_loop(self) -> None:
        reader = self._reader
        try:
            while self.closed_reason is None:
                header = await reader.readexactly(LENGTH.size)
                (size,) = LENGTH.unpack(header)
                if size > self.max_frame_size or size < FRAME_HEADER.size:
                    # Refused before a byte of it is read.
                    self.close(
                        f"protocol error: frame of {size} bytes (limit "
                        f"{self.max_frame_size})",
                        protocol_error=True,
                    )
                    return
                frame = await reader.readexactly(size)
                if self.closed_reason is None:
                    self._on_frame(self, frame)
        except asyncio.IncompleteReadError:
            self.close("closed by the peer")
        except (OSError, ssl.SSLError) as err:
            self.close(f"read failed: {err!r}")


async def dial_channel(
    ticket: FastPathTicket,
    *,
    identity: Identity,
    peer_public: bytes,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open an authenticated request channel to the listener of a ticket.

    Args:
        ticket: The channel ticket the peer answered with.
        identity: This endpoint's identity (proves the token).
        peer_public: The peer's raw public key; a listener presenting any
            other key is refused before the token is sent.
        timeout: Bound on every step (connect, TLS, the peer's answer).

    Returns:
        The TLS streams, once the peer accepted the channel.

    Raises:
        PeerConnectionError: If the listener cannot be reached, is not the
            expected peer, or does not accept the channel in time.
    """
    target = f"request channel {ticket.host}:{ticket.port}"
    if len(peer_public) != PUBLIC_KEY_SIZE:
        raise PeerConnectionError(target, "no identity key to pin the listener to")
    try:
        return await asyncio.wait_for(
            _dial(ticket, identity, peer_public, target, timeout), timeout
        )
    except PeerConnectionError:
        raise
    except (OSError, ssl.SSLError, EOFError, asyncio.TimeoutError) as err:
        raise PeerConnectionError(target, f"cannot open: {err!r}") from err


async def _dial(
    ticket: FastPathTicket,
    identity: Identity,
    peer_public: bytes,
    target: str,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        ticket.host, ticket.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    if not infos:
        raise PeerConnectionError(target, "address does not resolve")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    writer: asyncio.StreamWriter | None = None
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, CHANNEL_PREAMBLE)
        reader, writer = await asyncio.open_connection(
            sock=sock,
            ssl=client_context(),
            server_hostname="",
            ssl_handshake_timeout=timeout,
            limit=CHANNEL_READ_LIMIT,
        )
        ssl_object = writer.get_extra_info("ssl_object")
        der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        check_pinned(der, peer_public, target)
        token = bytes.fromhex(ticket.token)
        writer.write(token + identity.sign_bytes(channel_proof(token, peer_public)))
        try:
            answer = await reader.readexactly(len(CHANNEL_ACCEPTED))
        except asyncio.IncompleteReadError as err:
            raise PeerConnectionError(target, "channel refused") from err
        if answer != CHANNEL_ACCEPTED:
            raise PeerConnectionError(target, "unexpected answer")
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        sock.close()
        raise
    return reader, writer
