r"""`RedisStore`: objects in a Redis (or Redis-compatible) server.

One `set` and one uncached `get` are one round trip each. Writes are ``SET``
commands this module encodes itself (RESP) and sends on a pooled redis-py
connection: a payload's large parts (a numpy array's memory, a big `bytes`)
go out by reference as pieces of one bulk value, never joined into a copy
first (redis-py would need one buffer per argument).

Layout of the object under key ``K`` (ARCHITECTURE.md "Redis layout"; ``K``
never holds braces, so every key below hashes to ``K``'s cluster slot):
``K`` holds the payload and ``{K}:v`` its version (`time.time_ns()` at the
write, ASCII), written together by one ``MSET`` (atomic). A payload larger
than `chunk_size` (Redis refuses a bulk value over its
``proto-max-bulk-len``, 512 MB by default) goes to ``{K}:c:<i>`` and ``K``
holds a manifest, ``b"\x00PXC"`` and the chunk count (u32 little-endian),
written last in one ``MULTI``/``EXEC`` with the chunks, so a half-written
object is never readable. A batch is one ``MULTI``/``EXEC``. A `get` is one
``MGET K {K}:v`` (one more for a chunked object's chunks); `exists` and
`evict` read ``K``'s first bytes in their round trip to cover the chunks
too (one more round trip for a chunked object). A write under a user key
also reads, in its transaction, what the key held: an overwritten chunked
object's chunks are then deleted (one more round trip, only then), so none
is left behind.

A store keeps one connection pool per process and event loop (a
connection used on an event loop is bound to it, and a store may be used
from the user's loop and from the background prefetch loop) and builds it
on first use, so constructing a store does no I/O. A forked child builds
its own. At most `max_connections` operations per pool are in flight; on
an event loop, gets that find them all busy wait together and go out as
one ``MGET``.

On a Redis Cluster (``cluster=True`` or ``cluster_nodes=[...]``) the store
reads the slot map with redis-py's cluster client and sends each object's
commands, encoded as above (large parts by reference), straight to the
master of the object's slot on a connection of that node's pool: the
layout is the same and every key of an object (``K``, ``{K}:v``,
``{K}:c:<i>``, ``{K}:w``) is in ``K``'s slot, so single-object operations,
futures and leases are the single-server commands. ``MOVED``, ``ASK``,
``TRYAGAIN``, a slot no node serves or an unreachable node are followed
or retried after reading the slot map again. A batch (writes, reads,
chunk reads, deletes) goes out as one round trip per master.

With ``wait_replicas=N`` every write is followed, in its round trip, by
``WAIT N`` on the same connection: the write is acknowledged once N
replicas of its master have it.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import re
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis
import redis.asyncio.cluster as redis_cluster
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.crc import key_slot

from proxystore._clients import ClientsPerLoop, Lease
from proxystore._compat import (
    ASemaphore,
    ATimeoutError,
    acurrent_loop,
    agather,
    asleep,
)
from proxystore._shared import (
    USER_KEY_PATTERN,
    USER_KEY_RULE,
    new_object_id,
    next_version,
)
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
from proxystore.frame import HEAD_FIXED_SIZE, Split, Stored, header_length
from proxystore.serialize import Buffer, Payload
from proxystore.signing import SigningKeysOption

# async-only: begin
from proxystore.aio._redis_async import (  # isort: skip
    QueuedGets,
    read_large_value,
    send_by_reference,
    unclosed_connection_error,
)
# async-only: end

_IS_SYNC = False

MiB = 1 << 20
DEFAULT_CHUNK_SIZE = 256 * MiB
"""Largest value stored under one Redis key (half of Redis's 512 MB default)."""

PASSWORD_ENV = "PROXYSTORE_REDIS_PASSWORD"
"""Where a store rebuilt from a proxy (which never carries the password) takes it."""

_MANIFEST_MAGIC = b"\x00PXC"
_MANIFEST = struct.Struct("<4sI")
# Parts at least this large are sent by reference; smaller ones are copied
# together with their neighbours into one buffer (one send instead of many).
_ZERO_COPY_MIN_BYTES = 256 * 1024
_MAX_CHUNKS = 1_000_000

_CertReqs = Literal["required", "optional", "none"]
_Write = tuple[str, list[Buffer]]
"""One key's write: the key and the pieces that make its value."""
_Command = list[_Write]
"""Writes sent as one command: SET for one key, MSET (atomic) for several."""


class _Connection(Protocol):
    """The part of a redis-py connection the store uses."""

    async def send_packed_command(
        self, command: Sequence[Buffer], check_health: bool = True
    ) -> None: ...

    async def read_response(self) -> Any: ...

    async def disconnect(self) -> None: ...


class _Pool(Protocol):
    """The part of a redis-py connection pool the store uses.

    `get_connection()` takes no argument: redis-py 5.3 made the command
    name optional (and deprecated it), hence ``redis>=5.3``.
    """

    async def get_connection(self) -> _Connection: ...

    async def release(self, connection: _Connection) -> None: ...

    async def aclose(self) -> None: ...


class _Client:
    """A connection pool and the slots bounding its concurrent operations."""

    # async-only: begin
    queue: QueuedGets
    """Gets that found every slot taken, sent together as one MGET."""
    # async-only: end

    def __init__(self, pool: _Pool, slots: ASemaphore) -> None:
        self.pool = pool
        self.slots = slots


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
        socket_timeout: Seconds to wait on a reply (and, on an event loop,
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
        stats: Also record them per key (see `Store.stats`).
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.aio.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.
        cluster: The server is a node of a Redis Cluster: `hostname`:`port`
            is the seed the cluster's layout is read from.
        cluster_nodes: Seed nodes of a Redis Cluster as ``"host:port"``
            strings (implies `cluster`; `hostname` and `port` become the
            first seed). Any live node is enough; several survive a seed's
            failure. A proxy carries them (never the password).
        cluster_retries: On a cluster, how many times one command is tried
            again after a redirect (``MOVED``, ``ASK``) or an unreachable
            node (10 ms to 100 ms apart, reading the slot map again): a
            command on a slot whose master just died fails within about
            half a second, and works again once a replica has taken over.
        wait_replicas: After every write, wait (Redis ``WAIT``, in the
            write's round trip) until this many replicas of the master that
            took it have it too, so an acknowledged write survives the
            master's death; 0 (the default) does not wait. Costs a replica's
            round trip per write.
        wait_timeout: Seconds `wait_replicas` waits; fewer confirmations by
            then raise `StoreTimeoutError` (the write is on the master, not
            known to be on enough replicas).

    Raises:
        ConfigurationError: If an argument cannot work (bad URL, port, db,
            timeout, chunk size or seed node; a cluster has only db 0).

    Operations raise `StoreConnectionError` (naming ``host:port``) when the
    server cannot be reached, drops the connection or refuses the
    credentials; `StoreTimeoutError` when it does not answer within
    `socket_timeout`; `ConfigurationError` for a `db` the server does not
    have; `StoreOperationError` when it refuses a command (say, a value
    over its ``proto-max-bulk-len``). On a cluster the messages name the
    node owning the key's slot, and an unserved slot (a master down before
    its replica takes over) is a `StoreConnectionError`. The redis-py error
    is the ``__cause__``. On one server nothing is retried (on a cluster,
    see `cluster_retries`): a connection found dead when taken from the
    pool is replaced, so the store recovers by itself once the server is
    back. With `wait_replicas`, a write too few replicas confirmed in
    `wait_timeout` raises `StoreTimeoutError` (it is on the master).

    Example:
        ```python
        async with RedisStore("example", "localhost", 6379) as store:
            key = await store.aset([1, 2, 3])
            assert await store.aget(key) == [1, 2, 3]
        ```
    """

    _IDENTITY = ("hostname", "port", "db", "username", "ssl", "cluster_nodes")
    _SECRETS = (*Store._SECRETS, "password")
    _SECRETS_FROM_ENV = (("password", PASSWORD_ENV),)
    _PROCESS_LOCAL = ("url",)
    _USER_KEY_REFUSAL = None

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
        stats: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
        cluster: bool = False,
        cluster_nodes: Sequence[str] | None = None,
        cluster_retries: int = 3,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        super().__init__(name, **self._base_options(locals()))
        if url is not None:
            hostname, port, db, username, password, ssl = _parse_url(
                url, hostname, port, db, username, password, ssl
            )
        _check_positive_int("port", port, upper=65535)
        _check_positive_int("max_connections", max_connections)
        _check_positive_int("chunk_size", chunk_size)
        _check_count("cluster_retries", cluster_retries)
        _check_count("wait_replicas", wait_replicas)
        _check_count("db", db)
        owner = f"RedisStore {name!r}"
        check_seconds(socket_timeout, "socket_timeout", owner)
        check_seconds(socket_connect_timeout, "socket_connect_timeout", owner)
        check_seconds(wait_timeout, "wait_timeout", owner)
        if ssl_cert_reqs not in ("required", "optional", "none"):
            raise ConfigurationError(
                "ssl_cert_reqs must be 'required', 'optional' or 'none', "
                f"got {ssl_cert_reqs!r}"
            )
        seeds = _seeds(cluster, cluster_nodes, hostname, port, db)
        if seeds:
            hostname, port = _split_seed(seeds[0])
        self.cluster_nodes = seeds
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
        self.cluster_retries = cluster_retries
        self.wait_replicas = wait_replicas
        self.wait_timeout = float(wait_timeout)
        # WAIT after EXEC (inside a MULTI it would not block).
        self._wait: list[bytes] = (
            [
                _command(
                    "WAIT", str(wait_replicas), str(max(1, int(wait_timeout * 1000)))
                )
            ]
            if wait_replicas
            else []
        )
        self._target = f"cluster {','.join(seeds)}" if seeds else f"{hostname}:{port}"
        self._cluster = seeds is not None
        self._clients: ClientsPerLoop[_Client] = ClientsPerLoop(
            self._new_client, _aclose_client, name
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
            "cluster": self.cluster_nodes is not None,
            "cluster_nodes": self.cluster_nodes,
            "cluster_retries": self.cluster_retries,
            "wait_replicas": self.wait_replicas,
            "wait_timeout": self.wait_timeout,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, "
            f"target={self._target!r}, db={self.db})"
        )

    def _validate_key(self, key: Any) -> str:
        # Minted and user keys alike: no braces or colons, which would
        # collide with the derived keys ({K}:v, {K}:c:<i>) and their slot.
        if type(key) is not str or USER_KEY_PATTERN.fullmatch(key) is None:
            raise InvalidKeyError(key, f"RedisStore {USER_KEY_RULE}")
        return key

    # -- the byte-level driver ----------------------------------------------

    async def _aset_bytes(self, payload: Payload, key: str | None = None) -> str:
        if key is not None:
            return (await self._aset_bytes_batch([payload], [key]))[0]
        key, commands, _ = self._writes(payload)
        await self._awrite(commands, "set")
        return key

    async def _aset_bytes_batch(
        self,
        payloads: Sequence[Payload],
        keys: Sequence[str | None] | None = None,
        expiry: float | None = None,
    ) -> list[str]:
        wanted = keys if keys is not None else [None] * len(payloads)
        stored: list[str] = []
        commands: list[_Command] = []
        written: dict[str, tuple[int, bytes]] = {}
        for payload, key in zip(payloads, wanted, strict=True):
            stored_key, more, version = self._writes(payload, key)
            stored.append(stored_key)
            commands += more
            if key is not None:
                # Its chunk count (one command per chunk, then the manifest)
                # and version, to clean up what it replaced.
                written[key] = (len(more) - 1, version)
        operation = "set_batch" if len(payloads) > 1 else "set"
        try:
            heads = await self._awrite(
                commands, operation, list(written), expiry=expiry
            )
        except ProxyStoreError as err:
            if len(payloads) == 1:
                raise
            # One MULTI: all of it or none was written, and after a dropped
            # connection we cannot tell which; delete it all if we can.
            every_key = [key for command in commands for key, _ in command]
            removed = await self._aevict_quietly(every_key)
            raise BatchWriteError(
                self.name,
                "set_batch",
                len(payloads),
                err,
                written=0,
                remaining=[] if removed else stored,
            ) from err
        for (key, (count, version)), head in zip(written.items(), heads, strict=True):
            stale = _chunk_keys(key, _manifest_count(head))[count:]
            if stale:
                await self._aevict_stale_chunks(key, version, stale)
        return stored

    async def _aevict_stale_chunks(
        self, key: str, version: bytes, chunks: list[str]
    ) -> None:
        """Delete the chunks of the object a user-key write replaced.

        Only while the key still holds that write (a script, so the check
        and the delete are atomic): a newer chunked object under the key
        keeps its chunks.
        """
        command = _command(
            "EVAL",
            _DELETE_IF_VERSION,
            str(1 + len(chunks)),
            _version_key(key),
            *chunks,
            version.decode(),
        )
        try:
            await self._aexecute([command], 1, key)
        except _DRIVER_ERRORS as err:
            raise self._error(
                err, "set (deleting the replaced object's chunks)"
            ) from err

    async def _awrite(
        self,
        commands: list[_Command],
        operation: str,
        heads: Sequence[str] = (),
        tail: Sequence[bytes] = (),
        *,
        expiry: float | None = None,
    ) -> list[Any]:
        """Send writes in one round trip, in MULTI/EXEC if more than one command.

        An object that fits one value is one MSET of the value and its
        version, atomic by itself. With `wait_replicas`, a ``WAIT`` follows
        in the same round trip. On a cluster, writes of one object go to
        its slot's master the same way; several objects' go to
        `_awrite_cluster`. With `expiry` (a lease), every key written and
        each object's wake key expire then (``PEXPIREAT`` in the same MULTI).

        Returns:
            The first bytes `heads` (keys) held before the writes, read in
            the same transaction.
        """
        key = _object_key(commands[0][0][0])
        if self._cluster and any(
            _object_key(name) != key
            for names in ([name for name, _ in command] for command in commands)
            for name in names
        ):
            return await self._awrite_cluster(commands, operation, heads, expiry)
        if expiry is not None:
            tail = [*tail, *_lease_tail(commands, expiry)]
        count = len(commands) + len(heads) + len(tail)
        replies = 1 if count == 1 else count + 2
        writes = [write for command in commands for write in command]
        try:
            results = await self._aexecute(
                _pack(commands, heads, tail, self._wait),
                replies + len(self._wait),
                key,
            )
        except _DRIVER_ERRORS as err:
            error = self._error(err, operation)
            if isinstance(error, StoreConnectionError) and _size_over(writes, MiB):
                # The server drops the connection on a value longer than its
                # proto-max-bulk-len (1 MiB at least): say so instead of
                # "cannot reach".
                error = await self._aexplain_dropped_write(error, writes, operation)
            raise error from err
        return await self._achecked(results, replies, writes, operation, heads)

    async def _achecked(
        self,
        results: list[Any],
        replies: int,
        writes: list[_Write],
        operation: str,
        heads: Sequence[str],
    ) -> list[Any]:
        """Check one object's write replies; return what `heads` held.

        A command EXEC ran and the server refused leaves none of the
        object's keys; too few replicas confirming (`wait_replicas`) is a
        `StoreTimeoutError`.
        """
        if self._wait:
            confirmed = results.pop()
            if not isinstance(confirmed, int) or confirmed < self.wait_replicas:
                raise StoreTimeoutError(
                    self._node_target(writes[0][0]),
                    self.wait_timeout,
                    f"{operation} (written, but {confirmed} of "
                    f"{self.wait_replicas} replicas confirmed it)",
                )
        failed = (
            [r for r in results[-1] if isinstance(r, Exception)] if replies > 1 else []
        )
        if replies == 1 and isinstance(results[0], Exception):
            failed = [results[0]]
        if failed:
            # EXEC runs every queued command even if one of them fails.
            await self._aevict_quietly([key for key, _ in writes])
            raise StoreOperationError(
                f"{operation} on {self._node_target(writes[0][0])} "
                f"(store {self.name!r}) failed: {failed[0]}"
            )
        return list(results[-1][: len(heads)]) if heads else []

    async def _awrite_cluster(
        self,
        commands: list[_Command],
        operation: str,
        heads: Sequence[str],
        expiry: float | None = None,
    ) -> list[Any]:
        """`_awrite` of several objects on a cluster: one round trip per node.

        Each object is one command (value and version, ``MSET``) or one
        ``MULTI``/``EXEC`` (chunked, or a user key whose old head is read)
        on the master of its slot; the objects of one master go out
        together, followed by one ``WAIT`` with `wait_replicas`.
        """
        units: dict[str, tuple[list[_Command], list[str]]] = {}
        for key in heads:
            units.setdefault(key, ([], []))[1].append(key)
        for command in commands:
            units.setdefault(_object_key(command[0][0]), ([], []))[0].append(command)
        packed: list[tuple[str, list[Buffer], int]] = []
        for key, (unit, unit_heads) in units.items():
            tail = [] if expiry is None else _lease_tail(unit, expiry)
            count = len(unit) + len(unit_heads) + len(tail)
            packed.append(
                (key, _pack(unit, unit_heads, tail), 1 if count == 1 else count + 2)
            )
        try:
            results = await self._aexecute_groups(packed)
        except _DRIVER_ERRORS as err:
            raise self._error(err, operation) from err
        found: dict[str, Any] = {}
        failure: ProxyStoreError | None = None
        for (key, (unit, unit_heads)), (_, _, replies), result in zip(
            units.items(), packed, results, strict=True
        ):
            writes = [write for command in unit for write in command]
            try:
                head = await self._achecked(
                    result, replies, writes, operation, unit_heads
                )
            except ProxyStoreError as err:
                failure = failure or err
                continue
            if head:
                found[key] = head[0]
        if failure is not None:
            # Leave none of the batch (the caller also evicts on failure).
            raise failure
        return [found.get(key) for key in heads]

    def _node_target(self, key: str) -> str:
        """The target to name in an error about `key`: on a cluster, its master too."""
        if not self._cluster:
            return self._target
        node = None
        with contextlib.suppress(Exception):  # no slot map yet: the cluster only
            cluster: Any = self._client().pool
            node = cluster.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        return self._target if node is None else f"{node.name} ({self._target})"

    async def _aexplain_dropped_write(
        self, error: ProxyStoreError, writes: list[_Write], operation: str
    ) -> ProxyStoreError:
        largest = max(_size(pieces) for _, pieces in writes)
        try:
            command = _command("CONFIG", "GET", "proto-max-bulk-len")
            (reply,) = await self._aexecute([command], 1, writes[0][0])
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
        if self._cluster and len({_object_key(key) for key in keys}) > 1:
            try:
                await self._aper_object(
                    [(key, _command("DEL", key)) for key in set(keys)], "evict"
                )
            except ProxyStoreError:
                return False
            return True
        try:
            await self._aexecute([_command("DEL", *set(keys))], 1, keys[0])
        except _DRIVER_ERRORS:
            return False
        return True

    async def _aget_bytes(self, key: str) -> Stored | None:
        found = await self._aget_versioned(key)
        return None if found is None else found[0]

    async def _aget_versioned(self, key: str) -> tuple[Stored, int] | None:
        pair: list[Any] | None = None
        # async-only: begin
        if not self._cluster and self._client().queue.busy():
            # Every connection is busy: wait for one together with the
            # other gets queued meanwhile, as one MGET.
            async with self._lease() as client:
                pair = await client.queue.aget(key)
        # async-only: end
        if pair is None:
            try:
                # A large value is read straight into its own buffer
                # (`_read_large_value`).
                (pair,) = await self._aexecute(
                    [_command("MGET", key, _version_key(key))], 1, key, large="value"
                )
            except _DRIVER_ERRORS as err:
                raise self._error(err, "get") from err
        value, version = pair
        if value is None:
            return None
        count = _manifest_count(value)
        if count:
            (value,) = await self._aget_chunks({key: count}, "get")
            if value is None:
                return None
        return value, _version(version)

    async def _aget_chunks(
        self, counts: dict[str, int], operation: str
    ) -> list[Buffer | None]:
        """Join the chunks of manifests' objects (None where a chunk is gone).

        One object's large chunks are read into one buffer on the sync
        face (`_read_large_chunks`).
        """
        values: Any
        if self._cluster and len(counts) > 1:
            # One MGET per object (its chunks share its slot).
            replies = await self._aper_object(
                [
                    (key, _command("MGET", *_chunk_keys(key, count)))
                    for key, count in counts.items()
                ],
                operation,
            )
            values = [value for reply in replies for value in reply]
        else:
            names = [
                chunk
                for key, count in counts.items()
                for chunk in _chunk_keys(key, count)
            ]
            try:
                (values,) = await self._aexecute(
                    [_command("MGET", *names)],
                    1,
                    next(iter(counts)),
                    large="chunks" if len(counts) == 1 else "",
                )
            except _DRIVER_ERRORS as err:
                raise self._error(err, operation) from err
            if isinstance(values, _Joined):
                return [values.value]
        joined: list[Buffer | None] = []
        start = 0
        for count in counts.values():
            chunks = values[start : start + count]
            start += count
            # A manifest without a chunk (evicted behind our back) is no object.
            joined.append(None if None in chunks else b"".join(chunks))
        return joined

    async def _apair(self, first: bytes, second: bytes, key: str) -> list[Any]:
        """Send two encoded commands in one round trip; return their replies.

        On a cluster they go in one ``MULTI``/``EXEC`` so that one ``ASKING``
        (a slot in migration) covers both; on one server the two extra
        replies would only cost time.
        """
        if self._cluster:
            *_, replies = await self._aexecute([_transaction(first, second)], 4, key)
            return list(replies)
        return await self._aexecute([first + second], 2, key)

    async def _aget_version(self, key: str) -> int | None:
        try:
            exists, version = await self._apair(
                _command("EXISTS", key), _command("GET", _version_key(key)), key
            )
        except _DRIVER_ERRORS as err:
            raise self._error(err, "get_timestamp") from err
        return _version(version) if exists else None

    async def _aget_bytes_batch(self, keys: Sequence[str]) -> list[Buffer | None]:
        values: list[Any]
        if self._cluster:
            # Keys of several slots: one GET each, one round trip per master.
            values = await self._aper_object(
                [(key, _command("GET", key)) for key in keys], "get_batch"
            )
        else:
            try:
                (values,) = await self._aexecute([_command("MGET", *keys)], 1)
            except _DRIVER_ERRORS as err:
                raise self._error(err, "get_batch") from err
        results: list[Buffer | None] = list(values)
        counts = {
            key: count
            for key, value in zip(keys, values, strict=True)
            if value is not None and (count := _manifest_count(value))
        }
        if counts:
            joined = dict(
                zip(counts, await self._aget_chunks(counts, "get_batch"), strict=True)
            )
            results = [
                joined.get(key, value) for key, value in zip(keys, results, strict=True)
            ]
        return results

    async def _aexists(self, key: str) -> bool:
        head = _command("GETRANGE", key, "0", str(_MANIFEST.size - 1))
        try:
            count, value = await self._apair(_command("EXISTS", key), head, key)
            chunks = _chunk_keys(key, _manifest_count(value))
            if count and chunks:
                (count,) = await self._aexecute([_command("EXISTS", *chunks)], 1, key)
                return bool(count == len(chunks))
        except _DRIVER_ERRORS as err:
            raise self._error(err, "exists") from err
        return bool(count)

    async def _aevict(self, key: str) -> None:
        head = _command("GETRANGE", key, "0", str(_MANIFEST.size - 1))
        delete = _command("DEL", key, _version_key(key), _wake_key(key))
        try:
            value, _ = await self._apair(head, delete, key)
            chunks = _chunk_keys(key, _manifest_count(value))
            if chunks:
                await self._aexecute([_command("DEL", *chunks)], 1, key)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "evict") from err

    # async-only: begin
    async def _aget_holding(self, client: _Client, keys: list[str]) -> list[Any]:
        """MGET the keys' values and versions on a slot the caller holds."""
        names = [name for key in keys for name in (key, _version_key(key))]
        try:
            replies = await self._aexecute_on(client, [_command("MGET", *names)], 1)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "get") from err
        values: list[Any] = replies[0]
        return values

    # async-only: end

    async def _aclose(self) -> None:
        await self._clients.aclose_all(_aclose_client)

    # -- leases -----------------------------------------------------------------

    async def _aset_bytes_leased(
        self, payload: Payload, key: str | None, expiry: float
    ) -> str:
        """Write the object and ``PEXPIREAT`` every key of it in one MULTI.

        The server deletes it at `expiry` even if this process dies right
        after the write. A user key's write goes through
        `_aset_bytes_batch` (which also cleans up what it replaced), with
        the expiry in its MULTI.
        """
        if key is not None:
            return (await self._aset_bytes_batch([payload], [key], expiry))[0]
        stored, commands, _ = self._writes(payload)
        await self._awrite(commands, "set", expiry=expiry)
        return stored

    async def _aset_bytes_batch_leased(
        self,
        payloads: Sequence[Payload],
        keys: Sequence[str | None] | None,
        expiry: float,
    ) -> list[str]:
        """Write a batch and ``PEXPIREAT`` every key of it in the same MULTI."""
        return await self._aset_bytes_batch(payloads, keys, expiry)

    async def _aset_lease(self, key: str, expiry: float) -> None:
        """Set the server-side expiry of every key of the object under `key`."""
        head = _command("GETRANGE", key, "0", str(_MANIFEST.size - 1))
        try:
            (value,) = await self._aexecute([head], 1, key)
            names = [key, _version_key(key), _wake_key(key)]
            names += _chunk_keys(key, _manifest_count(value))
            tail = _expire_at(names, expiry)
            await self._aexecute([_MULTI, *tail, _EXEC], len(tail) + 2, key)
        except _DRIVER_ERRORS as err:
            raise self._error(err, "lease") from err

    # -- futures ----------------------------------------------------------------

    async def _aset_future(self, key: str, payload: Payload) -> None:
        """Write the value and push one wake token to ``{K}:w``, in one MULTI.

        Waiters never pop the token: each ``BLMOVE {K}:w {K}:w`` rotates the
        one-element list onto itself, so every waiter, present or later,
        wakes on the same token (Redis serves all clients blocked on a list
        while it is non-empty). The list is deleted with the object.
        """
        _, commands, _ = self._writes(payload, key)
        wake = _wake_key(key)
        tail = [_command("DEL", wake), _command("RPUSH", wake, "1")]
        await self._awrite(commands, "set_result", tail=tail)

    async def _aexists_within(self, key: str, timeout: float | None) -> bool:
        """Block on ``{K}:w`` (BLMOVE), in slices shorter than `socket_timeout`.

        Each waiter holds a pooled connection of its own, not one of the
        `max_connections` operation slots (so waiters cannot starve the
        write that wakes them); a slice that ends without a token is
        retried until `timeout` (None: no limit) has passed.
        """
        wake = _wake_key(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        longest = max(self.socket_timeout / 2, 0.01)
        while True:
            block = longest
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return await self._aexists(key)
                block = min(block, remaining)
            # BLMOVE's timeout 0 means "forever": never send it.
            command = _command(
                "BLMOVE", wake, wake, "LEFT", "LEFT", f"{max(block, 0.001):.3f}"
            )
            try:
                # Outside the slots bounding operations: waiters blocked on
                # futures must never starve the set_result that wakes them.
                async with self._lease() as client:
                    (token,) = await self._aexecute_on(client, [command], 1, key)
            except _DRIVER_ERRORS as err:
                raise self._error(err, "waiting for a future") from err
            if isinstance(token, Exception):
                raise StoreOperationError(
                    f"waiting for future {key!r} on {self._target} "
                    f"(store {self.name!r}) failed: {token} (BLMOVE needs Redis 6.2+)"
                )
            if token is not None:
                return True

    # -- helpers --------------------------------------------------------------

    async def _aexecute(
        self,
        packed: Sequence[Buffer],
        replies: int,
        key: str | None = None,
        *,
        large: _Large = "",
    ) -> list[Any]:
        """Send packed commands on a pooled connection and read their replies.

        redis-py's connection and parser (hiredis), without its client
        layer: the store's commands need no reply callbacks, and large
        values go out by reference. On a cluster, every key of the
        commands is in `key`'s slot, and they go to its master. With
        `large`, the last reply is an array whose first element may be a
        large value (``"value"``) or an object's chunks (``"chunks"``), read
        straight into one buffer (`_aread_last`).
        """
        async with self._lease() as client, client.slots:
            return await self._aexecute_on(client, packed, replies, key, large=large)

    async def _aexecute_on(
        self,
        client: _Client,
        packed: Sequence[Buffer],
        replies: int,
        key: str | None = None,
        *,
        large: _Large = "",
    ) -> list[Any]:
        """`_aexecute` for a caller that holds one of the client's slots."""
        if self._cluster:
            assert key is not None
            return await self._aexecute_slot(client, packed, replies, key, large)
        connection = await client.pool.get_connection()
        try:
            await _asend(connection, packed)
            return await _aread_replies(connection, replies, large)
        except BaseException:
            # Unread replies or a half-sent command: never reuse it.
            await connection.disconnect()
            raise
        finally:
            await client.pool.release(connection)

    async def _aexecute_slot(
        self,
        client: _Client,
        packed: Sequence[Buffer],
        replies: int,
        key: str,
        large: _Large = "",
    ) -> list[Any]:
        """Cluster: send packed commands to the master of `key`'s slot.

        The packed commands are one command or one ``MULTI``/``EXEC``,
        optionally followed by keyless ones (``WAIT``), so one ``ASKING``
        before them covers every key. ``MOVED``, ``TRYAGAIN``,
        ``CLUSTERDOWN``, an uncovered slot or an unreachable node read the
        slot map again and retry (`cluster_retries` times, 10 ms to 100 ms
        apart); ``ASK`` resends to the node named, after ``ASKING``. The
        error raised names the node it came from.
        """
        cluster: Any = client.pool
        slot = key_slot(key.encode())
        asking: Any = None
        node: Any = None
        attempt = 0
        while True:
            try:
                # async-only: begin
                await cluster.initialize()  # the event-loop client reads lazily
                # async-only: end
                node = asking or cluster.nodes_manager.get_node_from_slot(slot)
                if asking is None:
                    return await self._aexecute_node(
                        cluster, node, packed, replies, large
                    )
                results = await self._aexecute_node(
                    cluster, node, [_ASKING, *packed], replies + 1, large
                )
                return results[1:]
            except redis_errors.AskError as err:
                asking = cluster.get_node(host=err.host, port=err.port)
                if asking is None or attempt >= self.cluster_retries:
                    _blame(err, node)
                    raise
            except _RETRIED as err:
                if attempt >= self.cluster_retries or isinstance(err, _TIMEOUTS):
                    _blame(err, node)
                    raise
                asking = None
                await asleep(_BACKOFF.compute(attempt + 1))
                await _arefresh_slots(cluster)
            except BaseException as err:
                _blame(err, node)
                raise
            attempt += 1

    async def _aexecute_node(
        self,
        cluster: Any,
        node: Any,
        packed: Sequence[Buffer],
        replies: int,
        large: _Large = "",
    ) -> list[Any]:
        """Send packed commands on one of a cluster node's pooled connections."""
        connection, release = _node_connection(cluster, node)
        try:
            await _asend(connection, packed)
            return await _aread_replies(connection, replies, large)
        # async-only: begin
        except (AttributeError, TypeError) as err:
            await connection.disconnect()
            raise unclosed_connection_error(err) from err
        # async-only: end
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            release(connection)

    async def _aexecute_groups(
        self, units: list[tuple[str, list[Buffer], int]], wait: bool = True
    ) -> list[list[Any]]:
        """Cluster: send (key, packed commands, replies) units, a round trip per master.

        The units whose slots one master serves go out together, followed
        (if `wait`) by one ``WAIT`` with `wait_replicas` (its reply is
        appended to each of their replies); masters are sent to
        concurrently on an event loop. A master that fails or redirects
        has its units sent again one by one (`_aexecute_slot`, which
        follows the redirects).
        """
        after = self._wait if wait else []
        async with self._lease() as client, client.slots:
            cluster: Any = client.pool
            # async-only: begin
            await cluster.initialize()
            # async-only: end
            groups: dict[str, tuple[Any, list[int]]] = {}
            for index, (key, _, _) in enumerate(units):
                try:
                    node = cluster.nodes_manager.get_node_from_slot(
                        key_slot(key.encode())
                    )
                except redis_errors.SlotNotCoveredError:
                    node = None
                groups.setdefault("" if node is None else node.name, (node, []))[
                    1
                ].append(index)
            results: list[list[Any]] = [[] for _ in units]

            async def send(node: Any, indexes: list[int]) -> int:
                """Send one master's units; return how many."""
                if node is not None:
                    packed = [part for i in indexes for part in units[i][1]]
                    counts = [units[i][2] for i in indexes]
                    try:
                        replies = await self._aexecute_node(
                            cluster,
                            node,
                            [*packed, *after],
                            sum(counts) + len(after),
                        )
                    except _RETRIED:
                        pass  # each unit again, following redirects
                    else:
                        waited = replies[-1:] if after else []
                        start = 0
                        for index, count in zip(indexes, counts, strict=True):
                            results[index] = [
                                *replies[start : start + count],
                                *waited,
                            ]
                            start += count
                        return len(indexes)
                for index in indexes:
                    key, packed_unit, count = units[index]
                    results[index] = await self._aexecute_slot(
                        client,
                        [*packed_unit, *after],
                        count + len(after),
                        key,
                    )
                return len(indexes)

            await agather(*(send(node, indexes) for node, indexes in groups.values()))
            return results

    async def _aper_object(
        self, commands: list[tuple[str, bytes]], operation: str
    ) -> list[Any]:
        """Cluster: (object key, encoded command) pairs, a round trip per master.

        Returns each command's reply, in order.
        """
        try:
            results = await self._aexecute_groups(
                [(key, [command], 1) for key, command in commands], wait=False
            )
        except _DRIVER_ERRORS as err:
            raise self._error(err, operation) from err
        return [result[0] for result in results]

    def _new_cluster_client(self) -> Any:
        """A redis-py cluster client (its own pool per node)."""
        assert self.cluster_nodes is not None
        options: dict[str, Any] = {}
        if self.ssl:
            options = {
                "ssl": True,
                "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
                "ssl_cert_reqs": self.ssl_cert_reqs,
                "ssl_check_hostname": self.ssl_check_hostname
                and self.ssl_cert_reqs != "none",
            }
        # Typed `Any`: the sync twin's constructors are unannotated.
        cluster_class: Any = redis_cluster.RedisCluster
        node_class: Any = redis_cluster.ClusterNode
        return cluster_class(
            startup_nodes=[
                node_class(*_split_seed(node)) for node in self.cluster_nodes
            ],
            username=self.username,
            password=self.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            # Operations are bounded by our slots; future waiters (BLMOVE)
            # hold connections of their own beyond them.
            max_connections=_UNBOUNDED,
            retry=Retry(
                ExponentialWithJitterBackoff(base=0.01, cap=0.1), self.cluster_retries
            ),
            **options,
        )

    def _client(self) -> _Client:
        return self._clients.client_for(acurrent_loop())

    def _lease(self) -> Lease[_Client]:
        """This loop's (or the sync face's) client, held for one request."""
        return self._clients.lease(acurrent_loop())

    def _new_client(self) -> _Client:
        # Bounds connections per pool: a thousand concurrent tasks share
        # max_connections sockets. A semaphore is much cheaper per
        # command than redis-py's BlockingConnectionPool.
        client = _Client(self._pool(), ASemaphore(self.max_connections))
        # async-only: begin
        client.queue = QueuedGets(
            client.slots, lambda keys: self._aget_holding(client, keys)
        )
        # async-only: end
        return client

    def _pool(self) -> _Pool:
        if self._cluster:
            cluster: _Pool = self._new_cluster_client()
            return cluster
        options: dict[str, Any] = {}
        if self.ssl:
            options = {
                "connection_class": redis.SSLConnection,
                "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
                "ssl_cert_reqs": self.ssl_cert_reqs,
                # A host name cannot be checked against a certificate that is
                # not verified; redis-py < 6 refuses the combination.
                "ssl_check_hostname": self.ssl_check_hostname
                and self.ssl_cert_reqs != "none",
            }
        # Typed `Any`: the sync twin's constructor is unannotated.
        pool_class: Any = redis.ConnectionPool
        pool: _Pool = pool_class(
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

    def _writes(
        self, payload: Payload, key: str | None = None
    ) -> tuple[str, list[_Command], bytes]:
        """Return the key (new if None), the commands storing `payload`, its version."""
        if key is None:
            key = new_object_id()
        version_text = str(next_version()).encode()
        version: _Write = (_version_key(key), [version_text])
        pieces = _pieces(payload)
        size = _size(pieces)
        if size <= self.chunk_size and not _looks_like_manifest(pieces, size):
            return key, [[(key, pieces), version]], version_text
        # A raw value (serialize=False) shaped like a manifest is stored as
        # one chunk behind a real manifest, so it reads back as itself.
        chunks = _split(pieces, self.chunk_size)
        if len(chunks) > _MAX_CHUNKS:
            raise StoreOperationError(
                f"set on store {self.name!r}: {len(chunks)} chunks of "
                f"{self.chunk_size} bytes is over {_MAX_CHUNKS}; raise chunk_size"
            )
        # One SET per chunk: a single command holding every chunk could
        # outgrow the server's client-query-buffer-limit. The manifest goes
        # last: the object exists once all chunks do.
        commands = [
            [write] for write in zip(_chunk_keys(key, len(chunks)), chunks, strict=True)
        ]
        commands.append(
            [version, (key, [_MANIFEST.pack(_MANIFEST_MAGIC, len(chunks))])]
        )
        return key, commands, version_text

    def _error(
        self, err: BaseException, operation: str, node: str | None = None
    ) -> ProxyStoreError:
        """Wrap a driver error; `node` is the cluster node that failed."""
        node = node or getattr(err, "_proxystore_node", None)
        target = self._target if node is None else f"{node} ({self._target})"
        if isinstance(err, _CLUSTER_DOWN):
            return StoreConnectionError(
                target,
                f"{operation} failed: the cluster cannot serve this key's slot "
                f"now (a failover or slot migration under way?): {err}",
            )
        if isinstance(err, redis_errors.RedisClusterException):
            # No seed answered as a cluster node, or no slot map.
            return StoreConnectionError(target, f"{operation} failed: {err}")
        if isinstance(err, redis_errors.AuthenticationError):
            return StoreConnectionError(
                target,
                f"authentication failed for user {self.username or 'default'!r} "
                f"(check username and password): {err}",
            )
        if isinstance(err, redis_errors.ResponseError) and "DB index" in str(err):
            return ConfigurationError(f"db {self.db} does not exist on {target}: {err}")
        if "bulk length" in str(err) or "proto-max-bulk-len" in str(err):
            return StoreOperationError(
                f"{operation} on {target} (store {self.name!r}) failed: "
                f"a value is larger than the server's proto-max-bulk-len; "
                f"lower chunk_size (now {self.chunk_size}): {err}"
            )
        if isinstance(err, (redis_errors.TimeoutError, TimeoutError)):
            connecting = "connect" in str(err).lower()
            timeout = self.socket_connect_timeout if connecting else self.socket_timeout
            if connecting and self.ssl:
                # A plain-text server never answers a TLS handshake.
                operation += " (TLS handshake: does the server serve TLS?)"
            return StoreTimeoutError(target, timeout, operation)
        if isinstance(err, (redis_errors.ConnectionError, OSError)):
            return StoreConnectionError(target, f"{operation} failed: {err}")
        return StoreOperationError(
            f"{operation} on {target} (store {self.name!r}) failed: {err}"
        )


# RedisClusterException is no RedisError (say, a slot no node serves).
_DRIVER_ERRORS = (
    redis_errors.RedisError,
    redis_errors.RedisClusterException,
    OSError,
    ATimeoutError,
)
_CLUSTER_ERRORS = _DRIVER_ERRORS
_CLUSTER_DOWN = (
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)
# Cluster errors after which the slot map is read again and the command retried.
_RETRIED = (
    *_CLUSTER_DOWN,
    redis_errors.MovedError,
    redis_errors.AskError,
    redis_errors.ConnectionError,
    OSError,
)
_TIMEOUTS = (redis_errors.TimeoutError, TimeoutError, ATimeoutError)
_BACKOFF = ExponentialWithJitterBackoff(base=0.01, cap=0.1)
_UNBOUNDED = 2**31 - 1
_ASKING = b"*1\r\n$6\r\nASKING\r\n"


async def _asend(connection: Any, packed: Sequence[Buffer]) -> None:
    """Send packed commands on a redis-py connection, large parts by reference.

    On an event loop the parts are written to the stream one by one
    (`proxystore.aio._redis_async.send_by_reference`): redis-py's
    ``writelines`` would join them into one copy first on Python < 3.12. A
    connection not yet open is opened by redis-py's ``send_packed_command``.
    """
    # async-only: begin
    if await send_by_reference(connection, packed):
        return
    # async-only: end
    await connection.send_packed_command(packed, check_health=False)


async def _aread_replies(connection: Any, replies: int, large: _Large) -> list[Any]:
    """Read `replies` replies; with `large`, the last one by `_aread_last`."""
    results = [await connection.read_response() for _ in range(replies - bool(large))]
    if large:
        results.append(await _aread_last(connection, large))
    return results


async def _aread_last(connection: Any, large: _Large) -> Any:
    """Read an array reply whose first element may be large.

    The sync face reads a large value straight from the socket into a
    buffer of its own (`_read_large_value`), an object's large chunks into
    one buffer (`_read_large_chunks`); on an event loop, a large value is
    read from the stream into one buffer
    (`proxystore.aio._redis_async.read_large_value`). Anything else is read
    by redis-py.
    """
    # async-only: begin
    if large == "chunks":
        return await connection.read_response()
    return await read_large_value(connection)
    # async-only: end
    if large == "chunks":
        reply = _read_large_chunks(connection)
    else:
        reply = _read_large_value(connection)
    return connection.read_response() if reply is _NOT_LARGE else reply


# A value at least this large, first in an array reply, is read straight
# from the socket (`_read_large_value`); smaller ones by redis-py's parser.
_LARGE_VALUE = 1 << 20
# Enough for an array header and its first bulk header.
_PEEK = 64
_LARGE_HEAD = re.compile(rb"\*([1-9][0-9]{0,8})\r\n\$([0-9]{1,15})\r\n")
_NOT_LARGE: Any = object()
_Large = Literal["", "value", "chunks"]
"""How `_aread_last` reads: as redis-py does, a large value first, or chunks."""
_BULK_HEAD = re.compile(rb"\$([0-9]{1,15})\r\n")
# A missing key in an array reply (RESP2, RESP3).
_NULLS = (b"$-1\r\n", b"_\r\n")
# Longest bulk header line read (``$<length>\r\n``).
_MAX_LINE = 32


class _Joined(NamedTuple):
    """An object's chunks read into one buffer (None: one of them is missing)."""

    value: Buffer | None


def _read_large_value(connection: Any) -> Any:
    """Read an array reply whose first element is a large value, from the socket.

    redis-py's hiredis parser gathers a bulk value in hiredis's own buffer
    (64 KiB reads, grown to the value's size) and then copies it into a
    `bytes`: two copies of the value at once. Here the headers are peeked
    (``MSG_PEEK``; nothing is consumed unless the value is large), so are
    the value's first bytes, and the value is read with exact-size
    reads (a `BufferedReader` of buffer size 1 reads into the `bytes` it
    returns, never ahead): a one-part frame as a `Split` (its header, then
    its part in a `bytes` of its own), anything else as one `bytes`. The
    rest of the array goes to redis-py's parser (fed the array header of
    the remaining elements). Nothing is checked here but the protocol: the
    store decodes what comes back as any other value.

    Returns:
        The reply (a list), or `_NOT_LARGE` having consumed nothing if the
        reply does not start with a value of at least `_LARGE_VALUE` bytes,
        or the connection is not a plain TCP socket read by hiredis with
        nothing buffered.

    Raises:
        redis.exceptions.TimeoutError: If a read waits longer than the
            connection's socket timeout.
        redis.exceptions.ConnectionError: If the connection fails or closes,
            or the reply is malformed (the caller then drops the connection).
    """
    started = _large_reply(connection)
    if started is None:
        return _NOT_LARGE
    sock, reader, found = started
    count, size = int(found[1]), int(found[2])
    with (
        _socket_errors(),
        io.BufferedReader(socket.SocketIO(sock, "rb"), 1) as stream,
    ):
        _read_exactly(stream, found.end())
        # The value's first bytes (waiting for them if they are not in yet).
        head = header_length(sock.recv(HEAD_FIXED_SIZE, socket.MSG_PEEK))
        value: Stored
        if head is None:
            value = _read_exactly(stream, size)
        else:
            value = Split(
                _read_exactly(stream, head), _read_exactly(stream, size - head)
            )
        if _read_exactly(stream, 2) != b"\r\n":
            raise redis_errors.ConnectionError(
                "malformed reply: a bulk value not followed by CRLF"
            )
    if count == 1:
        return [value]
    # The other elements (a version) through redis-py's parser.
    reader.feed(b"*%d\r\n" % (count - 1))
    rest: list[Any] = connection.read_response()
    return [value, *rest]


def _large_reply(connection: Any) -> tuple[socket.socket, Any, re.Match[bytes]] | None:
    """The socket, hiredis reader and headers of a reply starting with a large value.

    The headers are peeked (``MSG_PEEK``): nothing is consumed. None if the
    reply does not start with an array whose first element is a value of
    at least `_LARGE_VALUE` bytes, or the connection is not a plain TCP
    socket read by hiredis with nothing buffered.
    """
    sock = getattr(connection, "_sock", None)
    reader: Any = getattr(getattr(connection, "_parser", None), "_reader", None)
    if (
        type(sock) is not socket.socket
        or not hasattr(reader, "has_data")
        or reader.has_data()
    ):
        return None
    with _socket_errors():
        found = _LARGE_HEAD.match(sock.recv(_PEEK, socket.MSG_PEEK))
    if found is None or int(found[2]) < _LARGE_VALUE:
        return None
    return sock, reader, found


@contextlib.contextmanager
def _socket_errors() -> Iterator[None]:
    """Raise a socket's timeout or failure as redis-py's errors."""
    try:
        yield
    except TimeoutError:
        raise redis_errors.TimeoutError("Timeout reading from socket") from None
    except OSError as err:
        raise redis_errors.ConnectionError(
            f"Error while reading from socket: {err}"
        ) from err


def _read_large_chunks(connection: Any) -> Any:
    """Read an ``MGET`` reply of one object's chunks into one buffer, from the socket.

    redis-py would gather the whole reply in hiredis's buffer, copy each
    chunk into a `bytes`, and the store would join them: three copies of
    the object. Here, once the array header and the first chunk's length
    are peeked, an anonymous private memory map as large as that many
    chunks of the first one's length is made (the writer's chunks all have
    that length but the last, which is shorter: pages never written take
    no memory) and every chunk is read into it with exact-size reads, a
    larger one first moving what came before into a larger map.

    Returns:
        A `_Joined` (a view of the bytes read, or None if a chunk is
        missing), or `_NOT_LARGE` having consumed nothing (as
        `_read_large_value`).

    Raises:
        redis.exceptions.TimeoutError: As `_read_large_value`.
        redis.exceptions.ConnectionError: As `_read_large_value`.
    """
    started = _large_reply(connection)
    if started is None:
        return _NOT_LARGE
    sock, _, found = started
    count, first = int(found[1]), int(found[2])
    try:
        buffer = mmap.mmap(-1, count * first, flags=mmap.MAP_PRIVATE)
    except (OSError, OverflowError, ValueError):
        return _NOT_LARGE  # no such map (a damaged manifest's count?)
    size = 0
    missing = False
    with (
        _socket_errors(),
        io.BufferedReader(socket.SocketIO(sock, "rb"), 1) as stream,
    ):
        _read_exactly(stream, len(b"*%d\r\n" % count))
        for _ in range(count):
            line = stream.readline(_MAX_LINE)
            if line in _NULLS:
                missing = True
                continue
            bulk = _BULK_HEAD.fullmatch(line)
            if bulk is None:
                raise redis_errors.ConnectionError(
                    f"malformed reply: {line!r} where a chunk's length was"
                )
            length = int(bulk[1])
            if size + length > len(buffer):
                larger = mmap.mmap(-1, size + length, flags=mmap.MAP_PRIVATE)
                larger[:size] = buffer[:size]
                buffer.close()
                buffer = larger
            with memoryview(buffer) as view:
                _readinto_exactly(stream, view[size : size + length])
            size += length
            if _read_exactly(stream, 2) != b"\r\n":
                raise redis_errors.ConnectionError(
                    "malformed reply: a bulk value not followed by CRLF"
                )
    if missing:
        buffer.close()
        return _Joined(None)
    return _Joined(memoryview(buffer)[:size])


def _readinto_exactly(stream: io.BufferedReader[Any], view: memoryview) -> None:
    """Fill `view` from the stream."""
    done = 0
    while done < view.nbytes:
        read = stream.readinto(view[done:])
        if not read:
            raise redis_errors.ConnectionError("Connection closed by server.")
        done += read


def _read_exactly(stream: io.BufferedReader[Any], size: int) -> bytes:
    """Read `size` bytes, into one `bytes` object of that size."""
    data = stream.read(size)
    if len(data) != size:
        raise redis_errors.ConnectionError("Connection closed by server.")
    return data


def _node_connection(cluster: Any, node: Any) -> tuple[Any, Any]:
    """A pooled connection to a cluster node, and the call that releases it."""
    # async-only: begin
    return node.acquire_connection(), node.release
    # async-only: end
    pool = cluster.get_redis_connection(node).connection_pool
    return pool.get_connection(), pool.release


def _blame(err: BaseException, node: Any) -> None:
    """Note on `err` the cluster node it came from (for `RedisStore._error`)."""
    if node is not None:
        with contextlib.suppress(AttributeError):
            err._proxystore_node = node.name  # type: ignore[attr-defined]


def _transaction(*commands: bytes) -> bytes:
    """Encoded commands wrapped in ``MULTI``/``EXEC`` (their replies: EXEC's)."""
    return b"".join((_MULTI, *commands, _EXEC))


async def _arefresh_slots(cluster: Any) -> None:
    """Read a cluster client's slot map again (after a redirect or a failed node).

    Best effort: a cluster still failing over is read again after the next
    failure.
    """
    with contextlib.suppress(*_CLUSTER_ERRORS):
        await cluster.nodes_manager.initialize()


def _object_key(name: str) -> str:
    """The store key ``K`` a Redis key (``K``, ``{K}:v``, ``{K}:c:<i>``) belongs to."""
    return name[1 : name.index("}")] if name.startswith("{") else name


def _command(*args: str) -> bytes:
    """Encode one command as RESP (keys and arguments as UTF-8)."""
    encoded = [arg.encode() for arg in args]
    return b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in encoded
    )


_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
# KEYS[1] is {K}:v, the rest K's stale chunks; ARGV[1] the version written.
_DELETE_IF_VERSION = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', unpack(KEYS, 2)) end return 0"
)
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _pack(
    commands: list[_Command],
    heads: Sequence[str] = (),
    tail: Sequence[bytes] = (),
    after: Sequence[bytes] = (),
) -> list[Buffer]:
    """Encode reads of `heads`, the writes and `tail` as RESP, in MULTI/EXEC if several.

    `tail` holds commands already encoded, sent after the writes; `after`
    ones sent after the EXEC (say, ``WAIT``). Large pieces stay by
    reference; the rest is joined.
    """
    several = len(commands) + len(heads) + len(tail) > 1
    parts: list[Buffer] = [_MULTI] if several else []
    parts += [_command("GETRANGE", key, "0", str(_MANIFEST.size - 1)) for key in heads]
    for command in commands:
        parts.append(
            b"*3\r\n$3\r\nSET\r\n"
            if len(command) == 1
            else b"*%d\r\n$4\r\nMSET\r\n" % (2 * len(command) + 1)
        )
        for key, pieces in command:
            name = key.encode()
            parts.append(b"$%d\r\n%b\r\n$%d\r\n" % (len(name), name, _size(pieces)))
            parts += pieces
            parts.append(b"\r\n")
    parts += tail
    if several:
        parts.append(_EXEC)
    parts += after
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


def _version_key(key: str) -> str:
    return f"{{{key}}}:v"


def _expire_at(names: Sequence[str], expiry: float) -> list[bytes]:
    """``PEXPIREAT`` commands deleting `names` at unix time `expiry`."""
    when = str(int(expiry * 1000))
    return [_command("PEXPIREAT", name, when) for name in names]


def _lease_tail(commands: list[_Command], expiry: float) -> list[bytes]:
    """``PEXPIREAT`` of every key the commands write and of each object's wake key."""
    names = [name for command in commands for name, _ in command]
    objects = dict.fromkeys(_object_key(name) for name in names)
    return _expire_at([*names, *(_wake_key(key) for key in objects)], expiry)


def _wake_key(key: str) -> str:
    return f"{{{key}}}:w"


def _chunk_keys(key: str, count: int) -> list[str]:
    return [f"{{{key}}}:c:{index}" for index in range(count)]


def _looks_like_manifest(pieces: list[Buffer], size: int) -> bool:
    """Whether a value of `size` bytes in `pieces` would read back as a manifest."""
    return size == _MANIFEST.size and b"".join(pieces).startswith(_MANIFEST_MAGIC)


def _manifest_count(value: Any) -> int:
    """Return the chunk count a manifest names (0: `value` is no manifest)."""
    if (
        type(value) is not bytes
        or len(value) != _MANIFEST.size
        or not value.startswith(_MANIFEST_MAGIC)
    ):
        return 0
    count: int = _MANIFEST.unpack(value)[1]
    return count if count <= _MAX_CHUNKS else 0


def _version(value: Any) -> int:
    """An object's version from ``{K}:v`` (0 if absent or unreadable)."""
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


async def _aclose_client(client: _Client) -> None:
    """Close a client's pool (and, on an event loop, its queued gets), in its loop."""
    # async-only: begin
    client.queue.cancel()
    # async-only: end
    await client.pool.aclose()


def _seeds(
    cluster: bool,
    nodes: Sequence[str] | None,
    hostname: str,
    port: int,
    db: int,
) -> list[str] | None:
    """The sorted seed nodes (``host:port``) of a cluster store, None if none."""
    if nodes is None and not cluster:
        return None
    if not isinstance(cluster, bool):
        raise ConfigurationError(f"cluster must be a bool, got {cluster!r}")
    if nodes is None:
        nodes = [f"{hostname}:{port}"]
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence) or not nodes:
        raise ConfigurationError(
            f"cluster_nodes must be a non-empty list of 'host:port', got {nodes!r}"
        )
    for node in nodes:
        _split_seed(node)
    if db != 0:
        raise ConfigurationError(f"a Redis Cluster has only db 0, got db={db}")
    return sorted(set(nodes))


def _split_seed(node: Any) -> tuple[str, int]:
    host, _, port = node.rpartition(":") if isinstance(node, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigurationError(
            f"a cluster node must be 'host:port' (port 1-65535), got {node!r}"
        )
    return host.strip("[]"), int(port)


def _check_count(option: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{option} must be an int >= 0, got {value!r}")


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
