"""A lazy transparent proxy that builds its target from a factory on first use.

A `Proxy` wraps a *factory*, any zero-argument callable returning the real
object (the *target*). Nothing is fetched until the proxy is really used;
then the factory is called once and every operation is forwarded to the
target: attributes, operators, comparisons, hashing, iteration, calls,
context managers, awaiting, numpy conversion. `isinstance(p, type(target))`
holds because `__class__` is forwarded, while `type(p) is Proxy` stays true.

Pickling or copying a proxy never resolves it: a pickled proxy carries only
its factory, so it stays small however big the target is, and the process
that unpickles it resolves it again when it first uses it.

Example:
    >>> p = Proxy(lambda: [1, 2, 3])
    >>> is_resolved(p)
    False
    >>> len(p), isinstance(p, list), is_resolved(p)
    (3, True, True)

A factory that knows its target's class without fetching it exposes it as
``target_class`` (store proxies record it): then `isinstance` checks and
probes of special names the class does not define (``__dask_future__``,
``__dask_graph__``...) are answered from the class, so frameworks that
inspect task arguments (Dask, cloudpickle's ``isinstance(p, FunctionType)``)
do not fetch the object on the client. Special names set on an instance
rather than its class are not seen before resolution. Dask hashes a proxy
by its factory (``__dask_tokenize__``), never by its target.

Known limits: operations Python looks up on the *type* make every proxy
look like it supports them to `collections.abc` checks (`callable(p)` is
always true, `isinstance(p, Awaitable)` too), and `sys.getsizeof(p)` is the
size of the proxy itself. Without a known class, `cloudpickle` resolves a
proxy when it asks ``isinstance(p, FunctionType)`` (the pickle still carries
only the factory); `pickle` and `dill` never resolve it.
"""

from __future__ import annotations

import copy
import math
import operator
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Generic, SupportsIndex, TypeVar

from proxystore.exceptions import ProxyResolveError, describe

T = TypeVar("T")

__all__ = [
    "Proxy",
    "extract",
    "get_factory",
    "get_key",
    "is_resolved",
    "resolve",
    "resolve_async",
]


class _Unresolved:
    """Type of the sentinel `_peek_target` returns for an unresolved proxy."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unresolved>"


_UNRESOLVED: Any = _Unresolved()

# Names the proxy answers itself instead of forwarding: pickle and copy look
# them up on the instance, and forwarding them would resolve the proxy and
# serialize the target. `__orig_class__` is what `Proxy[int](f)` tries to set.
_OWN_NAMES = frozenset(
    {
        "__reduce__",
        "__reduce_ex__",
        "__copy__",
        "__deepcopy__",
        "__orig_class__",
        "__dask_tokenize__",
    }
)


class Proxy(Generic[T]):
    """A lazy transparent proxy over the object a factory returns.

    The factory is called on the first real use of the proxy (from any
    thread, exactly once even under contention) and its result, the target,
    is kept; from then on every operation is forwarded to the target. If the
    factory raises, nothing is kept and the next use calls it again.

    Args:
        factory: A zero-argument callable returning the target. It must be
            picklable for the proxy to be picklable, because pickling a
            proxy pickles only its factory.

    Raises:
        TypeError: If `factory` is not callable (at construction).
        ProxyResolveError: On use, when the factory raised `AttributeError`
            (the original error is the ``__cause__``). Any other exception
            from the factory reaches the caller unchanged.

    Example:
        >>> p = Proxy(functools.partial(dict, a=1))
        >>> p["a"]
        1
    """

    __slots__ = (
        "__proxy_factory__",
        "__proxy_lock__",
        "__proxy_target__",
        "__weakref__",
    )

    def __init__(self, factory: Callable[[], T]) -> None:
        if not callable(factory):
            raise TypeError(
                f"a Proxy needs a callable factory, got {describe(factory)} "
                f"of type {type(factory).__name__}"
            )
        _set_factory(self, factory)
        _set_lock(self, None)
        # The target slot stays empty until resolution: reading an empty
        # slot raises AttributeError, and a try costs nothing on the resolved
        # path, where comparing against a sentinel would cost every call.

    # --- attributes -------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":
            # What isinstance() asks a proxy: answered in the fewest steps.
            try:
                return _get_target(self).__class__
            except AttributeError:
                known = _known_class(self)
                if known is not None:
                    return known
                return _resolve(self).__class__
        if name in _OWN_NAMES:
            return object.__getattribute__(self, name)
        try:
            target = _get_target(self)
        except AttributeError:
            if name[:2] == "__" == name[-2:]:
                known = _known_class(self)
                if known is not None:
                    if name == "__class__":
                        return known
                    # Protocol probes (Dask's __dask_future__...) are answered
                    # by the class, as Python looks special names up.
                    if not hasattr(known, name):
                        raise AttributeError(
                            f"{known.__name__!r} object has no attribute {name!r}"
                        ) from None
            target = _resolve(self)
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN_NAMES:
            object.__setattr__(self, name, value)
            return
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        setattr(target, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _OWN_NAMES:
            object.__delattr__(self, name)
            return
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        delattr(target, name)

    def __dir__(self) -> Iterable[str]:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return dir(target)

    # --- pickling, copying, representation ---------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (_get_factory(self),)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return type(self), (_get_factory(self),)

    def __dask_tokenize__(self) -> object:
        # Dask hashes task arguments on the client; hashing the target would
        # fetch it there. A proxy is identified by its factory instead.
        factory = _get_factory(self)
        tokenize = getattr(factory, "__dask_tokenize__", None)
        token = tokenize() if tokenize is not None else id(factory)
        return (type(self).__qualname__, token)

    def __copy__(self) -> Proxy[T]:
        """Return a new proxy over the same factory.

        An unresolved proxy is copied without resolving it. A resolved one
        yields a proxy whose target is `copy.copy` of this proxy's target.
        """
        clone: Proxy[T] = type(self)(_get_factory(self))
        if (target := _peek_target(self)) is not _UNRESOLVED:
            _set_target_slot(clone, copy.copy(target))
            _set_lock(clone, _RESOLVED)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Proxy[T]:
        """Return a new proxy whose target will be independent of this one's.

        An unresolved proxy is copied without resolving it: the new proxy
        deep-copies whatever the factory returns when it is first used, so
        it never shares state with this proxy even if the factory hands out
        a cached object. A resolved proxy yields a proxy over the same
        factory whose target is `copy.deepcopy` of this proxy's target.
        """
        if (target := _peek_target(self)) is _UNRESOLVED:
            return type(self)(_DeepCopyingFactory(_get_factory(self)))
        clone: Proxy[T] = type(self)(_get_factory(self))
        _set_target_slot(clone, copy.deepcopy(target, memo))
        _set_lock(clone, _RESOLVED)
        return clone

    def __repr__(self) -> str:
        if (target := _peek_target(self)) is _UNRESOLVED:
            return f"<Proxy unresolved factory={describe(_get_factory(self))}>"
        return repr(target)

    def __str__(self) -> str:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return str(target)

    def __format__(self, format_spec: str) -> str:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return format(target, format_spec)

    def __bytes__(self) -> bytes:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return bytes(target)

    def __fspath__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return os.fspath(target)

    # --- identity-like protocols -------------------------------------------

    def __hash__(self) -> int:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return hash(target)

    def __bool__(self) -> bool:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return bool(target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the target with these arguments and return its result."""
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return isinstance(instance, target)

    def __subclasscheck__(self, subclass: Any) -> bool:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return issubclass(subclass, target)

    # --- comparisons --------------------------------------------------------

    def __eq__(self, other: object) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target == other

    def __ne__(self, other: object) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target != other

    def __lt__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target < other

    def __le__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target <= other

    def __gt__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target > other

    def __ge__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target >= other

    # --- containers and iteration -------------------------------------------

    def __len__(self) -> int:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return len(target)

    def __iter__(self) -> Iterator[Any]:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return iter(target)

    def __next__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return next(target)

    def __reversed__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return reversed(target)

    def __contains__(self, item: object) -> bool:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return item in target

    def __getitem__(self, key: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target[key] = value

    def __delitem__(self, key: Any) -> None:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        del target[key]

    # --- context managers and async protocols -------------------------------

    def __enter__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target.__exit__(*exc_info)

    def __aenter__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target.__aenter__()

    def __aexit__(self, *exc_info: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target.__aexit__(*exc_info)

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        awaitable: Generator[Any, None, Any] = target.__await__()
        return awaitable

    def __aiter__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target.__aiter__()

    def __anext__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target.__anext__()

    # --- numeric conversions ------------------------------------------------

    def __index__(self) -> int:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return operator.index(target)

    def __int__(self) -> int:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return int(target)

    def __float__(self) -> float:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return float(target)

    def __complex__(self) -> complex:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return complex(target)

    def __round__(self, ndigits: SupportsIndex | None = None) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return round(target) if ndigits is None else round(target, ndigits)

    def __trunc__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return math.trunc(target)

    def __floor__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return math.floor(target)

    def __ceil__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return math.ceil(target)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        # numpy looks `__array__` up on the type, so it must live on the
        # class; numpy is imported here because only numpy calls this.
        import numpy

        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        if copy:
            return numpy.array(target, dtype=dtype, copy=True)
        return numpy.asarray(target, dtype=dtype)

    # --- unary operators ----------------------------------------------------

    def __neg__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return -target

    def __pos__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return +target

    def __abs__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return abs(target)

    def __invert__(self) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return ~target

    # --- binary operators ---------------------------------------------------

    def __add__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target + other

    def __sub__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target - other

    def __mul__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target * other

    def __matmul__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target @ other

    def __truediv__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target / other

    def __floordiv__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target // other

    def __mod__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target % other

    def __divmod__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return divmod(target, other)

    def __pow__(self, other: Any, modulo: Any = None) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target**other if modulo is None else pow(target, other, modulo)

    def __lshift__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target << other

    def __rshift__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target >> other

    def __and__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target & other

    def __xor__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target ^ other

    def __or__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return target | other

    # --- reflected binary operators -----------------------------------------

    def __radd__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other + target

    def __rsub__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other - target

    def __rmul__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other * target

    def __rmatmul__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other @ target

    def __rtruediv__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other / target

    def __rfloordiv__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other // target

    def __rmod__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other % target

    def __rdivmod__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return divmod(other, target)

    def __rpow__(self, other: Any, modulo: Any = None) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other**target if modulo is None else pow(other, target, modulo)

    def __rlshift__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other << target

    def __rrshift__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other >> target

    def __rand__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other & target

    def __rxor__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other ^ target

    def __ror__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        return other | target

    # --- in-place operators: the name is rebound to the target's result -----

    def __iadd__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target += other
        return target

    def __isub__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target -= other
        return target

    def __imul__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target *= other
        return target

    def __imatmul__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target @= other
        return target

    def __itruediv__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target /= other
        return target

    def __ifloordiv__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target //= other
        return target

    def __imod__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target %= other
        return target

    def __ipow__(self, other: Any, modulo: Any = None) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        if modulo is not None:
            return pow(target, other, modulo)
        target **= other
        return target

    def __ilshift__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target <<= other
        return target

    def __irshift__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target >>= other
        return target

    def __iand__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target &= other
        return target

    def __ixor__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target ^= other
        return target

    def __ior__(self, other: Any) -> Any:
        try:
            target = _get_target(self)
        except AttributeError:
            target = _resolve(self)
        target |= other
        return target


# Reading and writing the slots through their descriptors bypasses the
# forwarding `__getattribute__`/`__setattr__` and is the cheapest lookup
# Python offers, which keeps the resolved fast path to one call.
_get_factory: Callable[[Proxy[Any]], Any] = Proxy.__dict__["__proxy_factory__"].__get__
_set_factory: Callable[[Proxy[Any], Any], None] = Proxy.__dict__[
    "__proxy_factory__"
].__set__
_get_lock: Callable[[Proxy[Any]], Any] = Proxy.__dict__["__proxy_lock__"].__get__
_set_lock: Callable[[Proxy[Any], Any], None] = Proxy.__dict__["__proxy_lock__"].__set__
_get_target: Callable[[Proxy[Any]], Any] = Proxy.__dict__["__proxy_target__"].__get__
_set_target_slot: Callable[[Proxy[Any], Any], None] = Proxy.__dict__[
    "__proxy_target__"
].__set__


def _peek_target(proxy: Proxy[Any]) -> Any:
    """Return the proxy's target, or `_UNRESOLVED`, without resolving it."""
    try:
        return _get_target(proxy)
    except AttributeError:
        return _UNRESOLVED


# Guards only the creation of per-proxy locks, so proxies that are never
# touched by two threads at once never allocate a lock of their own.
_LOCK_CREATION = threading.Lock()

# Bumped in every forked child. A per-proxy lock is stored with the
# generation that made it: a lock from an older generation was inherited
# through fork, possibly held by a parent thread that does not exist here,
# so the child replaces it instead of waiting on it forever.
_generation = 0


def _reset_after_fork() -> None:
    # A fork while another thread held the lock would leave it held forever
    # in the child.
    global _LOCK_CREATION, _generation
    _LOCK_CREATION = threading.Lock()
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _known_class(proxy: Proxy[Any]) -> type | None:
    """The target's class if the factory knows it without resolving."""
    known = getattr(_get_factory(proxy), "target_class", None)
    return known if isinstance(known, type) else None


def _resolve(proxy: Proxy[T]) -> T:
    """Call the proxy's factory once, keep the target, and return it."""
    # The lock slot holds (lock, generation) while a resolution may be in
    # flight, and `_RESOLVED` once the target is set (by this function or
    # `_set_target`); only this slow path reads it, the resolved fast path
    # never does. Asking it, rather than reading the empty target slot,
    # raises no AttributeError on the way to the first resolution.
    entry = _get_lock(proxy)
    if entry is _RESOLVED:
        return _get_target(proxy)  # type: ignore[no-any-return]
    generation = _generation
    if entry is None or entry[1] != generation:
        with _LOCK_CREATION:
            entry = _get_lock(proxy)
            if entry is _RESOLVED:
                return _get_target(proxy)  # type: ignore[no-any-return]
            if entry is None or entry[1] != generation:
                # Reentrant so a factory that touches its own proxy fails
                # with a RecursionError instead of deadlocking.
                entry = (threading.RLock(), generation)
                _set_lock(proxy, entry)
    with entry[0]:
        if _get_lock(proxy) is _RESOLVED:
            return _get_target(proxy)  # type: ignore[no-any-return]
        factory = _get_factory(proxy)
        try:
            target = factory()
        except AttributeError as err:
            raise ProxyResolveError(
                f"the factory {describe(factory)} of a proxy raised "
                f"AttributeError while resolving it: {err}"
            ) from err
        _set_target_slot(proxy, target)
        # Threads already waiting hold their own reference to the lock.
        _set_lock(proxy, _RESOLVED)
    return target  # type: ignore[no-any-return]


_RESOLVED: Any = ("resolved",)
"""What the lock slot holds once the target slot is set."""


class _DeepCopyingFactory(Generic[T]):
    """Factory of a deep-copied unresolved proxy: a deep copy of the original's target.

    Args:
        factory: The factory of the proxy that was deep-copied.
    """

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory

    def __call__(self) -> T:
        return copy.deepcopy(self.factory())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.factory!r})"


def _check_proxy(obj: object) -> None:
    # `type()` rather than `isinstance()`: the latter would resolve a proxy.
    if not issubclass(type(obj), Proxy):
        raise TypeError(f"expected a Proxy, got an object of type {type(obj).__name__}")


def is_resolved(proxy: Proxy[Any]) -> bool:
    """Return whether the proxy's target exists, without resolving it.

    Args:
        proxy: The proxy to inspect.

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
    """
    _check_proxy(proxy)
    return _peek_target(proxy) is not _UNRESOLVED


def resolve(proxy: Proxy[Any]) -> None:
    """Resolve the proxy now if it is not resolved yet.

    Args:
        proxy: The proxy to resolve.

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
        ProxyResolveError: If the factory raised `AttributeError`.
        Exception: Whatever else the factory raised, unchanged.
    """
    _check_proxy(proxy)
    if _peek_target(proxy) is _UNRESOLVED:
        _resolve(proxy)


def extract(proxy: Proxy[T]) -> T:
    """Return the proxy's target itself, resolving the proxy if needed.

    Args:
        proxy: The proxy whose target to return.

    Returns:
        The object the factory returned (not a proxy).

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
        ProxyResolveError: If the factory raised `AttributeError`.
        Exception: Whatever else the factory raised, unchanged.
    """
    _check_proxy(proxy)
    if (target := _peek_target(proxy)) is _UNRESOLVED:
        return _resolve(proxy)
    return target  # type: ignore[no-any-return]


def get_factory(proxy: Proxy[T]) -> Callable[[], T]:
    """Return the factory of the proxy, without resolving it.

    Args:
        proxy: The proxy whose factory to return.

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
    """
    _check_proxy(proxy)
    return _get_factory(proxy)  # type: ignore[no-any-return]


def get_key(proxy: Proxy[Any]) -> Any:
    """Return the key of the object a store's proxy refers to, without resolving it.

    The ProxyStore 0.4 helper: None for a proxy whose factory has no key.
    `proxystore.store.utils.get_key` raises for such a proxy instead.

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
    """
    return getattr(get_factory(proxy), "key", None)


def resolve_async(proxy: Proxy[Any]) -> None:
    """Start resolving a proxy in the background; return at once.

    The ProxyStore 0.4 helper: calls the factory's blocking
    ``resolve_async()`` (a store proxy's factory starts fetching on the
    background loop) unless the proxy is resolved. A factory without one is
    left alone.

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
    """
    if not is_resolved(proxy):
        start = getattr(get_factory(proxy), "resolve_async", None)
        if start is not None:
            start()


def _set_target(proxy: Proxy[T], target: T) -> None:
    """Make `target` the proxy's target without calling its factory.

    For code that obtained the target by other means, such as a prefetch
    that completed in the background. A target already set is replaced.

    Args:
        proxy: The proxy to resolve.
        target: The object the proxy will forward to.

    Raises:
        TypeError: If `proxy` is not a `Proxy`.
    """
    _check_proxy(proxy)
    _set_target_slot(proxy, target)
    _set_lock(proxy, _RESOLVED)
