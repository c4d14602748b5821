# Generated from proxystore/aio/base.py by scripts/generate_sync.py: DO NOT EDIT.
"""The `Store`: every store's public API over a small byte-level driver.

Drivers subclass `Store` and implement `_set_bytes`, `_get_bytes`,
`_exists`, `_evict`, `_close`, `_validate_key` and `config`; drivers whose
keys a user may choose (`_USER_KEY_REFUSAL = None`) also keep a version per
write (`_get_versioned`, `_get_version`). Everything else (serialization, the
cache of deserialized objects, metrics, proxies, batches) lives here once,
for every driver and for both faces.
"""

from __future__ import annotations

import copy
import inspect
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from proxystore._compat import gather, sleep
from proxystore._shared import (
    USER_KEY_PATTERN,
    USER_KEY_RULE,
    new_object_id,
    raw_bytes,
)
from proxystore._validate import check_flag
from proxystore.cache import MISSING, LRUCache
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    FutureError,
    InvalidArgumentError,
    InvalidKeyError,
    MissingKeyError,
    NotAStoreProxyError,
    NotBytesError,
    SerializationError,
    StoreClosedError,
    StoreTimeoutError,
)
from proxystore.frame import Split, Stored, is_frame, stored_bytes, stored_size
from proxystore.lifetimes import Lifetime, check_lifetime
from proxystore.metrics import DEFAULT_STATS_KEYS, OperationMetrics, StoreMetrics
from proxystore.proxy import Proxy, _set_target, get_factory
from proxystore.registry import StoreConfig, config_of, forget
from proxystore.serialize import (
    Payload,
    deserialize,
    deserialize_custom,
    frame_custom,
    serialize_parts,
)
from proxystore.signing import (
    FROM_ENV,
    SigningKeys,
    SigningKeysOption,
    resolve_signing_keys,
)
from proxystore.store_factory import StoreFactory, type_path

if TYPE_CHECKING:
    from typing_extensions import Self

    from proxystore.store.future import Future

_IS_SYNC = True

KeyT = TypeVar("KeyT")
T = TypeVar("T")

Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]

_clock = time.perf_counter

DEFAULT_FUTURE_TIMEOUT = 300.0
"""Seconds a future's `result` and proxy wait for a value unless told otherwise."""

_POLL_FIRST = 0.002
_POLL_MAX = 0.5
# Bounds on what a future's error carries (it comes from another process).
_MAX_ERROR_TYPE = 256
_MAX_ERROR_MESSAGE = 8192
_TAG_OFFSET = 6  # magic (4), version, flags, then the tag byte

NO_OBJECT: Any = object()
"""Default of `Store.proxy`'s `obj`: proxy an object already in the store."""


class Store(Generic[KeyT]):
    """An object store that hands out proxies.

    Args:
        name: The name the store is registered under. Proxies carry it, so a
            consumer process finds (or rebuilds) the same store.
        cache_size: How many deserialized objects to keep (LRU); 0 disables
            caching.
        metrics: Record per-operation counts, times and bytes in `metrics`
            (off by default: it costs a few hundred nanoseconds per call).
        stats: Also record them per key, for `stats` (ProxyStore 0.4's
            option; implies `metrics`). The most recently used
            `DEFAULT_STATS_KEYS` keys are kept.
        signing_keys: Sign every payload with the first key and deserialize
            only payloads signed by one of them (`proxystore.signing`): a
            `SigningKeys`, ``(kid, key)`` pairs, or a
            ``kid:base64key[,...]`` string. None uses the keys given to
            this store name earlier in this process, else reads
            ``PROXYSTORE_SIGNING_KEYS`` / ``PROXYSTORE_SIGNING_KEYS_FILE``
            (none set: payloads are neither signed nor may they be).
            ``"env"`` does the same but requires keys. Keys never travel in
            proxies: a signing store's proxies carry ``"env"``, so the
            consumer that rebuilds the store uses its own keys, or refuses
            to build it without any.
        sign_full_data: Make the signature cover every byte of a payload,
            not only the parts that can run code when deserialized (see
            ``docs/security/payloads.md``; costs a SHA-256 pass over the data).

    Example:
        ```python
        with LocalStore("example") as store:
            key = store.set([1, 2, 3])
            assert store.get(key) == [1, 2, 3]
            proxy = store.proxy([1, 2, 3])
        ```
    """

    _IS_SYNC: ClassVar[bool] = _IS_SYNC
    """Whether this class is a sync face (the registry builds faces by it)."""

    _IDENTITY: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that say *which* data the store reaches.

    Two configurations of one class and name with equal identity arguments
    are the same store; the other arguments are tuning. A proxy naming a
    registered store must match its identity.
    """

    _SECRETS: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that are secrets: never in `config`, never in a
    proxy, never in a repr. Their values are read from the attributes of the
    same names (`_secret_kwargs`)."""

    _CARRIED_ONLY_AS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "signing_keys": (None, FROM_ENV)
    }
    """Arguments a proxy may carry only with one of these values. A signing
    store's proxies carry ``signing_keys="env"`` (never keys), so a consumer
    rebuilding it must have keys of its own; a proxy carrying keys of its
    choosing is refused."""

    _SECRETS_FROM_ENV: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(argument, environment variable) pairs: where a store rebuilt from a
    proxy takes its secrets."""

    _PROCESS_LOCAL: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that describe this process only (injected
    clients, host names): never in a configuration, refused in a proxy."""

    _CHECKSUM: ClassVar[bool] = True
    """Whether payloads carry (and must carry) an xxh3 checksum."""

    _USER_KEY_REFUSAL: ClassVar[str | None] = "it makes every key itself"
    """Why `set(key=...)` is refused; None in drivers that take user keys."""

    def __init__(
        self,
        name: str,
        *,
        cache_size: int = 16,
        metrics: bool = False,
        stats: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"store name must be a non-empty str, got {name!r}"
            )
        if (
            not isinstance(cache_size, int)
            or isinstance(cache_size, bool)
            or cache_size < 0
        ):
            raise ConfigurationError(
                f"cache_size must be an int >= 0, got {cache_size!r}"
            )
        check_flag(metrics, "metrics", f"store {name!r}")
        self.name = name
        self.cache_size = cache_size
        self._cache: LRUCache[KeyT] = LRUCache(cache_size)
        self.metrics: StoreMetrics | None = (
            StoreMetrics(max_keys=DEFAULT_STATS_KEYS if stats else 0)
            if metrics or stats
            else None
        )
        self._closed = False
        self._store_config: StoreConfig | None = None
        self._signing_keys: SigningKeys | None = resolve_signing_keys(
            signing_keys, name
        )
        if not isinstance(sign_full_data, bool):
            raise ConfigurationError(
                f"sign_full_data must be a bool, got {sign_full_data!r}"
            )
        self.sign_full_data = sign_full_data

    # -- what a driver implements ------------------------------------------

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this store anywhere."""
        return {
            "name": self.name,
            "cache_size": self.cache_size,
            "metrics": self.metrics is not None,
            "stats": self.has_stats,
            "signing_keys": None if self._signing_keys is None else FROM_ENV,
            "sign_full_data": self.sign_full_data,
        }

    def _validate_key(self, key: Any) -> KeyT:
        """Return `key` if this store could have made it, else raise InvalidKeyError."""
        raise NotImplementedError

    def _set_bytes(self, payload: Payload, key: KeyT | None = None) -> KeyT:
        """Store a payload under `key` (a new key if None) and return the key."""
        raise NotImplementedError

    def _set_bytes_batch(
        self, payloads: Sequence[Payload], keys: Sequence[KeyT | None] | None = None
    ) -> list[KeyT]:
        """Store several payloads, all or none (drivers override: one round trip).

        An override must keep the guarantee: on failure, remove what it
        wrote and raise `BatchWriteError` (listing what it could not remove).
        """
        wanted = keys if keys is not None else [None] * len(payloads)
        outcomes = gather(
            *[
                _settled(self._set_bytes, payload, key)
                for payload, key in zip(payloads, wanted, strict=True)
            ]
        )
        written = [value for ok, value in outcomes if ok]
        errors = [value for ok, value in outcomes if not ok]
        if errors:
            self._undo_set_batch(written, errors[0], len(payloads))
        return written

    def _undo_set_batch(
        self, keys: list[KeyT], error: BaseException, count: int
    ) -> None:
        """Evict what a failed batch wrote and raise `BatchWriteError` from `error`."""
        remaining: list[Any] = []
        for key in keys:
            try:
                self._evict(key)
            except Exception:
                remaining.append(key)
        raise BatchWriteError(
            self.name,
            "set_batch",
            count,
            error,
            written=len(keys),
            remaining=remaining,
        ) from error

    def _get_bytes(self, key: KeyT) -> Stored | None:
        """Return the payload stored under `key`, or None if there is none.

        A framed payload may come back as a `proxystore.frame.Split` (its
        header and the rest in separate buffers).
        """
        raise NotImplementedError

    def _get_versioned(self, key: KeyT) -> tuple[Stored, int] | None:
        """Return the payload under `key` and its version, or None if there is none.

        Drivers without user keys never overwrite a key: version 0.
        """
        data = self._get_bytes(key)
        return None if data is None else (data, 0)

    def _get_version(self, key: KeyT) -> int | None:
        """Return the version of the object under `key`, or None if there is none."""
        return 0 if self._exists(key) else None

    def _get_bytes_batch(self, keys: Sequence[KeyT]) -> Sequence[Stored | None]:
        """Fetch several payloads; drivers override this with one round trip."""
        return gather(*[self._get_bytes(key) for key in keys])

    def _exists(self, key: KeyT) -> bool:
        """Return whether an object is stored under `key`."""
        raise NotImplementedError

    def _evict(self, key: KeyT) -> None:
        """Delete the object under `key`; a missing key is not an error."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release the driver's clients and tasks."""

    def _set_bytes_leased(
        self, payload: Payload, key: KeyT | None, expiry: float
    ) -> KeyT:
        """Store a payload that must be gone at unix time `expiry`.

        The default writes, then calls `_set_lease`; drivers that can do
        both at once (Redis: one MULTI) override this.
        """
        stored = (
            self._set_bytes(payload) if key is None else self._set_bytes(payload, key)
        )
        self._set_lease(stored, expiry)
        return stored

    def _set_bytes_batch_leased(
        self,
        payloads: Sequence[Payload],
        keys: Sequence[KeyT | None] | None,
        expiry: float,
    ) -> list[KeyT]:
        """Store a batch (as `_set_bytes_batch`) that must be gone at `expiry`.

        The default writes the batch, then sets each lease (`_set_lease`;
        on failure the batch is evicted): a producer killed between the two
        leaves the batch without a server-side lease. Drivers that can do
        both at once (Redis: one MULTI) override this.
        """
        stored = (
            self._set_bytes_batch(payloads)
            if keys is None
            else self._set_bytes_batch(payloads, keys)
        )
        try:
            gather(*[self._lease_one(key, expiry) for key in stored])
        except Exception:
            for key in stored:
                self._evict(key)
            raise
        return stored

    def _set_lease(self, key: KeyT, expiry: float) -> None:
        """Make the store itself delete `key` at unix time `expiry`, if it can.

        The default does nothing: the `LeaseLifetime`'s timer evicts in
        this process (local and endpoint stores).
        """

    def _set_future(self, key: KeyT, payload: Payload) -> None:
        """Write a future's value (or error) under `key` and wake its waiters.

        The default writes, then calls `_wake_future`; drivers that can do
        both in one atomic step (Redis) override this.
        """
        self._set_bytes(payload, key)
        self._wake_future(key)

    def _wake_future(self, key: KeyT) -> None:
        """Wake in-process waiters of a future (drivers with waiters override)."""

    def _exists_within(self, key: KeyT, timeout: float | None) -> bool:
        """Wait until an object is under `key`; False if `timeout` passed first.

        The default polls `_exists` with exponential backoff (2 ms doubling
        to 0.5 s): stores that cannot notify (files, Globus) pay up to half
        a second of latency. Drivers that can be woken override this.
        """
        deadline = None if timeout is None else _clock() + timeout
        delay = _POLL_FIRST
        while True:
            if self._exists(key):
                return True
            if deadline is not None:
                remaining = deadline - _clock()
                if remaining <= 0:
                    return False
                delay = min(delay, remaining)
            sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    # -- public API --------------------------------------------------------

    def _secret_kwargs(self) -> dict[str, Any]:
        """Return this store's secret arguments that are set, by name."""
        secrets = {name: getattr(self, name, None) for name in self._SECRETS}
        return {name: value for name, value in secrets.items() if value is not None}

    @classmethod
    def _environment_secrets(cls) -> dict[str, Any]:
        """Return the secret arguments this process's environment provides."""
        return {
            name: os.environ[variable]
            for name, variable in cls._SECRETS_FROM_ENV
            if os.environ.get(variable)
        }

    @property
    def store_config(self) -> StoreConfig:
        """The configuration proxies carry to rebuild this store elsewhere."""
        if self._store_config is None:
            self._store_config = config_of(self)
        return self._store_config

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    @property
    def signing_key_ids(self) -> tuple[str, ...]:
        """The ids of the store's signing keys (the signing one first), if any."""
        keys = self._signing_keys
        return () if keys is None else keys.kids

    # -- ProxyStore 0.4 names kept with a DeprecationWarning ---------------

    @property
    def kwargs(self) -> dict[str, Any]:
        """Deprecated (0.4): the arguments that rebuild the store; use `config()`."""
        _deprecated("Store.kwargs", "Store.config()")
        return self.config()

    def create_key(self, obj: Any) -> str:
        """Deprecated (0.4): a new unguessable key; stores make keys in `set`."""
        _deprecated("Store.create_key()", "Store.set(obj) (the store makes the key)")
        return new_object_id()

    def get_bytes(self, key: KeyT) -> bytes | None:
        """Deprecated (0.4): the stored bytes; use ``get(key, deserialize=False)``."""
        _deprecated("Store.get_bytes(key)", "Store.get(key, deserialize=False)")
        data = self._fetch(self._validate_key(key), raw_bytes)
        return None if data is MISSING else bytes(data)

    def set_bytes(self, key: KeyT, data: bytes) -> None:
        """Deprecated (0.4): store bytes as given; use ``set(..., serialize=False)``."""
        _deprecated(
            "Store.set_bytes(key, data)", "Store.set(data, key=key, serialize=False)"
        )
        self.set(data, key=key, serialize=False)

    @property
    def has_stats(self) -> bool:
        """Whether per-key stats are kept (``stats=True``)."""
        return self.metrics is not None and self.metrics.max_keys > 0

    def is_cached(self, key: KeyT, *, strict: bool = False) -> bool:
        """Return whether the deserialized object for `key` is in the cache.

        Args:
            key: The key.
            strict: Also check that the cached object is the store's current
                version of `key` (one round trip to the store).
        """
        entry = self._cache.entry(key)
        if entry is None:
            return False
        if not strict:
            return True
        return self._get_version(self._validate_key(key)) == entry[1]

    def get_timestamp(self, key: KeyT) -> float:
        """Return when the object under `key` was written (its version), in seconds.

        Stores whose keys never change (Globus, endpoint) answer 0.0.

        Raises:
            MissingKeyError: If no object is stored under `key` (a `KeyError`).
        """
        self._check_open()
        key = self._validate_key(key)
        version = self._get_version(key)
        if version is None:
            raise MissingKeyError(key, self.name)
        return version / 1e9

    def stats(self, key_or_proxy: KeyT | Proxy[Any]) -> dict[str, OperationMetrics]:
        """Return copies of the metrics recorded for one key (ProxyStore 0.4's stats).

        Args:
            key_or_proxy: A key, or a proxy made by a store: its key's
                metrics and, under ``resolve``, that proxy's own fetches.

        Returns:
            Operation name (``set``, ``get``, ``cache_hit``, ``exists``,
            ``evict``, ``resolve``) to its metrics, for the operations seen.

        Raises:
            ConfigurationError: If the store was made without ``stats=True``.
            NotAStoreProxyError: If a proxy was given that no store made.
        """
        if self.metrics is None or not self.has_stats:
            raise ConfigurationError(
                f"store {self.name!r} keeps no per-key stats: create it with stats=True"
            )
        if type(key_or_proxy) is not Proxy:
            return self.metrics.for_key(key_or_proxy)
        factory = get_factory(key_or_proxy)
        if not isinstance(factory, StoreFactory):
            # 0.4 answered for any factory with a key: that key's stats.
            key = getattr(factory, "key", None)
            if key is None:
                raise NotAStoreProxyError(factory)
            return self.metrics.for_key(key)
        stats = self.metrics.for_key(factory.key)
        if factory.resolve_stats is not None:
            stats["resolve"] = copy.copy(factory.resolve_stats)
        return stats

    def set(
        self,
        obj: Any,
        *,
        key: KeyT | None = None,
        serialize: bool = True,
        serializer: Serializer | None = None,
        lifetime: Lifetime | None = None,
    ) -> KeyT:
        """Store an object and return its key.

        The payload is framed (`proxystore.frame`): with a checksum (except
        in `LocalStore`) and, if the store has signing keys, signed.

        Args:
            obj: The object.
            key: Store it under this key (local, file and redis stores; see
                `USER_KEY_PATTERN`), replacing what was there; a new key if
                None.
            serialize: False if `obj` is already bytes to store as given
                (read them back with ``deserialize=False``).
            serializer: Turns `obj` into bytes instead of the default
                serialization; read it back with the matching deserializer.
            lifetime: Evict the object when this `proxystore.lifetimes`
                lifetime ends (a lease is enforced by Redis and FileStore
                themselves, see ``docs/guides/futures-lifetimes.md``).

        Raises:
            InvalidKeyError: If `key` is not allowed by this store.
            LifetimeEndedError: If `lifetime` already ended.
            SerializationError: If the object cannot be serialized, or the
                serializer returns something other than bytes.
            NotBytesError: If it is not bytes with ``serialize=False`` (a
                `SerializationError` and a `TypeError`).
        """
        if self._closed:
            raise StoreClosedError(self.name)
        payload = self._payload(obj, serialize, serializer)
        if lifetime is not None:
            check_lifetime(lifetime, False, f"set on store {self.name!r}")
            return self._set_in_lifetime(payload, key, lifetime)
        if key is not None:
            return self._set_keyed(payload, self._user_key(key))
        metrics = self.metrics
        if metrics is None:
            return self._set_bytes(payload)
        start = _clock()
        key = self._set_bytes(payload)
        metrics.record("set", _clock() - start, _nbytes(payload), key)
        return key

    def _set_in_lifetime(
        self, payload: Payload, key: KeyT | None, lifetime: Lifetime
    ) -> KeyT:
        start = _clock()
        wanted = None if key is None else self._user_key(key)
        expiry = lifetime.expiry
        if expiry is not None:
            stored = self._set_bytes_leased(payload, wanted, expiry)
        elif wanted is None:
            stored = self._set_bytes(payload)
        else:
            stored = self._set_bytes(payload, wanted)
        if wanted is not None:
            self._cache.pop(stored)
        try:
            lifetime.add(self, stored)
        except Exception:
            # Ended while we wrote: the object must not outlive it.
            self._evict(stored)
            raise
        self._record("set", start, payload, stored)
        return stored

    def _set_keyed(self, payload: Payload, key: KeyT) -> KeyT:
        start = _clock()
        key = self._set_bytes(payload, key)
        # After the write: what this store cached of the key is older.
        self._cache.pop(key)
        self._record("set", start, payload, key)
        return key

    def set_batch(
        self,
        objs: Iterable[Any],
        *,
        keys: Sequence[KeyT | None] | None = None,
        serialize: bool = True,
        serializer: Serializer | None = None,
        lifetime: Lifetime | None = None,
    ) -> list[KeyT]:
        """Store several objects, all or none (in one round trip where possible).

        Args:
            objs: The objects.
            keys: A key (or None for a new one) per object; see `set`.
            serialize: False if the objects are bytes to store as given.
            serializer: Custom serializer, as in `set`.
            lifetime: Evict every object when this lifetime ends (see
                `set`). `RedisStore` sets a lease in the batch's own
                transaction; other stores set it on each object right
                after the batch is written.

        Returns:
            Their keys, in order.

        Raises:
            InvalidArgumentError: If `objs` is a str or bytes (one object,
                not a batch of characters).
            BatchWriteError: If a write failed; the objects already written
                were removed (those that could not be are listed).
            ConfigurationError: If `keys` and `objs` differ in length.
        """
        self._check_open()
        _check_batch(objs, "objs", "set_batch")
        check_lifetime(lifetime, False, f"set_batch on store {self.name!r}")
        objs = list(objs)
        wanted: list[KeyT | None] | None = None
        if keys is not None:
            if len(keys) != len(objs):
                raise ConfigurationError(
                    f"set_batch got {len(objs)} objects but {len(keys)} keys"
                )
            if any(key is not None for key in keys):
                wanted = [None if key is None else self._user_key(key) for key in keys]
        payloads = [self._payload(obj, serialize, serializer) for obj in objs]
        return self._set_payloads(payloads, wanted, lifetime)

    def _set_payloads(
        self,
        payloads: list[Payload],
        wanted: list[KeyT | None] | None = None,
        lifetime: Lifetime | None = None,
    ) -> list[KeyT]:
        """Write serialized objects as `set_batch` does (keys checked by the caller).

        For callers that serialize themselves (`proxystore.store.stream`
        decides by the payload's size where an object goes).
        """
        start = _clock()
        expiry = None if lifetime is None else lifetime.expiry
        if expiry is not None:
            keys = self._set_bytes_batch_leased(payloads, wanted, expiry)
        else:
            keys = (
                self._set_bytes_batch(payloads)
                if wanted is None
                else self._set_bytes_batch(payloads, wanted)
            )
        if wanted is not None:
            for key in wanted:
                if key is not None:
                    self._cache.pop(key)
        if lifetime is not None:
            self._in_lifetime(keys, lifetime, leased=expiry)
        if self.metrics is not None:
            nbytes = sum(_nbytes(payload) for payload in payloads)
            self.metrics.record("set_batch", _clock() - start, nbytes)
        return keys

    def _in_lifetime(
        self, keys: list[KeyT], lifetime: Lifetime, leased: float | None = None
    ) -> None:
        """Put a written batch in `lifetime` (leased where the store can).

        `leased`: the expiry the write already set (`_set_bytes_batch_leased`);
        a lease extended meanwhile is set again. If that fails (the lifetime
        ended meanwhile, a lease write failed), the batch is evicted: it
        must not outlive its lifetime.
        """
        try:
            expiry = lifetime.expiry
            if expiry is not None and expiry != leased:
                gather(*[self._lease_one(key, expiry) for key in keys])
            for key in keys:
                lifetime.add(self, key)
        except Exception:
            for key in keys:
                self._evict(key)
            raise

    def _lease_one(self, key: KeyT, expiry: float) -> KeyT:
        self._set_lease(key, expiry)
        return key

    def get(
        self,
        key: KeyT,
        *,
        deserialize: bool = True,
        strict: bool = False,
        deserializer: Deserializer | None = None,
        default: Any = None,
    ) -> Any:
        """Return the object stored under `key`, or `default` if there is none.

        Args:
            key: The key.
            deserialize: False to return the stored bytes as they are (what
                ``set(..., serialize=False)`` stored); never cached.
            strict: Never return a cached object older than the store's
                current version of `key` (one more round trip on a cache hit).
            deserializer: Custom deserializer for a custom-serialized object.
            default: Returned when there is no object under `key`.

        The payload's length, checksum and (with signing keys) signature are
        checked before anything is deserialized.

        Raises:
            InvalidKeyError: If `key` is malformed for this store.
            PayloadSignatureError: If the store has signing keys and the
                payload is not signed by one of them, or the store has none
                and the payload is signed. Names the store and the key.
            SerializationError: If the stored payload is truncated, has
                trailing bytes, fails its checksum or cannot be
                deserialized. Names the store and the key.
        """
        key = self._validate_key(key)
        obj = self._fetch(
            key, deserializer if deserialize else raw_bytes, strict
        )
        return default if obj is MISSING else obj

    def get_batch(
        self,
        keys: Sequence[KeyT],
        *,
        deserializer: Deserializer | None = None,
        default: Any = None,
    ) -> list[Any]:
        """Return the objects stored under several keys, `default` for missing ones.

        Drivers that can fetch several keys in one round trip do so.

        Raises:
            InvalidArgumentError: If `keys` is a str or bytes (one key, not a
                batch of characters).
        """
        self._check_open()
        _check_batch(keys, "keys", "get_batch")
        keys = [self._validate_key(key) for key in keys]
        results: list[Any] = [self._cache.get(key) for key in keys]
        wanted = [
            key for key, value in zip(keys, results, strict=True) if value is MISSING
        ]
        if wanted:
            start = _clock()
            payloads = self._get_bytes_batch(wanted)
            if self.metrics is not None:
                nbytes = sum(stored_size(p) for p in payloads if p is not None)
                self.metrics.record("get_batch", _clock() - start, nbytes)
            fetched = dict(zip(wanted, payloads, strict=True))
            for index, key in enumerate(keys):
                if results[index] is MISSING:
                    data = fetched[key]
                    if data is not None:
                        results[index] = self._load(key, data, deserializer)
        return [default if value is MISSING else value for value in results]

    def exists(self, key: KeyT) -> bool:
        """Return whether an object is stored under `key`."""
        self._check_open()
        key = self._validate_key(key)
        start = _clock()
        exists = self._exists(key)
        if not exists:
            self._cache.pop(key)
        self._record("exists", start, key=key)
        return exists

    def evict(self, key: KeyT) -> None:
        """Delete the object under `key` (a missing key is not an error)."""
        if self._closed:
            raise StoreClosedError(self.name)
        key = self._validate_key(key)
        self._cache.pop(key)
        metrics = self.metrics
        if metrics is None:
            self._evict(key)
            return
        start = _clock()
        self._evict(key)
        metrics.record("evict", _clock() - start, 0, key)

    def proxy(
        self,
        obj: T = NO_OBJECT,
        *,
        key: KeyT | None = None,
        evict: bool = False,
        serialize: bool = True,
        strict: bool = False,
        serializer: Serializer | None = None,
        deserializer: Deserializer | None = None,
        prefetch: bool = False,
        lifetime: Lifetime | None = None,
        populate_target: bool = False,
    ) -> Proxy[T]:
        """Store an object and return a proxy that resolves to it.

        Args:
            obj: The object. If not given (or None with a `key`, as in
                ProxyStore 0.4), `key` names an object already in the store
                (the same as `proxy_from_key`).
            key: Store `obj` under this key (see `set`).
            evict: Delete the object from the store when the proxy resolves.
            serialize: False if `obj` is bytes to store as given; the proxy
                then resolves to those bytes.
            strict: The proxy resolves to the store's current version of the
                key, never an older cached one.
            serializer: Custom serializer (needs `deserializer`).
            deserializer: Custom deserializer, carried by the proxy.
            prefetch: Start fetching as soon as the proxy is unpickled in a
                consumer, so first use finds the object there.
            lifetime: Evict the object when this lifetime ends (see `set`).
            populate_target: Return the proxy already resolved to `obj`
                itself (no fetch, the same object, still writable). Its
                pickled form carries only the factory, never the target, so
                consumers fetch as usual. With ``evict=True`` this proxy
                never evicts (it never resolves); the first consumer's does.
                A lifetime that ends leaves this proxy's target in place.
                Off by default: ProxyStore 0.4 code relies on proxies that
                resolve (and evict, and count in `stats`) on first use.

        Raises:
            ConfigurationError: If neither `obj` nor `key` is given, or
                both `evict` and `lifetime` are.
        """
        check_lifetime(lifetime, evict, f"proxy on store {self.name!r}")
        if obj is NO_OBJECT or (obj is None and key is not None):
            if key is None:
                raise ConfigurationError(
                    f"proxy() on store {self.name!r} needs an object or the key "
                    "of one already in the store"
                )
            proxy = self.proxy_from_key(
                key,
                evict=evict,
                deserializer=deserializer if serialize else raw_bytes,
                prefetch=prefetch,
                strict=strict,
            )
            if lifetime is not None:
                # Not ours to lease on the server: evicted when it ends.
                lifetime.add(self, self._validate_key(key))
            return proxy
        key = self.set(
            obj,
            key=key,
            serialize=serialize,
            serializer=serializer,
            lifetime=lifetime,
        )
        if not serialize:
            deserializer = raw_bytes
        target_type = type_path(obj) if deserializer is None else None
        proxy = self._make_proxy(
            key, evict, deserializer, prefetch, target_type, strict
        )
        check_flag(populate_target, "populate_target", f"store {self.name!r}")
        if populate_target and (serialize or type(obj) is bytes):
            _set_target(proxy, obj)
        return proxy

    def proxy_batch(
        self,
        objs: Iterable[T] | None = None,
        *,
        keys: Sequence[KeyT | None] | None = None,
        evict: bool = False,
        serialize: bool = True,
        strict: bool = False,
        serializer: Serializer | None = None,
        deserializer: Deserializer | None = None,
        prefetch: bool = False,
        lifetime: Lifetime | None = None,
    ) -> list[Proxy[T]]:
        """Store several objects and return a proxy for each, in order.

        Takes the arguments of `proxy`, per batch; `lifetime` evicts every
        object of the batch when it ends (see `set_batch`).

        Raises:
            InvalidArgumentError: If `objs` is a str or bytes.
            BatchWriteError: If a write failed (see `set_batch`).
            ConfigurationError: If neither `objs` nor `keys` is given, they
                differ in length, or both `evict` and `lifetime` are given.
        """
        check_lifetime(lifetime, evict, f"proxy_batch on store {self.name!r}")
        if objs is not None:
            _check_batch(objs, "objs", "proxy_batch")
        if not serialize:
            deserializer = raw_bytes
        if objs is None:
            if keys is None:
                raise ConfigurationError(
                    f"proxy_batch() on store {self.name!r} needs objects or the "
                    "keys of objects already in the store"
                )
            self._check_open()
            named = [self._validate_key(key) for key in keys]
            if lifetime is not None:
                # Not ours to lease on the server: evicted when it ends.
                for key in named:
                    lifetime.add(self, key)
            return [
                self._make_proxy(key, evict, deserializer, prefetch, None, strict)
                for key in named
            ]
        objs = list(objs)
        stored = self.set_batch(
            objs,
            keys=keys,
            serialize=serialize,
            serializer=None if serialize else serializer,
            lifetime=lifetime,
        )
        return [
            self._make_proxy(
                key,
                evict,
                deserializer,
                prefetch,
                type_path(obj) if deserializer is None else None,
                strict,
            )
            for key, obj in zip(stored, objs, strict=True)
        ]

    def proxy_from_key(
        self,
        key: KeyT,
        *,
        evict: bool = False,
        deserializer: Deserializer | None = None,
        prefetch: bool = False,
        strict: bool = False,
    ) -> Proxy[Any]:
        """Return a proxy for an object already in the store (no I/O)."""
        self._check_open()
        return self._make_proxy(
            self._validate_key(key), evict, deserializer, prefetch, None, strict
        )

    def future(
        self, *, timeout: float | None = DEFAULT_FUTURE_TIMEOUT
    ) -> Future[Any]:
        """Return a new future: a key whose value a producer sets later.

        Consumers wait on `result`, or on a proxy from `Future.proxy` that
        can be pickled and sent before the value exists. See
        ``docs/guides/futures-lifetimes.md``.

        Args:
            timeout: Seconds `result` and the future's proxies wait for the
                value by default; None waits without limit.

        Raises:
            ConfigurationError: If this store cannot hold futures (its keys
                depend on the write: Globus, endpoints), or `timeout` is
                negative.
        """
        from proxystore.store.future import Future

        self._check_open()
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not timeout >= 0
        ):
            raise ConfigurationError(
                f"timeout must be seconds >= 0 or None, got {timeout!r}"
            )
        return Future(self, self._future_key(), timeout=timeout)

    def _future_key(self) -> KeyT:
        """Mint the key of a new future (its value is written later, under it).

        The default works for drivers that take user keys; others override
        it or cannot hold futures.
        """
        if self._USER_KEY_REFUSAL is not None:
            raise ConfigurationError(
                f"{type(self).__name__} {self.name!r} cannot hold futures: a "
                f"future's key is chosen before its value is written, and "
                f"{self._USER_KEY_REFUSAL}"
            )
        return self._validate_key(new_object_id())

    def close(self) -> None:
        """Release the store's connections; later operations raise StoreClosedError."""
        if self._closed:
            return
        self._closed = True
        forget(self)
        self._cache.clear()
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # -- used by StoreFactory ------------------------------------------------

    def _resolve(
        self,
        key: KeyT,
        deserializer: Deserializer | None,
        evict: bool,
        strict: bool = False,
    ) -> Any:
        # The key came with a proxy: check it before it reaches a driver.
        key = self._validate_key(key)
        start = 0.0 if self.metrics is None else _clock()
        obj = self._fetch(key, deserializer, strict)
        if obj is MISSING:
            raise MissingKeyError(key, self.name)
        if evict:
            self.evict(key)
        self._record("resolve", start)
        return obj

    def _resolve_future(
        self,
        key: KeyT,
        timeout: float | None,
        evict: bool = False,
    ) -> Any:
        """Wait for a future's value, then return it (or raise its error)."""
        key = self._validate_key(key)
        self._check_open()
        obj = self._cache.get(key)
        if obj is not MISSING:
            return obj
        if not self._exists_within(key, timeout):
            raise StoreTimeoutError(
                f"store {self.name!r}",
                float("inf") if timeout is None else timeout,
                f"waiting for future {key!r}",
            )
        found = self._get_versioned(key)
        if found is None:
            raise MissingKeyError(key, self.name)
        data, version = found
        self._raise_future_error(key, data)
        obj = self._load(key, data, None, version)
        if evict:
            self.evict(key)
        return obj

    def _future_error_payload(self, error: BaseException) -> Payload:
        """Frame an exception as text (tag C): its type and message, never a pickle."""
        import json  # futures' errors only

        kind = type(error)
        body = {
            "type": f"{kind.__module__}.{kind.__qualname__}"[:_MAX_ERROR_TYPE],
            "message": str(error)[:_MAX_ERROR_MESSAGE],
        }
        return frame_custom(
            json.dumps(body).encode(),
            checksum=self._CHECKSUM,
            keys=self._signing_keys,
            sign_full_data=self.sign_full_data,
        )

    def _raise_future_error(self, key: KeyT, data: Stored) -> None:
        """Raise `FutureError` if a future's payload is an error, not a value.

        A future's value is always written by the default serializer, which
        never makes a ``C`` frame, so a ``C`` frame is an error.
        """
        view = memoryview(data.head if isinstance(data, Split) else data)
        if not is_frame(view) or view.nbytes <= _TAG_OFFSET:
            return
        if view[_TAG_OFFSET] != ord("C"):
            return
        import json

        body = deserialize_custom(
            data, json.loads, keys=self._signing_keys, require_checksum=self._CHECKSUM
        )
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("type"), str)
            or not isinstance(body.get("message"), str)
        ):
            raise SerializationError(
                f"future {key!r} of store {self.name!r} holds a malformed error"
            )
        raise FutureError(
            body["type"][:_MAX_ERROR_TYPE],
            body["message"][:_MAX_ERROR_MESSAGE],
            key,
            self.name,
        )

    # -- internals ---------------------------------------------------------

    def _fetch(
        self, key: KeyT, deserializer: Deserializer | None, strict: bool = False
    ) -> Any:
        if self._closed:
            raise StoreClosedError(self.name)
        if deserializer is raw_bytes:
            return self._fetch_raw(key)
        obj = self._cache.get(key)
        if obj is not MISSING and strict:
            entry = self._cache.entry(key)
            if entry is None or self._get_version(key) != entry[1]:
                obj = MISSING
            else:
                obj = entry[0]
        metrics = self.metrics
        if obj is not MISSING:
            if metrics is not None:
                metrics.record("cache_hit", 0.0, 0, key)
            return obj
        start = 0.0 if metrics is None else _clock()
        found = self._get_versioned(key)
        if found is None:
            self._cache.pop(key)
            self._record("get", start, key=key)
            return MISSING
        data, version = found
        obj = self._load(key, data, deserializer, version)
        if metrics is not None:
            metrics.record("get", _clock() - start, stored_size(data), key)
        return obj

    def _dump(self, obj: Any, serializer: Serializer | None) -> Payload:
        if serializer is None:
            return serialize_parts(
                obj,
                checksum=self._CHECKSUM,
                keys=self._signing_keys,
                sign_full_data=self.sign_full_data,
            )
        return frame_custom(
            serializer(obj),
            checksum=self._CHECKSUM,
            keys=self._signing_keys,
            sign_full_data=self.sign_full_data,
        )

    def _fetch_raw(self, key: KeyT) -> Any:
        """The stored bytes as they are (``deserialize=False``), never cached."""
        start = _clock()
        data = self._get_bytes(key)
        self._record("get", start, key=key)
        return MISSING if data is None else stored_bytes(data)

    def _load(
        self,
        key: KeyT,
        data: Stored,
        deserializer: Deserializer | None,
        version: int | None = None,
    ) -> Any:
        try:
            if deserializer is None:
                obj = deserialize(
                    data, keys=self._signing_keys, require_checksum=self._CHECKSUM
                )
            else:
                obj = deserialize_custom(
                    data,
                    deserializer,
                    keys=self._signing_keys,
                    require_checksum=self._CHECKSUM,
                )
        except SerializationError as err:
            # Same error, cause and traceback; the message gains where it was.
            err.args = (f"cannot load key {key!r} from store {self.name!r}: {err}",)
            raise
        self._cache.put(key, obj, version)
        return obj

    def _payload(
        self, obj: Any, serialize: bool, serializer: Serializer | None
    ) -> Payload:
        if serialize:
            return self._dump(obj, serializer)
        # serialize=False (ProxyStore 0.4): the caller's bytes are the whole
        # payload, stored as given, with no frame; read back raw only.
        if isinstance(obj, memoryview):
            return [obj.cast("B")]
        if not isinstance(obj, (bytes, bytearray)):
            raise NotBytesError(
                f"serialize=False stores bytes as given, got {type(obj).__name__} "
                f"(store {self.name!r})"
            )
        return [obj]

    def _user_key(self, key: Any) -> KeyT:
        name = type(self).__name__
        if self._USER_KEY_REFUSAL is not None:
            raise InvalidKeyError(
                key, f"{name} does not take keys from users: {self._USER_KEY_REFUSAL}"
            )
        if type(key) is not str or USER_KEY_PATTERN.fullmatch(key) is None:
            raise InvalidKeyError(key, f"{name} {USER_KEY_RULE}")
        return self._validate_key(key)

    def _make_proxy(
        self,
        key: KeyT,
        evict: bool,
        deserializer: Deserializer | None,
        prefetch: bool,
        target_type: str | None = None,
        strict: bool = False,
        wait: float | None = None,
    ) -> Proxy[Any]:
        factory: StoreFactory[Any] = StoreFactory(
            self.store_config,
            key,
            evict=evict,
            deserializer=deserializer,
            prefetch=prefetch,
            target_type=target_type,
            strict=strict,
            wait=wait,
        )
        return Proxy(factory)

    @staticmethod
    def _base_options(arguments: dict[str, Any]) -> dict[str, Any]:
        """The `Store.__init__` keywords among a driver constructor's arguments.

        A driver's signature lists the keywords it shares with `Store` (so
        its documentation and signature show them) and forwards them with
        ``super().__init__(name, **self._base_options(locals()))``: which
        keywords are shared is said once, by this class's signature.
        """
        return {name: arguments[name] for name in _BASE_KEYWORDS}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(self.name)

    def _record(
        self, operation: str, start: float, payload: Payload = (), key: Any = None
    ) -> None:
        if self.metrics is not None:
            self.metrics.record(operation, _clock() - start, _nbytes(payload), key)


def _deprecated(name: str, replacement: str) -> None:
    warnings.warn(
        f"{name} is ProxyStore 0.4's API; use {replacement}",
        DeprecationWarning,
        stacklevel=3,
    )


_BASE_KEYWORDS = tuple(
    name
    for name, parameter in inspect.signature(Store.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
"""The keywords every driver's constructor takes and hands to `Store.__init__`."""


def _settled(
    write: Callable[..., Any], payload: Payload, key: Any
) -> tuple[bool, Any]:
    """Run one write of a batch: (True, key) or (False, the error it raised)."""
    try:
        # Without a user key, drivers written before user keys still work.
        if key is None:
            return True, write(payload)
        return True, write(payload, key)
    except Exception as err:
        return False, err


def _check_batch(batch: object, argument: str, operation: str) -> None:
    if isinstance(batch, (str, bytes, bytearray, memoryview)):
        raise InvalidArgumentError(
            f"{operation}: {argument} must be an iterable of "
            f"{'objects' if argument == 'objs' else 'keys'}, not a single "
            f"{type(batch).__name__} (wrap it in a list)"
        )
    if not isinstance(batch, Iterable):
        raise InvalidArgumentError(
            f"{operation}: {argument} must be an iterable, got {type(batch).__name__}"
        )


def _nbytes(payload: Payload) -> int:
    return sum(map(len, payload))
