"""`StoreFactory`: the factory inside every proxy a store makes.

It carries the store's configuration, not the store: a process that never
initialised the store rebuilds it (and registers it under its name) on the
first resolve. The same factory resolves through the sync face when a proxy
is touched and through the async face under `await proxystore.aio.resolve`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from proxystore import registry
from proxystore.factory import Factory
from proxystore.registry import StoreConfig

T = TypeVar("T")


class StoreFactory(Factory[T]):
    """Resolve a key from a named store.

    Args:
        config: The store's configuration (`store.store_config`).
        key: The object's key in the store.
        evict: Evict the object from the store once resolved.
        deserializer: Custom deserializer for the stored bytes, if the object
            was stored with a custom serializer.
        prefetch: Start fetching as soon as the factory is unpickled.
    """

    __slots__ = ("config", "deserializer", "evict", "key", "prefetch")

    def __init__(
        self,
        config: StoreConfig,
        key: Any,
        *,
        evict: bool = False,
        deserializer: Callable[[bytes], Any] | None = None,
        prefetch: bool = False,
    ) -> None:
        self.config = config
        self.key = key
        self.evict = evict
        self.deserializer = deserializer
        self.prefetch = prefetch

    def resolve(self) -> T:
        """Fetch the object through the store's sync face.

        Raises:
            MissingKeyError: If the key is not in the store.
        """
        store = registry.lookup_or_build(self.config, "sync")
        result: T = store._resolve(self.key, self.deserializer, self.evict)
        return result

    async def resolve_async(self) -> T:
        """Fetch the object through the store's async face.

        Raises:
            MissingKeyError: If the key is not in the store.
        """
        store = registry.lookup_or_build(self.config, "async")
        result: T = await store._aresolve(self.key, self.deserializer, self.evict)
        return result

    def __reduce__(self) -> tuple[Any, ...]:
        config = self.config
        flags = (self.evict, self.deserializer, self.prefetch)
        return (_rebuild, (config.kind, config.kwargs, self.key, flags))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoreFactory):
            return NotImplemented
        return (self.config, self.key, self.evict) == (
            other.config,
            other.key,
            other.evict,
        )

    def __hash__(self) -> int:
        return hash((self.config.name, self.key))

    def __repr__(self) -> str:
        return f"StoreFactory(store={self.config.name!r}, key={self.key!r})"


def _rebuild(
    kind: str,
    kwargs: dict[str, Any],
    key: Any,
    flags: tuple[bool, Callable[[bytes], Any] | None, bool],
) -> StoreFactory[Any]:
    evict, deserializer, prefetch = flags
    config = StoreConfig(kind, kwargs["name"], kwargs)
    return StoreFactory(
        config, key, evict=evict, deserializer=deserializer, prefetch=prefetch
    )
