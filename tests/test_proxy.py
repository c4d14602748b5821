from __future__ import annotations

import asyncio
import collections.abc
import copy
import functools
import math
import multiprocessing
import operator
import os
import pathlib
import pickle
import sys
import threading
import traceback
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import dill
import pytest

from proxystore.exceptions import MissingKeyError, ProxyResolveError
from proxystore.proxy import (
    Proxy,
    _set_target,
    extract,
    get_factory,
    is_resolved,
    resolve,
)

# --- factories: plain picklable callables ------------------------------------


class Value:
    """Returns a fixed object and counts how often it was called."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.value

    def __repr__(self) -> str:
        return "Value(...)"


class BigBytes:
    """Builds a large object on call, so pickling the factory stays small."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return b"x" * self.size


class Raising:
    """Raises the given exception on the first `failures` calls."""

    def __init__(self, error: BaseException, failures: int = 1_000_000) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "recovered"


class SubProxy(Proxy[Any]):
    __slots__ = ()


def proxy_of(value: Any) -> Proxy[Any]:
    return Proxy(Value(value))


# --- target types ------------------------------------------------------------


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    @property
    def norm2(self) -> int:
        return self.x * self.x + self.y * self.y

    def moved(self, dx: int) -> Point:
        return Point(self.x + dx, self.y)


class Record:
    """A plain class with a __dict__."""

    kind = "record"

    def __init__(self) -> None:
        self.name = "r"


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def __enter__(self) -> str:
        self.events.append("enter")
        return "entered"

    def __exit__(self, *exc_info: Any) -> bool:
        self.events.append(f"exit:{exc_info[0].__name__ if exc_info[0] else None}")
        return exc_info[0] is KeyError

    async def __aenter__(self) -> str:
        self.events.append("aenter")
        return "aentered"

    async def __aexit__(self, *exc_info: Any) -> None:
        self.events.append("aexit")


class PathLike:
    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def annotated(a: int, b: str = "") -> float:
    """Doc of annotated."""
    return float(a)


# --- laziness ----------------------------------------------------------------


def test_creating_and_inspecting_type_does_not_resolve() -> None:
    factory = Value([1, 2])
    p = Proxy(factory)
    assert type(p) is Proxy
    assert type(p).__name__ == "Proxy"
    assert isinstance(p, Proxy)
    assert not is_resolved(p)
    assert factory.calls == 0


def test_first_use_resolves_once_then_forwards() -> None:
    factory = Value([1, 2])
    p = Proxy(factory)
    assert len(p) == 2
    assert p[0] == 1
    assert is_resolved(p)
    assert factory.calls == 1


def test_generic_subscription_does_not_resolve() -> None:
    factory = Value(3)
    p = Proxy[int](factory)
    assert factory.calls == 0
    assert p + 1 == 4


class _ThreeSlots:
    """A plain object of the proxy's layout: three slots and a weakref slot."""

    __slots__ = ("__weakref__", "a", "b", "c")


def test_proxy_has_no_instance_dict_and_is_small() -> None:
    p = proxy_of(1)
    assert Proxy.__dictoffset__ == 0
    # Object headers differ between Pythons (64 bytes on 3.11, 72 on 3.13):
    # compare with the plainest object of the same slots on this interpreter.
    assert sys.getsizeof(p) == sys.getsizeof(_ThreeSlots())


def test_proxy_can_be_weakly_referenced() -> None:
    p = proxy_of(1)
    ref = weakref.ref(p)
    assert ref() is p


# --- transparency over many types --------------------------------------------

VALUES = [
    0,
    42,
    -7,
    3.5,
    "hello",
    "",
    b"bytes",
    [3, 1, 2],
    [],
    {"a": 1, "b": 2},
    {1, 2, 3},
    (1, "two", 3.0),
    frozenset({4, 5}),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_transparent_over_builtin_types(value: Any) -> None:
    p = proxy_of(value)
    assert isinstance(p, type(value))
    assert p == value
    assert (p != value) is False
    assert bool(p) == bool(value)
    assert str(p) == str(value)
    assert repr(p) == repr(value)
    assert format(p) == format(value)
    assert dir(p) == dir(value)
    assert p.__class__ is type(value)
    assert p.__doc__ == value.__doc__
    try:
        expected_hash = hash(value)
    except TypeError:
        with pytest.raises(TypeError):
            hash(p)
    else:
        assert hash(p) == expected_hash
    if hasattr(value, "__len__"):
        assert len(p) == len(value)
        assert list(iter(p)) == list(iter(value))
        for item in value:
            assert item in p
    if hasattr(value, "__reversed__"):
        assert list(reversed(p)) == list(reversed(value))


def test_abstract_base_classes_see_the_target_type() -> None:
    assert isinstance(proxy_of([1]), collections.abc.Sequence)
    assert isinstance(proxy_of({}), collections.abc.Mapping)
    assert not isinstance(proxy_of({}), collections.abc.Sequence)


def test_subclass_survives_pickle_and_copy() -> None:
    p = SubProxy(Value(1))
    assert type(pickle.loads(pickle.dumps(p))) is SubProxy
    assert type(copy.copy(p)) is SubProxy
    assert type(copy.deepcopy(p)) is SubProxy


def test_proxy_is_usable_as_dict_key_and_set_member() -> None:
    assert {proxy_of("k"): 1}["k"] == 1
    assert proxy_of(5) in {5, 6}
    assert proxy_of(1) == proxy_of(1)


def test_item_assignment_and_deletion_forward() -> None:
    target: dict[str, int] = {"a": 1}
    p = proxy_of(target)
    p["b"] = 2
    del p["a"]
    assert target == {"b": 2}
    assert p.get("b") == 2


def test_user_class_with_slots_and_properties() -> None:
    point = Point(3, 4)
    p = proxy_of(point)
    assert isinstance(p, Point)
    assert p.x == 3
    assert p.norm2 == 25
    assert p.moved(1).x == 4
    p.y = 10
    assert point.y == 10
    del p.x
    assert not hasattr(point, "x")
    assert not hasattr(p, "x")
    with pytest.raises(AttributeError):
        p.z = 1


def test_attribute_set_and_delete_forward_to_target() -> None:
    record = Record()
    p = proxy_of(record)
    p.extra = [1]
    assert record.extra == [1]  # type: ignore[attr-defined]
    del p.name
    assert not hasattr(record, "name")
    assert p.__dict__ is record.__dict__
    assert p.kind == "record"
    assert p.__module__ == __name__


def test_dunder_attributes_of_functions_and_classes_forward() -> None:
    p = proxy_of(annotated)
    assert p.__name__ == "annotated"
    assert p.__qualname__ == "annotated"
    assert p.__doc__ == "Doc of annotated."
    assert p.__annotations__ == annotated.__annotations__
    assert p.__module__ == __name__

    cls = proxy_of(Point)
    assert cls.__name__ == "Point"
    assert cls(1, 2).x == 1
    assert isinstance(Point(0, 0), cls)
    assert issubclass(Point, cls)


def test_callable_forwards_args_and_kwargs() -> None:
    p = proxy_of(functools.partial(annotated, b="x"))
    assert p(2) == 2.0
    assert proxy_of(dict)(a=1) == {"a": 1}


def test_iterator_target_supports_next() -> None:
    p = proxy_of(iter([1, 2]))
    assert next(p) == 1
    assert list(p) == [2]


def test_context_manager_forwards_enter_exit_and_suppression() -> None:
    recorder = Recorder()
    p = proxy_of(recorder)
    with p as entered:
        assert entered == "entered"
    with p:
        raise KeyError("suppressed by the target's __exit__")
    with pytest.raises(ValueError, match="not suppressed"), p:
        raise ValueError("not suppressed")
    assert recorder.events == [
        "enter",
        "exit:None",
        "enter",
        "exit:KeyError",
        "enter",
        "exit:ValueError",
    ]


async def test_async_context_manager_forwards() -> None:
    recorder = Recorder()
    async with proxy_of(recorder) as entered:
        assert entered == "aentered"
    assert recorder.events == ["aenter", "aexit"]


async def test_awaiting_a_proxy_awaits_its_target() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(7)
    assert await proxy_of(future) == 7


async def test_async_iteration_forwards() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    assert [i async for i in proxy_of(numbers())] == [0, 1, 2]
    p = proxy_of(numbers())
    assert await p.__anext__() == 0
    assert await anext(p) == 1


def test_fspath_forwards(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("content")
    assert os.fspath(proxy_of(path)) == str(path)
    assert os.fspath(proxy_of(PathLike("/a/b"))) == "/a/b"
    with open(proxy_of(PathLike(str(path)))) as f:
        assert f.read() == "content"


def test_int_proxy_works_as_index() -> None:
    three = proxy_of(3)
    assert operator.index(three) == 3
    assert [10, 11, 12, 13][three] == 13
    assert list(range(10))[proxy_of(1) : three] == [1, 2]
    assert three in range(5)
    assert list(range(three)) == [0, 1, 2]
    assert range(10)[three] == 3
    assert hex(three) == "0x3"
    assert "ab" * three == "ababab"


def test_numeric_conversions_forward() -> None:
    p = proxy_of(2.75)
    assert int(p) == 2
    assert float(p) == 2.75
    assert complex(p) == complex(2.75)
    assert round(p) == 3
    assert round(p, 1) == 2.8
    assert math.trunc(p) == 2
    assert math.floor(p) == 2
    assert math.ceil(p) == 3
    assert f"{p:.1f}" == "2.8"
    assert bytes(proxy_of(b"raw")) == b"raw"
    assert bytes(proxy_of([1, 2])) == b"\x01\x02"


# --- operators ---------------------------------------------------------------

BINARY = [
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.floordiv,
    operator.mod,
    divmod,
    operator.pow,
    operator.lshift,
    operator.rshift,
    operator.and_,
    operator.or_,
    operator.xor,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.eq,
    operator.ne,
]


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.__name__)
def test_binary_operators_both_sides(op: Callable[[Any, Any], Any]) -> None:
    assert op(proxy_of(13), 4) == op(13, 4)
    assert op(13, proxy_of(4)) == op(13, 4)
    assert op(proxy_of(13), proxy_of(4)) == op(13, 4)


def test_ternary_pow_forwards() -> None:
    assert pow(proxy_of(3), 4, 5) == pow(3, 4, 5)


def test_sequence_operators_both_sides() -> None:
    assert proxy_of([1]) + [2] == [1, 2]  # noqa: RUF005
    assert [0] + proxy_of([1]) == [0, 1]  # noqa: RUF005
    assert 2 * proxy_of("ab") == "abab"
    assert proxy_of("%s!") % "hi" == "hi!"
    assert proxy_of({1, 2}) | {3} == {1, 2, 3}
    assert {3} | proxy_of({1, 2}) == {1, 2, 3}


@pytest.mark.parametrize(
    "op", [operator.neg, operator.pos, abs, operator.invert], ids=lambda o: o.__name__
)
def test_unary_operators(op: Callable[[Any], Any]) -> None:
    assert op(proxy_of(-5)) == op(-5)


INPLACE = [
    (operator.iadd, operator.add),
    (operator.isub, operator.sub),
    (operator.imul, operator.mul),
    (operator.itruediv, operator.truediv),
    (operator.ifloordiv, operator.floordiv),
    (operator.imod, operator.mod),
    (operator.ipow, operator.pow),
    (operator.ilshift, operator.lshift),
    (operator.irshift, operator.rshift),
    (operator.iand, operator.and_),
    (operator.ior, operator.or_),
    (operator.ixor, operator.xor),
]


@pytest.mark.parametrize(("inplace", "plain"), INPLACE, ids=lambda o: o.__name__)
def test_inplace_operators_rebind_to_the_targets_result(
    inplace: Callable[[Any, Any], Any], plain: Callable[[Any, Any], Any]
) -> None:
    result = inplace(proxy_of(13), 3)
    assert result == plain(13, 3)
    assert type(result) is type(plain(13, 3))


def test_inplace_operator_mutates_a_mutable_target() -> None:
    target = [1]
    p = proxy_of(target)
    p += [2]
    assert target == [1, 2]
    assert p is target


# --- numpy -------------------------------------------------------------------


def test_numpy_interop() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(6, dtype=float).reshape(2, 3)
    p = proxy_of(array)
    assert isinstance(p, np.ndarray)
    assert np.sum(p) == 15.0
    assert np.shares_memory(np.asarray(p), array)
    assert np.array_equal(p + array, array * 2)
    assert np.array_equal(array + p, array * 2)
    assert np.array_equal(p * 2, array * 2)
    assert np.array_equal(p @ array.T, array @ array.T)
    assert np.array_equal(array @ proxy_of(array.T), array @ array.T)
    assert p.shape == (2, 3)
    assert len(p) == 2
    assert np.array_equal(p[1], array[1])
    assert np.array(p, copy=True) is not array
    assert np.array_equal(np.asarray(proxy_of([1, 2]), dtype=float), [1.0, 2.0])
    assert np.array_equal(np.array([proxy_of(1), proxy_of(2)]), [1, 2])


# --- pickling, copying, repr -------------------------------------------------

BIG = 4 * 1024 * 1024


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("resolved", [False, True])
def test_pickle_carries_only_the_factory(protocol: int, resolved: bool) -> None:
    factory = BigBytes(BIG)
    p = Proxy(factory)
    if resolved:
        assert len(p) == BIG
    data = pickle.dumps(p, protocol=protocol)
    assert len(data) < 500
    assert b"xxxxxxxx" not in data
    assert factory.calls == (1 if resolved else 0)

    copy_of_p = pickle.loads(data)
    assert type(copy_of_p) is Proxy
    assert not is_resolved(copy_of_p)
    calls_pickled = get_factory(copy_of_p).calls
    assert len(copy_of_p) == BIG
    assert get_factory(copy_of_p).calls == calls_pickled + 1
    assert factory.calls == (1 if resolved else 0)


def report_in_child(inbox: Any, outbox: Any) -> None:
    p = inbox.get(timeout=10)
    before = is_resolved(p)
    outbox.put((before, len(p), get_factory(p).calls))


def test_unpickled_proxy_resolves_in_another_process() -> None:
    context = multiprocessing.get_context("fork")
    inbox, outbox = context.Queue(), context.Queue()
    child = context.Process(target=report_in_child, args=(inbox, outbox))
    child.start()
    try:
        factory = BigBytes(BIG)
        inbox.put(Proxy(factory))
        assert outbox.get(timeout=10) == (False, BIG, 1)
        assert factory.calls == 0
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
        for queue in (inbox, outbox):
            queue.close()
            queue.join_thread()
    assert child.exitcode == 0


def test_dill_pickles_without_resolving() -> None:
    factory = BigBytes(BIG)
    p = Proxy(factory)
    data = dill.dumps(p)
    assert len(data) < 500
    assert factory.calls == 0
    assert dill.loads(data) == b"x" * BIG


def test_repr_does_not_resolve_unresolved_proxy() -> None:
    factory = Value([1])
    p = Proxy(factory)
    assert repr(p) == "<Proxy unresolved factory=Value(...)>"
    assert factory.calls == 0
    resolve(p)
    assert repr(p) == "[1]"


def test_copy_of_unresolved_proxy_does_not_resolve() -> None:
    factory = Value([1, 2])
    p = Proxy(factory)
    clone = copy.copy(p)
    assert type(clone) is Proxy
    assert clone is not p
    assert get_factory(clone) is factory
    assert not is_resolved(clone)
    assert factory.calls == 0


def test_copy_of_resolved_proxy_copies_the_target_shallowly() -> None:
    inner = [0]
    target = [inner]
    p = proxy_of(target)
    resolve(p)
    clone = copy.copy(p)
    assert is_resolved(clone)
    assert clone == target
    assert extract(clone) is not target
    assert extract(clone)[0] is inner


def test_deepcopy_of_unresolved_proxy_is_lazy_and_independent() -> None:
    target = [[1], [2]]
    factory = Value(target)
    p = Proxy(factory)
    clone = copy.deepcopy(p)
    assert type(clone) is Proxy
    assert not is_resolved(clone)
    assert factory.calls == 0
    assert clone == target
    assert factory.calls == 1
    assert extract(clone) is not target
    assert extract(clone)[0] is not target[0]
    assert not is_resolved(p)


def test_deepcopy_of_resolved_proxy_deep_copies_the_target() -> None:
    target = [[1], [2]]
    p = proxy_of(target)
    resolve(p)
    structure = {"a": p, "b": p}
    clone = copy.deepcopy(structure)
    assert clone["a"] is clone["b"]
    assert clone["a"] == target
    assert extract(clone["a"])[0] is not target[0]


# --- thread safety -----------------------------------------------------------


class GatedFactory:
    """Returns only once every thread has started touching the proxy."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.arrived = 0
        self.calls = 0
        self.condition = threading.Condition()

    def arrive(self) -> None:
        with self.condition:
            self.arrived += 1
            self.condition.notify_all()

    def __call__(self) -> list[int]:
        with self.condition:
            self.calls += 1
            everyone = self.condition.wait_for(
                lambda: self.arrived == self.threads, timeout=10
            )
        assert everyone, "not every thread reached the proxy"
        return [1, 2, 3]


def test_concurrent_first_use_calls_factory_once() -> None:
    threads = 32
    factory = GatedFactory(threads)
    p = Proxy(factory)
    barrier = threading.Barrier(threads)
    results: list[int] = []
    errors: list[BaseException] = []

    def touch() -> None:
        try:
            barrier.wait(timeout=10)
            factory.arrive()
            results.append(len(p) + p.count(1))
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)

    workers = [threading.Thread(target=touch) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    assert results == [4] * threads
    assert factory.calls == 1


# --- errors ------------------------------------------------------------------


def missing() -> MissingKeyError:
    return MissingKeyError("k1", "store-a")


@pytest.mark.parametrize(
    "use",
    [
        lambda p: p.x,
        len,
        lambda p: isinstance(p, int),
        lambda p: p + 1,
        lambda p: 1 + p,
        lambda p: p[0],
        str,
        hash,
        lambda p: p == 1,
        extract,
        resolve,
    ],
    ids=[
        "attr",
        "len",
        "isinstance",
        "add",
        "radd",
        "getitem",
        "str",
        "hash",
        "eq",
        "extract",
        "resolve",
    ],
)
def test_factory_error_surfaces_as_itself(use: Callable[[Any], Any]) -> None:
    error = missing()
    p = Proxy(Raising(error))
    with pytest.raises(MissingKeyError) as excinfo:
        use(p)
    assert excinfo.value is error
    frames = traceback.extract_tb(excinfo.value.__traceback__)
    assert frames[-1].name == "__call__"
    assert frames[-1].filename == __file__
    assert not is_resolved(p)


def test_failed_resolution_is_not_cached() -> None:
    factory = Raising(missing(), failures=1)
    p = Proxy(factory)
    with pytest.raises(MissingKeyError):
        len(p)
    assert p == "recovered"
    assert factory.calls == 2
    assert p.upper() == "RECOVERED"
    assert factory.calls == 2


def test_factory_touching_its_own_proxy_fails_instead_of_deadlocking() -> None:
    p: Proxy[int] = Proxy(lambda: len(p))
    with pytest.raises(RecursionError):
        len(p)
    assert not is_resolved(p)


def test_attribute_error_in_factory_becomes_resolve_error() -> None:
    cause = AttributeError("'NoneType' object has no attribute 'get'")
    p = Proxy(Raising(cause))
    for use in (lambda: p.x, lambda: len(p), lambda: isinstance(p, str)):
        with pytest.raises(ProxyResolveError, match="AttributeError") as excinfo:
            use()
        assert excinfo.value.__cause__ is cause


def test_hasattr_with_failing_factory_raises_instead_of_false() -> None:
    with pytest.raises(ProxyResolveError):
        hasattr(Proxy(Raising(AttributeError("inner"))), "anything")
    with pytest.raises(MissingKeyError):
        hasattr(Proxy(Raising(missing())), "anything")


def test_missing_attribute_of_target_is_a_normal_attribute_error() -> None:
    p = proxy_of(1)
    assert not hasattr(p, "no_such_attribute")
    with pytest.raises(AttributeError, match="no_such_attribute"):
        p.no_such_attribute  # noqa: B018


# --- helpers -----------------------------------------------------------------


def test_resolve_extract_and_get_factory() -> None:
    target = {"k": "v"}
    factory = Value(target)
    p = Proxy(factory)
    assert get_factory(p) is factory
    assert not is_resolved(p)
    resolve(p)
    assert is_resolved(p)
    resolve(p)
    assert factory.calls == 1
    assert extract(p) is target
    assert type(extract(p)) is dict


def test_extract_resolves_when_needed() -> None:
    target = [1]
    p = proxy_of(target)
    assert extract(p) is target
    assert is_resolved(p)


def test_set_target_resolves_without_calling_factory() -> None:
    factory = Value("from factory")
    p = Proxy(factory)
    _set_target(p, "from prefetch")
    assert is_resolved(p)
    assert p == "from prefetch"
    assert factory.calls == 0


@pytest.mark.parametrize(
    "helper", [is_resolved, resolve, extract, get_factory, lambda o: _set_target(o, 1)]
)
def test_helpers_reject_non_proxies(helper: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError, match="expected a Proxy, got an object of type list"):
        helper([1])


class _KnownFactory:
    """A factory that knows its target's class, like a store's factory."""

    target_class = list

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[int]:
        self.calls += 1
        return [1, 2, 3]


def test_known_class_answers_isinstance_and_absent_protocol_probes() -> None:
    factory = _KnownFactory()
    p = Proxy(factory)
    assert isinstance(p, list)
    assert not isinstance(p, dict)
    assert getattr(p, "__dask_future__", False) is False
    assert not hasattr(p, "__dask_graph__")
    assert factory.calls == 0
    assert hasattr(p, "__len__")  # the class has it: real use resolves
    assert factory.calls == 1
    assert p == [1, 2, 3]


def test_dask_token_comes_from_the_factory() -> None:
    factory = _KnownFactory()
    p = Proxy(factory)
    token = p.__dask_tokenize__()
    assert token == Proxy(factory).__dask_tokenize__()
    assert factory.calls == 0


class HeldOnFirstCall:
    """A factory whose first call waits until released; later calls return at once."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> list[int]:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(10)
        return [1, 2, 3]


def resolve_and_report(p: Proxy[list[int]], outbox: Any) -> None:
    outbox.put(len(p))


@pytest.mark.parametrize("contended", [False, True])
def test_child_forked_mid_resolution_resolves(contended: bool) -> None:
    # A parent thread holds the proxy's lock inside the factory at fork
    # time; the child must resolve the proxy itself instead of waiting on a
    # lock whose holder does not exist in the child.
    factory = HeldOnFirstCall()
    p: Proxy[list[int]] = Proxy(factory)
    resolver = threading.Thread(target=len, args=(p,))
    resolver.start()
    waiter = threading.Thread(target=len, args=(p,))
    try:
        assert factory.entered.wait(10)
        if contended:
            waiter.start()  # a second thread queued on the lock at fork time
        context = multiprocessing.get_context("fork")
        outbox = context.Queue()
        child = context.Process(target=resolve_and_report, args=(p, outbox))
        child.start()
        try:
            assert outbox.get(timeout=10) == 3
            child.join(timeout=10)
            assert child.exitcode == 0
        finally:
            if child.is_alive():
                child.kill()
                child.join(timeout=10)
            outbox.close()
            outbox.join_thread()
    finally:
        factory.release.set()
        resolver.join(timeout=10)
        if waiter.is_alive() or contended:
            waiter.join(timeout=10)
    assert not resolver.is_alive()
    assert len(p) == 3
    assert factory.calls == 1  # the parent resolved once; the child separately
