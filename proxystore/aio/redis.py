"""`RedisStore`: objects in a Redis (or Redis-compatible) server.

One `set` and one uncached `get` are one round trip each. Writes are ``SET``
commands this module encodes itself (RESP) and sends on a pooled redis-py
connection: a payload's large parts (a numpy array's memory, a big `bytes`)
go out by reference as pieces of one bulk value, never joined into a copy
first (redis-py would need one buffer per argument). Several writes (a batch,
a chunked value) go in one ``MULTI``/``EXEC``.

Values larger than `chunk_size` (Redis refuses a single bulk value over its
``proto-max-bulk-len``, 512 MB by default) are split across chunk keys
``<key>:<i>``. The main key, ``<id>:chunked:<count>``, names the chunk count
and holds a small manifest written last in the same ``MULTI``/``EXEC`` as the
chunks, so a half-written object is never readable. Because the key carries
the count, `get` (``MGET`` of manifest and chunks), `exists` and `evict`
(``DEL`` of all of them) stay one command each.

A store keeps one connection pool per event loop (an asyncio connection is
bound to the loop that opened it; the async face may be used from the
user's loop and from the background prefetch loop) and builds it on first
use, so constructing a store does no I/O. A forked child builds its own.
At most `max_connections` operations per pool are in flight; in the async
face, gets that find them all busy wait together and go out as one ``MGET``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis
from redis import exceptions as redis_errors

from proxystore._clients import ClientsPerLoop
from proxystore._shared import new_object_id
from proxystore._validate import check_seconds
from proxystore.aio.base import Store
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    InvalidKeyError,
    ProxyStoreError,
    StoreConnectionError,
    StoreOperationError,
    StoreTimeoutError,
)
from proxystore.serialize import Buffer, Payload
from proxystore.signing import SigningKeysOption

_IS_SYNC = False

MiB = 1 << 20
DEFAULT_CHUNK_SIZE = 256 * MiB
"""Largest value stored under one Redis key (half of Redis's 512 MB default)."""

PASSWORD_ENV = "PROXYSTORE_REDIS_PASSWORD"
"""Where a store rebuilt from a proxy (which never carries the password) takes it."""

_MANIFEST_MAGIC = b"\x00proxystore:chunked:"
_CHUNKED_MARK = ":chunked:"
# Parts at least this large are sent by reference; smaller ones are copied
# together with their neighbours into one buffer (one send instead of many).
_ZERO_COPY_MIN_BYTES = 256 * 1024
_MAX_KEY_LENGTH = 1024
_MAX_CHUNKS = 1_000_000

_CertReqs = Literal["required", "optional", "none"]
_Write = tuple[str, list[Buffer]]
"""One SET: the key and the pieces that make its value."""
_Owner = asyncio.AbstractEventLoop | None


class _Client:
    """A connection pool and the slots bounding its concurrent operations.

    In the async face, gets that find every slot taken queue in `queued`
    and go out together in one MGET sent by a `tasks` member.
    """

    __slots__ = ("pool", "queued", "slots", "tasks")

    def __init__(self, pool: redis.ConnectionPool, slots: Any) -> None:
        # Typed `Any`: the sync pool's methods are unannotated.
        self.pool: Any = pool
        self.slots = slots
        self.queued: list[tuple[str, Any]] = []
        self.tasks: set[Any] = set()


class RedisStore(Store[str]):
    """A store backed by a Redis server.

    Args:
        name: The store's name.
        hostname: The server's host name or address.
        port: The server's port.
        url: A ``redis://`` or ``rediss://`` URL
            (``redis://[user:password@]host[:port][/db]``); its parts
            override `hostname`, `port`, `db`, `username`, `password` and
            `ssl`.
        db: The database index.
        username: The ACL user name (Redis 6+).
        password: The password (``requirepass`` or the user's). A secret:
            never in `config()` nor in a proxy; a store rebuilt from a proxy
            takes it from ``PROXYSTORE_REDIS_PASSWORD`` (or uses the
            registered store of the same name and identity).
        ssl: Connect with TLS.
        ssl_ca_certs: CA bundle to verify the server with.
        ssl_certfile: Client certificate, for mutual TLS.
        ssl_keyfile: Client certificate's key.
        ssl_cert_reqs: Whether the server's certificate is ``"required"``,
            ``"optional"`` or not checked (``"none"``).
        ssl_check_hostname: Check that the certificate matches `hostname`.
        socket_timeout: Seconds to wait on a reply (and, in the async face,
            to send one request) before `StoreTimeoutError`.
        socket_connect_timeout: Seconds to wait for a connection before
            `StoreConnectionError`.
        max_connections: Most operations in flight, hence connections, per
            pool (one pool per event loop and process; the sync face has
            one per process); more wait for a free slot.
        chunk_size: Values larger than this are split across several keys;
            at most the server's ``proto-max-bulk-len``.
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.aio.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.

    Raises:
        ConfigurationError: If an argument cannot work (bad URL, port, db,
            timeout or chunk size).

    Operations raise `StoreConnectionError` (naming ``host:port``) when the
    server cannot be reached, drops the connection or refuses the
    credentials; `StoreTimeoutError` when it does not answer within
    `socket_timeout`; `ConfigurationError` for a `db` the server does not
    have; `StoreOperationError` when it refuses a command (say, a value
    over its ``proto-max-bulk-len``). The redis-py error is the
    ``__cause__``. Nothing is retried: a connection found dead when taken
    from the pool is replaced, so the store recovers by itself once the
    server is back.

    Example:
        ```python
        async with RedisStore("example", "localhost", 6379) as store:
            key = await store.aset([1, 2, 3])
            assert await store.aget(key) == [1, 2, 3]
        ```
    """

    _IDENTITY = ("hostname", "port", "db", "username", "ssl")
    _SECRETS = (*Store._SECRETS, "password")
    _SECRETS_FROM_ENV = (("password", PASSWORD_ENV),)
    _PROCESS_LOCAL = ("url",)

    def __init__(
        self,
        name: str,
        hostname: str = "localhost",
        port: int = 6379,
        *,
        url: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: _CertReqs = "required",
        ssl_check_hostname: bool = True,
        socket_timeout: float = 30.0,
        socket_connect_timeout: float = 5.0,
        max_connections: int = 64,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        cache_size: int = 16,
        metrics: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
    ) -> None:
        super().__init__(
            name,
            cache_size=cache_size,
            metrics=metrics,
            signing_keys=signing_keys,
            sign_full_data=sign_full_data,
        )
        if url is not None:
            hostname, port, db, username, password, ssl = _parse_url(
                url, hostname, port, db, username, password, ssl
            )
        _check_positive_int("port", port, upper=65535)
        _check_positive_int("max_connections", max_connections)
        _check_positive_int("chunk_size", chunk_size)
        if not isinstance(db, int) or isinstance(db, bool) or db < 0:
            raise ConfigurationError(f"db must be an int >= 0, got {db!r}")
        owner = f"RedisStore {name!r}"
        check_seconds(socket_timeout, "socket_timeout", owner)
        check_seconds(socket_connect_timeout, "socket_connect_timeout", owner)
        if ssl_cert_reqs not in ("required", "optional", "none"):
            raise ConfigurationError(
                "ssl_cert_reqs must be 'required', 'optional' or 'none', "
                f"got {ssl_cert_reqs!r}"
            )
        self.hostname = hostname
        self.port = port
        self.db = db
        self.username = username
        self.password = password
        self.ssl = ssl
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.ssl_cert_reqs: _CertReqs = ssl_cert_reqs
        self.ssl_check_hostname = ssl_check_hostname
        self.socket_timeout = float(socket_timeout)
        self.socket_connect_timeout = float(socket_connect_timeout)
        self.max_connections = max_connections
        self.chunk_size = chunk_size
        self._target = f"{hostname}:{port}"
        self._clients: ClientsPerLoop[_Client] = ClientsPerLoop(
            self._new_client, _aclose_client
        )

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this store anywhere.

        The password is not included: a consumer takes it from its own
        registered store of the same identity or from
        ``PROXYSTORE_REDIS_PASSWORD``.
        """
        return {
            **super().config(),
            "hostname": self.hostname,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "ssl": self.ssl,
            "ssl_ca_certs": self.ssl_ca_certs,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_cert_reqs": self.ssl_cert_reqs,
            "ssl_check_hostname": self.ssl_check_hostname,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "max_connections": self.max_connections,
            "chunk_size": self.chunk_size,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, "
            f"target={self._target!r}, db={self.db})"
        )

    def _validate_key(self, key: Any) -> str:
        if type(key) is not str or not key:
            raise InvalidKeyError(key, "RedisStore keys are non-empty str")
        if len(key) > _MAX_KEY_LENGTH:
            raise InvalidKeyError(
                key, f"RedisStore keys are at most {_MAX_KEY_LENGTH} characters"
            )
        if _chunk_count(key) > _MAX_CHUNKS:
            raise InvalidKeyError(
                key, f"a chunked RedisStore key names at most {_MAX_CHUNKS} chunks"
            )
        return key

    # -- the byte-level driver ----------------------------------------------

    async def _aset_bytes(self, payload: Payload) -> str:
        key, writes = self._writes(payload)
        await self._awrite(writes, "set")
        return key

    async def _aset_bytes_batch(self, payloads: Sequence[Payload]) -> list[str]:
        keys: list[str] = []
        writes: list[_Write] = []
        for payload in payloads:
            key, more = self._writes(payload)
            keys.append(key)
            writes += more
        try:
            await self._awrite(writes, "set_batch")
        except ProxyStoreError as err:
            # One MULTI: all of it or none was written, and after a dropped
            # connection we cannot tell which; delete it all if we can.
            removed = await self._aevict_quietly([key for key, _ in writes])
            raise BatchWriteError(
                self.name,
                "set_batch",
                len(payloads),
                err,
                written=0,
                remaining=[] if removed else keys,
            ) from err
        return keys

    async def _awrite(self, writes: list[_Write], operation: str) -> None:
        """Send SETs in one round trip, in MULTI/EXEC if there are several."""
        replies = 1 if len(writes) == 1 else len(writes) + 2
        try:
            results = await self._aexecute(_pack(writes), replies)
        except _DRIVER_ERRORS as err:
            error = self._error(err, operation)
            if isinstance(error, StoreConnectionError) and _size_over(writes, MiB):
                # The server drops the connection on a value longer than its
                # proto-max-bulk-len (1 MiB at least): say so instead of
                # "cannot reach".
                error = await self._aexplain_dropped_write(error, writes, operation)
            raise error from err
        failed = (
            [r for r in results[-1] if isinstance(r, Exception)] if replies > 1 else []
        )
        if failed:
            # EXEC runs every queued command even if one of them fails.
            await self._aevict_quietly([key for key, _ in writes])
            raise StoreOperationError(
                f"{operation} on {self._target} (store {self.name!r}) failed: "
                f"{failed[0]}"
            )

    async def _aexplain_dropped_write(
        self, error: ProxyStoreError, writes: list[_Write], operation: str
    ) -> ProxyStoreError:
        largest = max(_size(pieces) for _, pieces in writes)
        try:
            command = _command("CONFIG", "GET", "proto-max-bulk-len")
            (reply,) = await self._aexecute([command], 1)
            pairs = list(reply.items()) if isinstance(reply, dict) else [reply]
            limit = int(pairs[0][1])
        except (*_DRIVER_ERRORS, IndexError, TypeError, ValueError):
            return error  # server gone, or CONFIG disabled: nothing to add
        if largest <= limit:
            return error
        return StoreOperationError(
            f"{operation} on {self._target} (store {self.name!r}) failed: "
            f"a {largest}-byte value is larger than the server's "
            f"proto-max-bulk-len ({limit}); lower chunk_size "
            f"(now {self.chunk_size})"
        )

    async def _aevict_quietly(self, keys: list[str]) -> bool:
        """Delete keys if the server lets us; return whether it did."""
        try:
            await self._aexecute([_command("DEL", *set(keys))], 1)
        except _DRIVER_ERRORS:
            return False
        return True

    async def _aget_bytes(self, key: str) -> Buffer | None:
        if not _IS_SYNC and _CHUNKED_MARK not in key:
            client = self._client()
            if client.slots.locked():
                # Every connection is busy: wait for one together with the
                # other gets queued meanwhile, as one MGET.
                return await self._aget_queued(client, key)
        command = (
            _command("MGET", *_object_keys(key))
            if _CHUNKED_MARK in key
            else _command("GET", key)
        )
        try:
            (value,) = await self._aexecute([command], 1)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "get") from err
        return _join_chunks(value) if isinstance(value, list) else value

    async def _aget_bytes_batch(self, keys: Sequence[str]) -> list[Buffer | None]:
        wanted = [_object_keys(key) for key in keys]
        command = _command("MGET", *(k for group in wanted for k in group))
        try:
            (values,) = await self._aexecute([command], 1)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "get_batch") from err
        results: list[Buffer | None] = []
        start = 0
        for group in wanted:
            results.append(_join_chunks(values[start : start + len(group)]))
            start += len(group)
        return results

    async def _aexists(self, key: str) -> bool:
        try:
            (count,) = await self._aexecute([_command("EXISTS", key)], 1)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "exists") from err
        return bool(count)

    async def _aevict(self, key: str) -> None:
        try:
            await self._aexecute([_command("DEL", *_object_keys(key))], 1)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "evict") from err

    async def _aget_queued(self, client: _Client, key: str) -> Buffer | None:
        """Async face only: join the next MGET of gets waiting for a connection."""
        # Typed `Any` because the generated sync twin keeps this dead branch.
        loop: Any = asyncio.get_running_loop()
        future = loop.create_future()
        client.queued.append((key, future))
        if len(client.queued) == 1:
            task = loop.create_task(self._afetch_queued(client))
            client.tasks.add(task)
            task.add_done_callback(client.tasks.discard)
        value: Buffer | None = await future
        return value

    async def _afetch_queued(self, client: _Client) -> int:
        """Send one MGET for every queued get once a connection is free.

        Returns how many gets it answered. Every waiter sees a failure; the
        task itself ends quietly unless cancelled.
        """
        try:
            await client.slots.acquire()
        except BaseException:
            batch, client.queued = client.queued, []
            _settle(batch, asyncio.CancelledError())
            raise
        try:
            batch, client.queued = client.queued, []
            command = _command("MGET", *(key for key, _ in batch))
            try:
                (values,) = await self._aexecute_on(client, [command], 1)
            except _DRIVER_ERRORS as err:
                error = self._error(err, "get")
                error.__cause__ = err
                _settle(batch, error)
                return 0
            except BaseException as err:
                _settle(batch, err)
                raise
        finally:
            client.slots.release()
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)
        return len(batch)

    async def _aclose(self) -> None:
        await self._clients.aclose_all(_aclose_client)

    # -- helpers --------------------------------------------------------------

    async def _aexecute(self, packed: list[Buffer], replies: int) -> list[Any]:
        """Send packed commands on a pooled connection and read their replies.

        redis-py's connection and parser (hiredis), without its client
        layer: the store's commands need no reply callbacks, and large
        values go out by reference.
        """
        client = self._client()
        async with client.slots:
            return await self._aexecute_on(client, packed, replies)

    async def _aexecute_on(
        self, client: _Client, packed: list[Buffer], replies: int
    ) -> list[Any]:
        """`_aexecute` for a caller that holds one of the client's slots."""
        connection = await client.pool.get_connection()
        try:
            await connection.send_packed_command(packed, check_health=False)
            return [await connection.read_response() for _ in range(replies)]
        except BaseException:
            # Unread replies or a half-sent command: never reuse it.
            await connection.disconnect()
            raise
        finally:
            await client.pool.release(connection)

    def _client(self) -> _Client:
        return self._clients.client_for(
            None if _IS_SYNC else asyncio.get_running_loop()
        )

    def _new_client(self) -> _Client:
        return _Client(
            self._pool(),
            # Bounds connections per pool: a thousand concurrent tasks share
            # max_connections sockets. A semaphore is much cheaper per
            # command than redis-py's BlockingConnectionPool.
            threading.BoundedSemaphore(self.max_connections)
            if _IS_SYNC
            else asyncio.Semaphore(self.max_connections),
        )

    def _pool(self) -> redis.ConnectionPool:
        options: dict[str, Any] = {}
        if self.ssl:
            options = {
                "connection_class": redis.SSLConnection,
                "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
                "ssl_cert_reqs": self.ssl_cert_reqs,
                "ssl_check_hostname": self.ssl_check_hostname,
            }
        # Typed `Any`: the sync twin's constructor is unannotated.
        pool_class: Any = redis.ConnectionPool
        pool: redis.ConnectionPool = pool_class(
            host=self.hostname,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            **options,
        )
        return pool

    def _writes(self, payload: Payload) -> tuple[str, list[_Write]]:
        """Return a new key and the SETs that store `payload` under it."""
        pieces = _pieces(payload)
        total = _size(pieces)
        if total <= self.chunk_size:
            key = new_object_id()
            return key, [(key, pieces)]
        chunks = _split(pieces, self.chunk_size)
        key = f"{new_object_id()}{_CHUNKED_MARK}{len(chunks)}"
        writes = list(zip(_object_keys(key)[1:], chunks, strict=True))
        # The manifest goes last: the object exists once all chunks do.
        manifest = _MANIFEST_MAGIC + f"{len(chunks)}:{total}".encode()
        writes.append((key, [manifest]))
        return key, writes

    def _error(self, err: BaseException, operation: str) -> ProxyStoreError:
        if isinstance(err, redis_errors.AuthenticationError):
            return StoreConnectionError(
                self._target,
                f"authentication failed for user {self.username or 'default'!r} "
                f"(check username and password): {err}",
            )
        if isinstance(err, redis_errors.ResponseError) and "DB index" in str(err):
            return ConfigurationError(
                f"db {self.db} does not exist on {self._target}: {err}"
            )
        if "bulk length" in str(err) or "proto-max-bulk-len" in str(err):
            return StoreOperationError(
                f"{operation} on {self._target} (store {self.name!r}) failed: "
                f"a value is larger than the server's proto-max-bulk-len; "
                f"lower chunk_size (now {self.chunk_size}): {err}"
            )
        if isinstance(err, (redis_errors.TimeoutError, TimeoutError)):
            connecting = "connect" in str(err).lower()
            timeout = self.socket_connect_timeout if connecting else self.socket_timeout
            if connecting and self.ssl:
                # A plain-text server never answers a TLS handshake.
                operation += " (TLS handshake: does the server serve TLS?)"
            return StoreTimeoutError(self._target, timeout, operation)
        if isinstance(err, (redis_errors.ConnectionError, OSError)):
            return StoreConnectionError(self._target, f"{operation} failed: {err}")
        return StoreOperationError(
            f"{operation} on {self._target} (store {self.name!r}) failed: {err}"
        )


_DRIVER_ERRORS = (redis_errors.RedisError, OSError, asyncio.TimeoutError)


def _command(*args: str) -> bytes:
    """Encode one command as RESP (keys and arguments as UTF-8)."""
    encoded = [arg.encode() for arg in args]
    return b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in encoded
    )


_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _pack(writes: list[_Write]) -> list[Buffer]:
    """Encode SETs as RESP; large pieces stay by reference, the rest is joined."""
    parts: list[Buffer] = [_MULTI] if len(writes) > 1 else []
    for key, pieces in writes:
        name = key.encode()
        parts.append(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n"
            % (len(name), name, _size(pieces))
        )
        parts += pieces
        parts.append(b"\r\n")
    if len(writes) > 1:
        parts.append(_EXEC)
    packed: list[Buffer] = []
    small: list[Buffer] = []
    for part in parts:
        if type(part) is memoryview and part.nbytes >= _ZERO_COPY_MIN_BYTES:
            if small:
                packed.append(b"".join(small))
                small = []
            packed.append(part)
        else:
            small.append(part)
    if small:
        packed.append(b"".join(small))
    return packed


def _size_over(writes: list[_Write], limit: int) -> bool:
    return any(_size(pieces) > limit for _, pieces in writes)


def _size(pieces: list[Buffer]) -> int:
    return sum(memoryview(piece).nbytes for piece in pieces)


def _pieces(payload: Payload) -> list[Buffer]:
    """Coalesce small parts into bytes; keep large parts as byte views."""
    if (
        all(type(part) is bytes for part in payload)
        and sum(len(part) for part in payload) < _ZERO_COPY_MIN_BYTES
    ):
        return [payload[0] if len(payload) == 1 else b"".join(payload)]
    pieces: list[Buffer] = []
    small: list[Buffer] = []
    for part in payload:
        view = memoryview(part)
        if view.nbytes >= _ZERO_COPY_MIN_BYTES:
            if small:
                pieces.append(b"".join(small))
                small = []
            pieces.append(view.cast("B") if view.format != "B" else view)
        elif view.nbytes:
            small.append(part)
    if small:
        pieces.append(
            b"".join(small)
            if len(small) > 1 or type(small[0]) is not bytes
            else small[0]
        )
    return pieces or [b""]


def _split(pieces: list[Buffer], size: int) -> list[list[Buffer]]:
    """Split pieces into chunks of at most `size` bytes, slicing without copies."""
    chunks: list[list[Buffer]] = [[]]
    room = size
    for piece in pieces:
        view = memoryview(piece)
        while view.nbytes:
            if room == 0:
                chunks.append([])
                room = size
            taken = view[:room]
            chunks[-1].append(taken)
            room -= taken.nbytes
            view = view[taken.nbytes :]
    return chunks


def _chunk_count(key: str) -> int:
    """Return how many chunks the object under `key` has (0: not chunked)."""
    if _CHUNKED_MARK not in key:
        return 0
    _, _, count = key.rpartition(_CHUNKED_MARK)
    return int(count) if count.isdigit() else 0


def _object_keys(key: str) -> list[str]:
    """Return the keys holding one object: the key, then its chunks if any."""
    count = _chunk_count(key)
    if not count:
        return [key]
    return [key, *(f"{key}:{index}" for index in range(count))]


def _join_chunks(values: list[Any]) -> bytes | None:
    """Join the chunks after a manifest; None if any part is gone."""
    if len(values) == 1:
        return cast("bytes | None", values[0])
    # A manifest without a chunk (evicted behind our back) is no object.
    if None in values:
        return None
    return b"".join(values[1:])


def _settle(batch: list[tuple[str, Any]], error: BaseException) -> None:
    """Fail the futures of queued gets (cancel them if `error` is a cancel)."""
    for _, future in batch:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)


async def _aclose_client(client: _Client) -> None:
    """Stop a client's queued-get tasks and close its pool (in its own loop)."""
    for task in list(client.tasks):
        task.cancel()
    await client.pool.aclose()


def _check_positive_int(option: str, value: Any, upper: int | None = None) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value <= 0
        or (upper is not None and value > upper)
    ):
        bound = f" and <= {upper}" if upper is not None else ""
        raise ConfigurationError(f"{option} must be an int > 0{bound}, got {value!r}")


def _parse_url(
    url: str,
    hostname: str,
    port: int,
    db: int,
    username: str | None,
    password: str | None,
    ssl: bool,
) -> tuple[str, int, int, str | None, str | None, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigurationError(
            f"redis url must start with redis:// or rediss://, got {parts.scheme!r}"
        )
    try:
        port = parts.port or port
        path = parts.path.strip("/")
        db = int(path) if path else db
    except ValueError as err:
        raise ConfigurationError(f"malformed redis url: {err}") from err
    return (
        parts.hostname or hostname,
        port,
        db,
        unquote(parts.username) if parts.username else username,
        unquote(parts.password) if parts.password else password,
        ssl or parts.scheme == "rediss",
    )
