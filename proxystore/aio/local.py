"""`LocalStore`: objects kept in this process's memory.

Useful for development, tests, and threads or tasks of one process. Both
faces of one store name share the same objects. Proxies resolve only in this
process (or in a child forked after the object was stored).
"""

from __future__ import annotations

from typing import Any

from proxystore._compat import AWaiter
from proxystore._shared import (
    _local_objects,
    add_waiter,
    local_objects,
    local_versions,
    new_object_id,
    next_version,
    remove_waiter,
    wake_waiters,
)
from proxystore.aio.base import Deserializer, Serializer, Store
from proxystore.cache import MISSING
from proxystore.exceptions import InvalidKeyError, SerializationError
from proxystore.frame import Stored, split
from proxystore.lifetimes import Lifetime
from proxystore.serialize import (
    NOT_PLAIN,
    Payload,
    join,
    plain_frame,
    plain_loads,
)
from proxystore.signing import SigningKeysOption

_IS_SYNC = False


class LocalStore(Store[str]):
    """An in-process store.

    Its payloads are framed without a checksum: the bytes never leave this
    process's memory, so there is nothing for a checksum to catch (measured
    in ``benchmarks/bench_frame.py``: skipping it saves one xxh3 pass per set
    and per get). With signing keys, payloads are still signed and verified.

    A payload is kept as one `bytes` frame, except a frame of one large
    `bytes` part (a `bytes` object over 64 KiB, or a large pickle stream),
    which is kept as a `proxystore.frame.Split` holding that very object:
    `bytes` cannot change, so neither `set` nor `get` copies it, and `get`
    returns the object that was stored. Every other buffer (bytearray,
    arrays, memoryviews) is copied into the frame, so no caller can change
    what the store holds.

    Args:
        name: The store's name.
        store_dict: Keep the objects in this dict (ProxyStore 0.4's option):
            every face of the store name uses it from now on. It stays in
            this process: proxies never carry it.
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        stats: Also record them per key (see `Store.stats`).
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.aio.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.
    """

    _CHECKSUM = False
    _USER_KEY_REFUSAL = None

    def __init__(
        self,
        name: str,
        *,
        store_dict: dict[str, bytes] | None = None,
        cache_size: int = 16,
        metrics: bool = False,
        stats: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
    ) -> None:
        super().__init__(
            name,
            cache_size=cache_size,
            metrics=metrics,
            stats=stats,
            signing_keys=signing_keys,
            sign_full_data=sign_full_data,
        )
        local_objects(name, store_dict)
        # Versions beside the bytes: written after them, read before them,
        # so a reader never pairs old bytes with a newer version.
        self._versions: dict[str, int] = local_versions(name)
        # The direct paths (`_plain_set`, `_plain_fetch`) skip the generic
        # layers only when no hook they would skip is overridden.
        cls = type(self)
        self._direct = (
            cls._aset_bytes is LocalStore._aset_bytes
            and cls._aget_bytes is LocalStore._aget_bytes
            and cls._aget_versioned is LocalStore._aget_versioned
            and cls._dump is Store._dump
            and cls._load is Store._load
        )

    @property
    def _objects(self) -> dict[str, Stored]:
        # Looked up on each use: the name's mapping is the latest `store_dict`
        # given, so every face and instance of the name sees the same objects.
        return local_objects(self.name)

    async def aset(
        self,
        obj: Any,
        *,
        key: str | None = None,
        serialize: bool = True,
        serializer: Serializer | None = None,
        lifetime: Lifetime | None = None,
    ) -> str:
        """Store an object and return its key (see `Store.aset`)."""
        if key is None and serialize and serializer is None and lifetime is None:
            stored = self._plain_set(obj)
            if stored is not None:
                return stored
        return await super().aset(
            obj, key=key, serialize=serialize, serializer=serializer, lifetime=lifetime
        )

    async def aget(
        self,
        key: str,
        *,
        deserialize: bool = True,
        strict: bool = False,
        deserializer: Deserializer | None = None,
        default: Any = None,
    ) -> Any:
        """Return the object stored under `key`, or `default` (see `Store.aget`)."""
        if deserialize and not strict and deserializer is None and type(key) is str:
            obj = self._plain_fetch(key)
            if obj is not NOT_PLAIN:
                return default if obj is MISSING else obj
        return await super().aget(
            key,
            deserialize=deserialize,
            strict=strict,
            deserializer=deserializer,
            default=default,
        )

    async def _afetch(
        self, key: str, deserializer: Deserializer | None, strict: bool = False
    ) -> Any:
        if deserializer is None and not strict:
            obj = self._plain_fetch(key)
            if obj is not NOT_PLAIN:
                return obj
        return await super()._afetch(key, deserializer, strict)

    async def _aresolve(
        self,
        key: str,
        deserializer: Deserializer | None,
        evict: bool,
        strict: bool = False,
    ) -> Any:
        if deserializer is None and not evict and not strict and type(key) is str:
            obj = self._plain_fetch(key)
            if obj is not NOT_PLAIN:
                return obj
        return await super()._aresolve(key, deserializer, evict, strict)

    # The direct paths: what the generic ones do for an open store without
    # metrics or signing keys, an unkeyed default-serialized object, and a
    # plain frame (`proxystore.serialize.plain_frame`), in one call each.
    # Anything else (and every error but a corrupt payload) goes the
    # generic way.

    def _plain_set(self, obj: Any) -> str | None:
        if self._closed or self.metrics is not None or self._signing_keys is not None:
            return None
        if not self._direct:
            return None
        data = plain_frame(obj)
        if data is None:
            return None
        key = new_object_id()
        local_objects(self.name)[key] = data
        self._versions[key] = next_version()
        return key

    def _plain_fetch(self, key: str) -> Any:
        """The cached or stored object, `MISSING`, or `NOT_PLAIN` (go generic)."""
        if self._closed or self.metrics is not None or self._signing_keys is not None:
            return NOT_PLAIN
        if not self._direct or not key:
            return NOT_PLAIN
        cache = self._cache
        cached = cache.get(key)
        if cached is not MISSING:
            return cached
        version = self._versions.get(key, 0)
        objects = _local_objects.get(self.name)
        data = None if objects is None else objects.get(key)
        if type(data) is not bytes:
            # Absent, a large bytes part kept by reference (a Split), or a
            # user's store_dict holding another buffer type.
            return NOT_PLAIN
        try:
            obj = plain_loads(data)
        except SerializationError as err:
            err.args = (f"cannot load key {key!r} from store {self.name!r}: {err}",)
            raise
        if obj is not NOT_PLAIN:
            cache.put(key, obj, version)
        return obj

    def _validate_key(self, key: Any) -> str:
        if type(key) is not str or not key:
            raise InvalidKeyError(key, "LocalStore keys are non-empty str")
        return key

    async def _aset_bytes(self, payload: Payload, key: str | None = None) -> str:
        if key is None:
            key = new_object_id()
        local_objects(self.name)[key] = split(payload) or join(payload)
        self._versions[key] = next_version()
        return key

    async def _aget_bytes(self, key: str) -> Stored | None:
        return local_objects(self.name).get(key)

    async def _aget_versioned(self, key: str) -> tuple[Stored, int] | None:
        version = self._versions.get(key, 0)
        # Through _aget_bytes: subclasses hook fetches there.
        data = await self._aget_bytes(key)
        return None if data is None else (data, version)

    async def _aget_version(self, key: str) -> int | None:
        version = self._versions.get(key, 0)
        return version if key in self._objects else None

    async def _aexists(self, key: str) -> bool:
        return key in self._objects

    async def _aevict(self, key: str) -> None:
        self._objects.pop(key, None)
        self._versions.pop(key, None)

    def _wake_future(self, key: str) -> None:
        wake_waiters(self.name, key)

    async def _aexists_within(self, key: str, timeout: float | None) -> bool:
        # Woken by the writer (any face, any thread of this process); the
        # waiter is registered before the check, so no write slips between.
        waiter = AWaiter()
        add_waiter(self.name, key, waiter.wake)
        try:
            if key in self._objects:
                return True
            return await waiter.wait(timeout)
        finally:
            remove_waiter(self.name, key, waiter.wake)
