"""Direct TCP transfer of large bodies between peers.

The side holding a large body registers it with its `FastPathServer` and
sends the resulting `FastPathTicket` (host, port, one-time token) over the
authenticated data channel. The other side connects, presents the token and
reads the body. A token works once and expires; anything else is refused by
closing the connection before a single body byte is written::

    client -> server   token (32 bytes)
    server -> client   length:u64 | body
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import struct
from typing import Any

from proxystore.exceptions import PeerConnectionError, PeerError

logger = logging.getLogger(__name__)

TOKEN_SIZE = 32
LENGTH = struct.Struct("!Q")
DEFAULT_STREAM_CHUNK = 1024 * 1024


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
    def from_json(cls, data: object) -> FastPathTicket:
        """Validate and build a ticket received from a peer.

        Raises:
            PeerError: If ``data`` is not a well-formed ticket.
        """
        if not isinstance(data, dict):
            raise PeerError(f"fast-path ticket is not an object: {type(data).__name__}")
        host, port = data.get("host"), data.get("port")
        token, length = data.get("token"), data.get("length")
        if not (
            isinstance(host, str)
            and isinstance(port, int)
            and 0 < port < 65536
            and isinstance(token, str)
            and len(token) == 2 * TOKEN_SIZE
            and isinstance(length, int)
            and length >= 0
        ):
            raise PeerError("malformed fast-path ticket")
        return cls(host, port, token, length)


@dataclasses.dataclass
class _Offer:
    body: memoryview
    expiry: asyncio.TimerHandle

    def expired(self) -> bool:
        return asyncio.get_running_loop().time() >= self.expiry.when()


class FastPathServer:
    """A TCP listener that hands out registered bodies against one-time tokens.

    Args:
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        timeout: Longest wait for a client to present its token and for each
            write to drain.
        chunk_size: Bytes written per ``drain()``.
        advertised_host: Address put in tickets, when peers must use another
            address than ``host`` (listening on 0.0.0.0, NAT, containers).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timeout: float = 30.0,
        chunk_size: int = DEFAULT_STREAM_CHUNK,
        advertised_host: str | None = None,
    ) -> None:
        self._host = host
        self._advertised_host = advertised_host
        self._port = port
        self._timeout = timeout
        self._chunk_size = chunk_size
        self._server: asyncio.Server | None = None
        self._offers: dict[bytes, _Offer] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self.served = 0
        """Number of bodies handed out so far."""

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the listener is bound to.

        Raises:
            PeerError: If the server is not started.
        """
        if self._server is None:
            raise PeerError("fast-path server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def pending_offers(self) -> int:
        """Number of tokens issued and not yet used or expired."""
        return len(self._offers)

    async def start(self) -> None:
        """Start listening.

        Raises:
            PeerConnectionError: If the address cannot be bound.
        """
        try:
            self._server = await asyncio.start_server(
                self._serve_connection, self._host, self._port
            )
        except OSError as err:
            raise PeerConnectionError(
                f"fast-path listener {self._host}:{self._port}", str(err)
            ) from err

    def offer(
        self, body: bytes | bytearray | memoryview, ttl: float | None = None
    ) -> FastPathTicket:
        """Register ``body`` for one fetch and return the ticket for it.

        Args:
            body: Bytes to serve. Kept by reference until fetched or expired.
            ttl: Seconds the token stays valid (default: the server timeout).
        """
        host, port = self.address
        host = self._advertised_host or host
        token = secrets.token_bytes(TOKEN_SIZE)
        view = memoryview(body).cast("B")
        expiry = asyncio.get_running_loop().call_later(
            self._timeout if ttl is None else ttl, self._offers.pop, token, None
        )
        self._offers[token] = _Offer(view, expiry)
        return FastPathTicket(host, port, token.hex(), len(view))

    def withdraw(self, ticket: FastPathTicket) -> None:
        """Invalidate a ticket that will not be fetched."""
        self.reclaim(ticket.token)

    def reclaim(self, token: str) -> memoryview | None:
        """Invalidate a token and return its body, if it was still valid.

        Used when the receiver cannot reach the listener and asks for the
        body another way.
        """
        try:
            key = bytes.fromhex(token)
        except ValueError:
            return None
        offer = self._offers.pop(key, None)
        if offer is None:
            return None
        offer.expiry.cancel()
        return None if offer.expired() else offer.body

    async def close(self) -> None:
        """Stop listening, drop every offer and abort transfers in progress."""
        for offer in self._offers.values():
            offer.expiry.cancel()
        self._offers.clear()
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=self._timeout)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), self._timeout)
            self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            token = await asyncio.wait_for(
                reader.readexactly(TOKEN_SIZE), self._timeout
            )
            offer = self._offers.pop(token, None)
            if offer is None or offer.expired():
                logger.warning(
                    "fast path refused a connection from %s: unknown or used token",
                    writer.get_extra_info("peername"),
                )
                return
            offer.expiry.cancel()
            writer.write(LENGTH.pack(len(offer.body)))
            for start in range(0, len(offer.body), self._chunk_size):
                writer.write(offer.body[start : start + self._chunk_size])
                await asyncio.wait_for(writer.drain(), self._timeout)
            self.served += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as err:
            logger.debug("fast-path transfer aborted: %r", err)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self._timeout)


async def fetch(
    ticket: FastPathTicket,
    *,
    timeout: float = 30.0,
    chunk_size: int = DEFAULT_STREAM_CHUNK,
) -> bytearray:
    """Fetch the body a ticket stands for.

    Args:
        ticket: The ticket received from the holder.
        timeout: Longest wait for the connection and for each chunk.
        chunk_size: Largest read.

    Returns:
        The body.

    Raises:
        PeerConnectionError: If the listener cannot be reached, refuses the
            token, closes the stream before the whole body arrived, or a
            step stalls longer than ``timeout``.
    """
    target = f"fast path {ticket.host}:{ticket.port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ticket.host, ticket.port, limit=chunk_size),
            timeout,
        )
    except (OSError, asyncio.TimeoutError) as err:
        raise PeerConnectionError(target, f"cannot connect: {err!r}") from err
    try:
        writer.write(bytes.fromhex(ticket.token))
        await asyncio.wait_for(writer.drain(), timeout)
        try:
            header = await asyncio.wait_for(reader.readexactly(LENGTH.size), timeout)
        except asyncio.IncompleteReadError as err:
            raise PeerConnectionError(target, "token refused") from err
        (length,) = LENGTH.unpack(header)
        if length != ticket.length:
            raise PeerConnectionError(
                target, f"announced {length} bytes, ticket said {ticket.length}"
            )
        # Filled in place: growing a multi-GB buffer would copy it repeatedly.
        body = bytearray(length)
        received = 0
        while received < length:
            chunk = await asyncio.wait_for(
                reader.read(min(chunk_size, length - received)), timeout
            )
            if not chunk:
                raise PeerConnectionError(
                    target, f"stream closed after {received} of {length} bytes"
                )
            body[received : received + len(chunk)] = chunk
            received += len(chunk)
        return body
    except PeerConnectionError:  # an OSError too: keep it from being rewrapped
        raise
    except (OSError, asyncio.TimeoutError) as err:
        raise PeerConnectionError(target, f"transfer failed: {err!r}") from err
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
