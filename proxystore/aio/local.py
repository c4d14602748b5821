"""`LocalStore`: objects kept in this process's memory.

Useful for development, tests, and threads or tasks of one process. Both
faces of one store name share the same objects. Proxies resolve only in this
process (or in a child forked after the object was stored).
"""

from __future__ import annotations

from typing import Any

from proxystore._shared import local_objects, new_object_id
from proxystore.aio.base import Store
from proxystore.exceptions import InvalidKeyError
from proxystore.serialize import Buffer, Payload, join
from proxystore.signing import SigningKeysOption

_IS_SYNC = False


class LocalStore(Store[str]):
    """An in-process store.

    Its payloads are framed without a checksum: the bytes never leave this
    process's memory, so there is nothing for a checksum to catch (measured
    in ``benchmarks/bench_frame.py``: skipping it saves one xxh3 pass per set
    and per get). With signing keys, payloads are still signed and verified.

    Args:
        name: The store's name.
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.aio.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.
    """

    _CHECKSUM = False

    def __init__(
        self,
        name: str,
        *,
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
        self._objects: dict[str, bytes] = local_objects(name)

    def _validate_key(self, key: Any) -> str:
        if type(key) is not str or not key:
            raise InvalidKeyError(key, "LocalStore keys are non-empty str")
        return key

    async def _aset_bytes(self, payload: Payload) -> str:
        key = new_object_id()
        self._objects[key] = join(payload)
        return key

    async def _aget_bytes(self, key: str) -> Buffer | None:
        return self._objects.get(key)

    async def _aexists(self, key: str) -> bool:
        return key in self._objects

    async def _aevict(self, key: str) -> None:
        self._objects.pop(key, None)
