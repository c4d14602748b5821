"""Direct TLS transfer of large bodies between peers, pinned to their identities.

The side holding a large body registers it with its `FastPathServer` for one
named peer and sends the resulting `FastPathTicket` (host, port, one-time
token) over the authenticated data channel. The other side connects over TLS
1.3, checks that the certificate the listener presents carries the public key
of the peer it expects (learnt from that peer's signed session description:
no CA is involved), then presents the token signed with its own identity key
and reads the body::

    TLS 1.3 handshake (the listener's self-signed cert of its identity key)
    client -> server   token (32 bytes) | Ed25519 signature (64 bytes) over
                       CONTEXT + token + the listener's raw public key
    server -> client   length:u64 | body

The listener hands a body out only to the peer it was offered to (the
signature) with an unused, unexpired token; anything else is refused by
closing the connection before a single body byte is written.

The listener accepts in the event loop but runs each connection's TLS
(handshake, hello, body) in a worker thread on a blocking socket, as a plain
TLS sender would: encryption and ``send`` release the GIL, and no
intermediate buffer of the event loop's TLS layer copies the body.

The same listener also accepts *request channels*
(`proxystore.p2p.channel`): a connection that starts with the plaintext
`CHANNEL_PREAMBLE` instead of a TLS ClientHello is served in the event loop
(asyncio TLS streams), authenticated with a channel token the same way (the
signature over `CHANNEL_CONTEXT` instead of `CONTEXT`), and handed to the
callback registered with the token (`FastPathServer.offer_channel`)::

    client -> server   CHANNEL_PREAMBLE (plaintext)
    TLS 1.3 handshake  (as above: the client pins the listener's key)
    client -> server   token (32 bytes) | Ed25519 signature (64 bytes) over
                       CHANNEL_CONTEXT + token + the listener's raw public key
    server -> client   CHANNEL_ACCEPTED (1 byte), then length-prefixed frames

A token is only good for the kind of connection it was issued for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from proxystore._ratelimit import RateLimitedLog
from proxystore.exceptions import (
    LimitExceededError,
    PeerConnectionError,
    PeerError,
    StoreTimeoutError,
)

if TYPE_CHECKING:
    from proxystore.endpoint.identity import Identity

logger = logging.getLogger(__name__)

T = TypeVar("T")

TOKEN_SIZE = 32
SIGNATURE_SIZE = 64
HELLO_SIZE = TOKEN_SIZE + SIGNATURE_SIZE
PUBLIC_KEY_SIZE = 32
LENGTH = struct.Struct("!Q")
CONTEXT = b"proxystore-fastpath-v1\x00"
CHANNEL_CONTEXT = b"proxystore-channel-v1\x00"
CHANNEL_PREAMBLE = b"PSRC/1\r\n"
"""Sent in plaintext before a request channel's TLS handshake; its first byte
is never the first byte of a TLS record (0x16), which tells the two apart."""
DEFAULT_MAX_CONNECTIONS = 64
"""Fast-path connections a listener serves at once, by default."""

CHANNEL_ACCEPTED = b"\x01"
DEFAULT_STREAM_CHUNK = 4 * 1024 * 1024
MAX_HOST_LENGTH = 255
MAX_TICKET_LENGTH = 2**48


def transfer_deadline_error(
    target: str, deadline: float, moved: int, total: int | None = None
) -> StoreTimeoutError:
    """Return the error for a transfer whose total deadline passed while moving."""
    error = StoreTimeoutError(target, deadline, "transfer")
    of = f" of {total}" if total is not None else ""
    error.args = (
        f"transfer with {target} passed its total deadline of {deadline:.3g}s "
        f"with {moved}{of} bytes moved",
    )
    return error


def transfer_stalled_error(
    target: str, idle: float, moved: int, elapsed: float
) -> StoreTimeoutError:
    """Return the error for a transfer that moved no byte for ``idle`` seconds."""
    error = StoreTimeoutError(target, idle, "transfer")
    error.args = (
        f"transfer with {target} stalled: no bytes moved for {idle:g}s "
        f"({moved} bytes moved in {elapsed:.1f}s)",
    )
    return error


def is_wildcard(host: str) -> bool:
    """Return whether ``host`` is a wildcard (all interfaces) address."""
    if host in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _client_proof(token: bytes, server_public: bytes) -> bytes:
    return CONTEXT + token + server_public


def channel_proof(token: bytes, server_public: bytes) -> bytes:
    """Return what a request channel's dialer signs: unlike a fetch's proof."""
    return CHANNEL_CONTEXT + token + server_public


def check_pinned(der: bytes | None, peer_public: bytes, target: str) -> None:
    """Check that a listener's certificate carries ``peer_public``.

    Raises:
        PeerConnectionError: If it does not (or there is no certificate).
    """
    from proxystore.endpoint.identity import (
        IdentityError,
        public_key_of_certificate,
    )

    try:
        presented = public_key_of_certificate(der) if der else b""
    except IdentityError:
        presented = b""
    if len(peer_public) != PUBLIC_KEY_SIZE or not hmac.compare_digest(
        presented, peer_public
    ):
        raise PeerConnectionError(
            target, "listener does not hold the expected peer's identity key"
        )


@dataclasses.dataclass(frozen=True)
class FastPathTicket:
    """Where and how to fetch one body over the fast path.

    Attributes:
        host: Address of the holder's listener.
        port: Port of the holder's listener.
        token: Hex of the one-time token.
        length: Size of the body in bytes.
    """

    host: str
    port: int
    token: str
    length: int

    def to_json(self) -> dict[str, Any]:
        """Return the ticket as a JSON-serializable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(
        cls, data: object, max_length: int = MAX_TICKET_LENGTH
    ) -> FastPathTicket:
        """Validate and build a ticket received from a peer.

        Args:
            data: The decoded JSON ticket.
            max_length: Largest body the receiver accepts; a ticket for more
                is refused before any memory is set aside.

        Raises:
            PeerError: If ``data`` is not a well-formed ticket or announces
                more than ``max_length`` bytes.
        """
        if not isinstance(data, dict):
            raise PeerError(f"fast-path ticket is not an object: {type(data).__name__}")
        if set(data) != {"host", "port", "token", "length"}:
            raise PeerError(f"fast-path ticket has fields {sorted(data)[:8]}")
        host, port = data["host"], data["port"]
        token, length = data["token"], data["length"]
        if not (
            isinstance(host, str)
            and 0 < len(host) <= MAX_HOST_LENGTH
            and isinstance(port, int)
            and 0 < port < 65536
            and isinstance(token, str)
            and len(token) == 2 * TOKEN_SIZE
            and isinstance(length, int)
            and length >= 0
        ):
            raise PeerError("malformed fast-path ticket")
        try:
            bytes.fromhex(token)
        except ValueError:
            raise PeerError("fast-path ticket token is not hex") from None
        if length > max_length:
            raise LimitExceededError(
                "max_object_size",
                f"a peer's body of {length} bytes is over this endpoint's "
                f"max_object_size of {max_length} bytes",
            )
        return cls(host, port, token, length)


@dataclasses.dataclass
class _Listener:
    """A listening socket and the task accepting on it."""

    sock: socket.socket
    task: asyncio.Task[None] | None = None

    def getsockname(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)


def _recv_exactly(tls: ssl.SSLSocket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        piece = tls.recv(size - len(data))
        if not piece:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += piece
    return bytes(data)


ChannelAcceptor = Callable[[asyncio.StreamReader, asyncio.StreamWriter], bool]
"""Takes an authenticated request channel's streams; returns whether it kept them."""


@dataclasses.dataclass
class _Offer:
    body: memoryview
    peer_public: bytes
    expiry: asyncio.TimerHandle
    acceptor: ChannelAcceptor | None = None
    """Set for a request channel token (then ``body`` is empty)."""

    def expired(self) -> bool:
        return asyncio.get_running_loop().time() >= self.expiry.when()


def server_context(identity: Identity) -> ssl.SSLContext:
    """Return the listener's TLS 1.3 context presenting ``identity``'s certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    identity.load_into(context)
    return context


def client_context() -> ssl.SSLContext:
    """Return the fetcher's TLS 1.3 context.

    Certificate chains are not verified by OpenSSL: the fetcher pins the
    listener's public key to the peer identity it expects instead.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class FastPathServer:
    """A TLS listener that hands out registered bodies against one-time tokens.

    Where it listens and what it puts in tickets are separate settings, so
    that an endpoint's HTTP API can stay on loopback while peers on other
    hosts reach its fast path:

    - ``host`` set to an address: one listener there; tickets carry that
      address (or ``advertised_host``).
    - ``host`` a wildcard (``0.0.0.0``, ``::``): one listener on every
      interface; tickets carry ``advertised_host``, or else the local
      address of the peer connection the ticket is sent over.
    - ``host`` ``None``: a listener per local address that peer connections
      actually use (`listen_on`), opened on first need, so nothing listens on
      an interface no peer reaches us through.

    A ticket never carries a wildcard address.

    Args:
        identity: This endpoint's identity; its key signs the listener's
            certificate, which fetchers pin.
        host: Interface to listen on, a wildcard, or ``None`` (see above).
        port: Port to listen on; 0 picks a free one.
        timeout: Longest wait for a client's handshake and hello, and for
            each write to drain.
        chunk_size: Bytes written per ``drain()``.
        advertised_host: Address put in tickets, when peers must use another
            address than the listener's (NAT, containers). Never a wildcard.
        max_connections: Connections served at once, at most; others are
            closed at once (each costs a worker thread until it
            authenticates or times out, so unbounded ones could exhaust the
            process).
    """

    def __init__(
        self,
        identity: Identity,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        timeout: float = 30.0,
        chunk_size: int = DEFAULT_STREAM_CHUNK,
        advertised_host: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if type(max_connections) is not int or max_connections < 1:
            raise PeerError(
                "fast-path max_connections must be a positive integer, not "
                f"{max_connections!r}"
            )
        if advertised_host is not None and is_wildcard(advertised_host):
            raise PeerError(
                f"fast-path advertised address {advertised_host!r} is a wildcard; "
                "give an address peers can connect to"
            )
        self._identity = identity
        self._host = host
        self._advertised_host = advertised_host
        self._port = port
        self._timeout = timeout
        self._chunk_size = chunk_size
        self._servers: dict[str, _Listener] = {}
        self._binding: dict[str, asyncio.Future[_Listener]] = {}
        self._offers: dict[bytes, _Offer] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._sockets: set[_Served] = set()
        self._context = server_context(identity)
        self._max_connections = max_connections
        self._refusals = RateLimitedLog(logger)
        self.refused = 0
        """Connections closed unserved because `max_connections` were open."""
        self.served = 0
        """Number of bodies handed out so far."""

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) of the first listener.

        Raises:
            PeerError: If no listener is open.
        """
        if not self._servers:
            raise PeerError("fast-path server is not listening")
        return next(iter(self._servers.values())).getsockname()

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The (host, port) of every open listener."""
        return [server.getsockname() for server in self._servers.values()]

    @property
    def pending_offers(self) -> int:
        """Number of body tokens issued and not yet used or expired."""
        return sum(offer.acceptor is None for offer in self._offers.values())

    @property
    def pending_channel_offers(self) -> int:
        """Number of request channel tokens issued and not yet used or expired."""
        return len(self._offers) - self.pending_offers

    async def start(self) -> None:
        """Start listening (with ``host`` ``None``: only mark the server started).

        Raises:
            PeerConnectionError: If the address cannot be bound.
        """
        if self._host is not None:
            await self._bind(self._host)

    async def listen_on(self, local_host: str) -> None:
        """Make sure peers reaching us at ``local_host`` can use the fast path.

        With a fixed ``host`` this does nothing; with ``host`` ``None`` it opens
        a listener on ``local_host`` unless one is open.

        Raises:
            PeerConnectionError: If the address cannot be bound.
        """
        if self._host is None and not is_wildcard(local_host):
            await self._bind(local_host)

    def ticket_host(self, local_host: str | None) -> str | None:
        """Return the address tickets sent over a connection from ``local_host``.

        Returns:
            ``None`` when no reachable address is known (then the fast path
            must not be offered over that connection).
        """
        if self._host is None:
            if local_host is None or local_host not in self._servers:
                return None
            return self._advertised_host or local_host
        if self._advertised_host is not None:
            return self._advertised_host
        if not is_wildcard(self._host):
            return self._host
        if local_host is None or is_wildcard(local_host):
            return None
        return local_host

    async def _bind(self, host: str) -> None:
        if host in self._servers:
            return
        pending = self._binding.get(host)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._binding[host] = pending
            try:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.create_server(
                    (host, self._port), family=family, backlog=100
                )
                sock.setblocking(False)
                server = _Listener(sock)
                server.task = asyncio.get_running_loop().create_task(self._accept(sock))
            except OSError as err:
                error = PeerConnectionError(
                    f"fast-path listener {host}:{self._port}", str(err)
                )
                pending.set_exception(error)
                pending.exception()
                raise error from err
            finally:
                self._binding.pop(host, None)
            self._servers[host] = server
            pending.set_result(server)
            logger.info("fast path listening on %s:%d", *server.getsockname())
            return
        await asyncio.shield(pending)

    def _port_for(self, local_host: str | None) -> int:
        if self._host is not None:
            server = self._servers.get(self._host)
        else:
            server = self._servers.get(local_host or "")
        if server is None:
            raise PeerError(f"fast-path server is not listening for {local_host}")
        return server.getsockname()[1]

    def offer(
        self,
        body: bytes | bytearray | memoryview,
        peer_public: bytes,
        ttl: float | None = None,
        local_host: str | None = None,
    ) -> FastPathTicket:
        """Register ``body`` for one fetch by one peer and return its ticket.

        Args:
            body: Bytes to serve. Kept by reference until fetched or expired.
            peer_public: Raw public key of the only peer that may fetch it.
            ttl: Seconds the token stays valid (default: the server timeout).
            local_host: Our address on the connection the ticket goes over
                (see `ticket_host`); default: the listener's own address.

        Raises:
            PeerError: If no listener serves ``local_host`` or no reachable
                address is known for it.
        """
        return self._register(body, peer_public, ttl, local_host, None)

    def offer_channel(
        self,
        peer_public: bytes,
        acceptor: ChannelAcceptor,
        ttl: float | None = None,
        local_host: str | None = None,
    ) -> FastPathTicket:
        """Register one request channel for one peer and return its ticket.

        The peer dials the ticket's address with `CHANNEL_PREAMBLE`; once it
        proves the token with its identity key, ``acceptor`` is called with
        the TLS streams (in the event loop) and the listener is done with
        them. The ticket's ``length`` is 0.

        Raises:
            PeerError: As `offer`.
        """
        return self._register(b"", peer_public, ttl, local_host, acceptor)

    def _register(
        self,
        body: bytes | bytearray | memoryview,
        peer_public: bytes,
        ttl: float | None,
        local_host: str | None,
        acceptor: ChannelAcceptor | None,
    ) -> FastPathTicket:
        if local_host is None and self._host is None and self._servers:
            local_host = next(iter(self._servers))
        host = self.ticket_host(local_host)
        if host is None:
            raise PeerError(
                f"no address to advertise for the fast path (local {local_host})"
            )
        port = self._port_for(local_host)
        token = secrets.token_bytes(TOKEN_SIZE)
        view = memoryview(body).cast("B")
        expiry = asyncio.get_running_loop().call_later(
            self._timeout if ttl is None else ttl, self._offers.pop, token, None
        )
        self._offers[token] = _Offer(view, bytes(peer_public), expiry, acceptor)
        return FastPathTicket(host, port, token.hex(), len(view))

    def withdraw(self, ticket: FastPathTicket) -> None:
        """Invalidate a ticket (a body's or a channel's) that will not be used."""
        try:
            key = bytes.fromhex(ticket.token)
        except ValueError:
            return
        offer = self._offers.pop(key, None)
        if offer is not None:
            offer.expiry.cancel()

    def reclaim(self, token: str) -> memoryview | None:
        """Invalidate a token and return its body, if it was still valid.

        Used when the receiver cannot reach the listener and asks for the
        body another way.
        """
        try:
            key = bytes.fromhex(token)
        except ValueError:
            return None
        offer = self._offers.get(key)
        if offer is None or offer.acceptor is not None:
            return None
        del self._offers[key]
        offer.expiry.cancel()
        return None if offer.expired() else offer.body

    async def close(self) -> None:
        """Stop listening, drop every offer and abort transfers in progress."""
        for offer in self._offers.values():
            offer.expiry.cancel()
        self._offers.clear()
        servers = list(self._servers.values())
        self._servers.clear()
        for server in servers:
            if server.task is not None:
                server.task.cancel()
            server.sock.close()
        # Worker threads blocked in a send or receive fail at once.
        for served in list(self._sockets):
            served.shutdown()
        for task in list(self._connections):
            task.cancel()
        waiting = [s.task for s in servers if s.task is not None]
        waiting += self._connections
        if waiting:
            await asyncio.wait(waiting, timeout=self._timeout)

    def _claim(self, hello: bytes, *, channel: bool = False) -> _Offer | None:
        """Return and consume the offer ``hello`` proves a right to, else None.

        A body's token only opens a fetch and a channel's token only a
        channel (``channel``), each with its own signed context.
        """
        from proxystore.endpoint.identity import verify_signature

        token, signature = hello[:TOKEN_SIZE], hello[TOKEN_SIZE:]
        offer = self._offers.get(token)
        if offer is None or offer.expired() or (offer.acceptor is not None) != channel:
            return None
        prove = channel_proof if channel else _client_proof
        proof = prove(token, self._identity.public_bytes)
        if not verify_signature(offer.peer_public, signature, proof):
            # Not the peer it was offered to: keep the offer for that peer.
            return None
        del self._offers[token]
        offer.expiry.cancel()
        return offer

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as err:
                if listener.fileno() < 0:
                    return
                logger.debug("fast-path accept failed: %r", err)
                continue
            if len(self._connections) >= self._max_connections:
                self._refuse_busy(sock)
                continue
            task = loop.create_task(self._serve_connection(sock))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    def _refuse_busy(self, sock: socket.socket) -> None:
        self.refused += 1
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        finally:
            sock.close()
        self._refusals.warning(
            "busy",
            "fast path refused a connection from %s: %d connections are being "
            "served (max_connections)",
            peer,
            len(self._connections),
        )

    def _handshake(self, served: _Served) -> tuple[ssl.SSLSocket, bytes]:
        """In a worker thread: TLS handshake, then the client's hello."""
        served.sock.settimeout(self._timeout)
        # Wrapping moves the descriptor to the TLS socket: published before
        # the handshake, so `close` can shut it down and the connection's
        # cleanup closes it, whatever fails from here on.
        tls = self._context.wrap_socket(
            served.sock, server_side=True, do_handshake_on_connect=False
        )
        served.sock = tls
        tls.do_handshake()
        return tls, _recv_exactly(tls, HELLO_SIZE)

    def _send_body(self, tls: ssl.SSLSocket, body: memoryview) -> None:
        """In a worker thread: ``length | body``; each piece has the timeout."""
        tls.sendall(LENGTH.pack(len(body)))
        for start in range(0, len(body), self._chunk_size):
            tls.sendall(body[start : start + self._chunk_size])

    async def _serve_connection(self, sock: socket.socket) -> None:
        try:
            peer = sock.getpeername()
        except OSError:  # gone already
            sock.close()
            return
        try:
            first = await _peek(sock, self._timeout)
        except (OSError, asyncio.TimeoutError) as err:
            logger.debug("fast-path connection from %s sent nothing: %r", peer, err)
            sock.close()
            return
        if first == CHANNEL_PREAMBLE[:1]:
            await self._serve_channel(sock, peer)
            return
        served = _Served(sock)
        self._sockets.add(served)
        try:
            tls, hello = await _in_thread(self._handshake, served)
            offer = self._claim(hello)
            if offer is None:
                self._refusals.warning(
                    "token",
                    "fast path refused a connection from %s: unknown or used "
                    "token, or not signed by the peer it was offered to",
                    peer,
                )
                return
            await _in_thread(self._send_body, tls, offer.body)
            self.served += 1
        except (OSError, ssl.SSLError) as err:
            logger.debug("fast-path transfer with %s aborted: %r", peer, err)
        finally:
            self._sockets.discard(served)
            served.sock.close()
            sock.close()

    async def _serve_channel(self, sock: socket.socket, peer: object) -> None:
        """Authenticate a request channel in the event loop and hand it over."""
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        kept = False
        try:
            preamble = await asyncio.wait_for(
                _sock_recv_exactly(sock, len(CHANNEL_PREAMBLE)), self._timeout
            )
            if preamble != CHANNEL_PREAMBLE:
                self._refusals.warning(
                    "preamble",
                    "fast path refused a connection from %s: bad preamble",
                    peer,
                )
                return
            reader = asyncio.StreamReader(limit=CHANNEL_READ_LIMIT)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await asyncio.wait_for(
                loop.connect_accepted_socket(
                    lambda: protocol,
                    sock,
                    ssl=self._context,
                    ssl_handshake_timeout=self._timeout,
                ),
                self._timeout,
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            hello = await asyncio.wait_for(
                reader.readexactly(HELLO_SIZE), self._timeout
            )
            offer = self._claim(hello, channel=True)
            if offer is None:
                self._refusals.warning(
                    "token",
                    "fast path refused a request channel from %s: unknown or used "
                    "token, or not signed by the peer it was offered to",
                    peer,
                )
                return
            assert offer.acceptor is not None
            kept = offer.acceptor(reader, writer)
            if kept:
                # Before anything the new owner writes (no await in between).
                writer.write(CHANNEL_ACCEPTED)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, EOFError) as err:
            logger.debug("request channel from %s not opened: %r", peer, err)
        finally:
            if writer is None:
                sock.close()
            elif not kept:
                writer.close()


class _Served:
    """A connection the listener serves: its socket, the TLS one once wrapped."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def shutdown(self) -> None:
        """Make a worker thread blocked on the connection fail at once."""
        with contextlib.suppress(OSError):
            # The plain socket's shutdown: `SSLSocket.shutdown` would also
            # drop the TLS state under the thread still using it.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


CHANNEL_READ_LIMIT = 2 * 1024 * 1024
"""Read buffer of a request channel's stream (above the largest frame)."""


async def _peek(sock: socket.socket, timeout: float) -> bytes:
    """Return the first byte a non-blocking socket receives, left unread."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _settle_none, readable)
        try:
            await asyncio.wait_for(readable, timeout)
        finally:
            loop.remove_reader(sock.fileno())


def _settle_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _sock_recv_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        piece = await loop.sock_recv(sock, size - len(data))
        if not piece:
            raise EOFError(f"closed after {len(data)} of {size} bytes")
        data += piece
    return data


PROGRESS_LOG_BYTES = 100 * 1024 * 1024
"""A DEBUG line is logged each time this many more bytes of a body arrived."""

Body = bytearray | memoryview
"""A received body: a new bytearray, or the buffer an `Allocate` returned."""
Allocate = Callable[[int], Body]
"""Returns a writable buffer of exactly the given size to receive a body into."""


PROGRESS_REPORT_BYTES = 4 * 1024 * 1024
"""Bytes received between two progress reports to the event loop."""


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run ``function(*args)`` in a new thread of its own and await its result.

    A thread per transfer rather than the loop's shared executor: a fetch
    and the send it waits for may run in one process (tests, or two
    endpoints in one program) and must never queue behind each other.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(outcome)

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as err:
            error = err
            settle(lambda: None if future.done() else future.set_exception(error))
        else:
            settle(lambda: None if future.done() else future.set_result(result))

    threading.Thread(target=run, name="proxystore-fastpath", daemon=True).start()
    return await future


@dataclasses.dataclass
class _Fetch:
    """One fetch, run in a worker thread on a blocking TLS socket."""

    ticket: FastPathTicket
    identity: Identity
    peer_public: bytes
    timeout: float
    deadline: float | None
    """In `time.monotonic()` (the default event loop's clock)."""
    body: Body
    report: Callable[[int], None]
    target: str
    received: int = 0
    sock: socket.socket | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def run(self) -> Body:
        try:
            sock = socket.create_connection(
                (self.ticket.host, self.ticket.port), timeout=self.timeout
            )
        except OSError as err:
            raise PeerConnectionError(self.target, f"cannot connect: {err!r}") from err
        self.sock = sock
        with sock:
            try:
                tls = client_context().wrap_socket(
                    sock, server_hostname=None, do_handshake_on_connect=False
                )
            except (OSError, ssl.SSLError) as err:
                raise PeerConnectionError(
                    self.target, f"cannot connect: {err!r}"
                ) from err
            # Wrapping moved the descriptor: a cancelled fetch shuts this down.
            self.sock = tls
            with tls:
                try:
                    tls.do_handshake()
                except (OSError, ssl.SSLError) as err:
                    raise PeerConnectionError(
                        self.target, f"cannot connect: {err!r}"
                    ) from err
                self._check_listener(tls)
                token = bytes.fromhex(self.ticket.token)
                proof = _client_proof(token, self.peer_public)
                try:
                    tls.sendall(token + self.identity.sign_bytes(proof))
                    header = self._read_header(tls)
                except (OSError, ssl.SSLError) as err:
                    raise PeerConnectionError(self.target, "token refused") from err
                if header is None:
                    raise PeerConnectionError(self.target, "token refused")
                (length,) = LENGTH.unpack(header)
                if length != len(self.body):
                    raise PeerConnectionError(
                        self.target,
                        f"announced {length} bytes, ticket said {len(self.body)}",
                    )
                self._read_body(tls)
        return self.body

    def _check_listener(self, tls: ssl.SSLSocket) -> None:
        check_pinned(tls.getpeercert(binary_form=True), self.peer_public, self.target)

    def _read_header(self, tls: ssl.SSLSocket) -> bytes | None:
        header = bytearray()
        while len(header) < LENGTH.size:
            self._arm(tls)
            piece = tls.recv(LENGTH.size - len(header))
            if not piece:
                return None
            header += piece
        return bytes(header)

    def _arm(self, tls: ssl.SSLSocket) -> None:
        """Set the wait for the next bytes: the idle timeout, or what is left."""
        wait = self.timeout
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise self._deadline_error()
            wait = min(wait, left)
        tls.settimeout(wait)

    def _deadline_error(self) -> StoreTimeoutError:
        assert self.deadline is not None
        return transfer_deadline_error(
            self.target,
            self.deadline - self.started,
            self.received,
            len(self.body),
        )

    def _read_body(self, tls: ssl.SSLSocket) -> None:
        view = memoryview(self.body).cast("B")
        size = len(view)
        unreported = 0
        next_log = PROGRESS_LOG_BYTES
        while self.received < size:
            self._arm(tls)
            try:
                got = tls.recv_into(view[self.received :])
            except TimeoutError as err:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    raise self._deadline_error() from err
                raise PeerConnectionError(
                    self.target,
                    f"transfer stalled: no bytes for {self.timeout:g}s after "
                    f"{self.received} of {size} bytes "
                    f"in {time.monotonic() - self.started:.1f}s",
                ) from err
            except (OSError, ssl.SSLError, ValueError) as err:
                got = 0
                reason = repr(err)
            else:
                reason = "closed"
            if not got:
                raise PeerConnectionError(
                    self.target,
                    f"stream closed after {self.received} of {size} bytes ({reason})",
                )
            self.received += got
            unreported += got
            if unreported >= PROGRESS_REPORT_BYTES or self.received == size:
                self.report(unreported)
                unreported = 0
            if self.received >= next_log:
                next_log += PROGRESS_LOG_BYTES
                logger.debug(
                    "fast path %s: %d of %d bytes received",
                    self.target,
                    self.received,
                    size,
                )


async def fetch(
    ticket: FastPathTicket,
    *,
    identity: Identity,
    peer_public: bytes,
    timeout: float = 30.0,
    deadline: float | None = None,
    progress: Callable[[int], None] | None = None,
    allocate: Allocate | None = None,
    began: float | None = None,
) -> Body:
    """Fetch the body a ticket stands for from the peer holding ``peer_public``.

    Args:
        ticket: The ticket received from the holder.
        identity: This endpoint's identity, proving to the holder that the
            fetch comes from the peer the body was offered to.
        peer_public: Raw public key of the holder; a listener presenting any
            other key is refused before the token is sent.
        timeout: Longest wait for the connection and handshake, and the
            longest the transfer may go without a byte arriving: a transfer
            that keeps moving is never cut off by it, whatever its size.
        deadline: Optional end of the whole transfer, in the running loop's
            `time()`.
        progress: Called with the size of each piece received.
        allocate: Makes the buffer the body is received into (default: a
            new bytearray), e.g. a shared-memory file for a local client.
        began: When the caller's request began, in the running loop's
            `time()` (default: now): the deadline error quotes
            ``deadline - began``, the seconds the caller gave.

    Returns:
        The body.

    Raises:
        PeerConnectionError: If the listener cannot be reached, is not the
            expected peer, refuses the token, closes the stream before the
            whole body arrived, or no byte arrives for ``timeout`` seconds.
        StoreTimeoutError: If ``deadline`` passes first (saying how many
            bytes had moved).
    """
    target = f"fast path {ticket.host}:{ticket.port}"
    if len(peer_public) != PUBLIC_KEY_SIZE:
        # Never pin to nothing: an empty key would match a missing certificate.
        raise PeerConnectionError(target, "no identity key to pin the listener to")
    loop = asyncio.get_running_loop()
    body = bytearray(ticket.length) if allocate is None else allocate(ticket.length)

    def report(nbytes: int) -> None:
        if progress is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(progress, nbytes)

    job = _Fetch(
        ticket,
        identity,
        peer_public,
        timeout,
        None if deadline is None else time.monotonic() + (deadline - loop.time()),
        body,
        report,
        target,
        started=time.monotonic() + (began - loop.time() if began is not None else 0),
    )
    try:
        return await _in_thread(job.run)
    except asyncio.CancelledError:
        # The thread fails at once on a shut-down socket.
        if job.sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, as in `_Served.shutdown`.
                socket.socket.shutdown(job.sock, socket.SHUT_RDWR)
        raise
