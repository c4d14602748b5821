"""The process-wide background event loop that runs prefetches.

One daemon thread runs one event loop, started on the first prefetch, and a
few daemon worker threads run blocking calls for it (`run_blocking`, and the
loop's default executor, which `aiofiles` and `asyncio.to_thread` use). A
forked child forgets the parent's loop (its threads do not exist in the child)
and starts its own on first need. At interpreter exit the pending tasks are
cancelled, the loop is stopped and its thread joined, all within about a
second; a thread stuck in a blocking call (a read from a hung file system, a
deserializer that never returns) is a daemon and never holds the exit up.

A prefetch (`submit_held`) runs under its store's semaphore and keeps its
slot after it finishes, until its result is used (`Prefetch.release`): so at
most `max_concurrency` objects per store are being fetched or waiting to be
used, which bounds a consumer's memory however many proxies it receives, and
fetches happen in the order proxies arrive. One `Prefetch` handle owns the
fetch's future, its slots and the id of the process that made it, and moves
through explicit states (`PrefetchState`). A queued prefetch holds its owner
weakly and is cancelled when the owner is dropped, and whatever a prefetch
raises, `BaseException`s included, goes to its future, never out of the loop.
The limits, wait timeout and face are one frozen `PrefetchSettings`, replaced
whole by `configure`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import enum
import functools
import os
import queue
import threading
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Generic, Literal, TypeVar

from proxystore._validate import check_seconds
from proxystore.exceptions import ConfigurationError

T = TypeVar("T")

DEFAULT_MAX_CONCURRENCY = 2
"""Prefetches per store in flight or fetched and not yet used, unless configured.

Low on purpose: a consumer uses its items in order, fetches running side by
side share the CPU and the link (each finishes later, the first item waits
longest), and every fetched object waiting to be used costs memory (see
benchmarks/bench_pipeline.py). Raise it for stores whose fetches are
dominated by latency rather than bytes."""

DEFAULT_WAIT_TIMEOUT = 300.0
"""Seconds a sync first use waits for a pending prefetch before giving up."""

FetchFace = Literal["async", "sync"]
"""How a background fetch reaches the store: its async face on the loop, or
its sync face in a worker thread of the loop."""

# Measured (benchmarks/bench_pipeline.py): for large objects the sync drivers
# cost less CPU per byte than the async ones (redis.asyncio's reads, aiofiles'
# thread hops), and a background fetch competes with the consumer's compute.
DEFAULT_FETCH_FACE: FetchFace = "sync"

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
# At interpreter exit: pending fetches are cancelled within this, and a loop
# stuck in a blocking call is abandoned (its threads are daemons).
_EXIT_TIMEOUT = 1.0
_WORKERS = 8


@dataclasses.dataclass(frozen=True)
class PrefetchSettings:
    """How background fetches run; `configure` replaces the whole object."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Fetches per store in flight or fetched and not yet used."""
    store_limits: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    """Per-store overrides of `max_concurrency` (read-only)."""
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    """Seconds a sync first use waits for a pending prefetch."""
    face: FetchFace = DEFAULT_FETCH_FACE
    """Which face of a store background fetches go through."""

    def limit(self, store: str) -> int:
        """Return how many fetches from `store` may be in flight at once."""
        return self.store_limits.get(store, self.max_concurrency)


_config_lock = threading.Lock()
_settings = PrefetchSettings()


_Job = tuple[Callable[[], Any], Callable[[tuple[bool, Any]], None]]


class _Workers:
    """Daemon threads running blocking calls for the loop, started as needed.

    Not a `ThreadPoolExecutor`: its threads are joined at interpreter exit,
    so one blocking call that hangs would hang the exit too.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.idle = 0
        self.lock = threading.Lock()

    def run(self, loop: asyncio.AbstractEventLoop, function: Callable[[], T]) -> Any:
        future: asyncio.Future[T] = loop.create_future()

        def settle(outcome: tuple[bool, Any]) -> None:
            # A loop closed meanwhile raises RuntimeError: nobody waits then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, outcome)

        self.put(function, settle)
        return future

    def put(
        self, function: Callable[[], Any], settle: Callable[[tuple[bool, Any]], None]
    ) -> None:
        """Run `function` in a worker and pass its outcome to `settle` there."""
        with self.lock:
            if self.idle == 0 and len(self.threads) < self.size:
                thread = threading.Thread(
                    target=self._work,
                    name=f"proxystore-background-worker-{len(self.threads)}",
                    daemon=True,
                )
                self.threads.append(thread)
                thread.start()
        self.jobs.put((function, settle))

    def _work(self) -> None:
        _local.worker = True
        while True:
            with self.lock:
                self.idle += 1
            job = self.jobs.get()
            with self.lock:
                self.idle -= 1
            if job is None:
                return
            function, settle = job
            try:
                outcome: tuple[bool, Any] = (True, function())
            except BaseException as err:
                outcome = (False, err)
            settle(outcome)
            # An idle worker must not keep the last call's objects alive.
            del job, function, settle, outcome

    def stop(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """The background loop's default executor, on the loop's daemon workers.

    `aiofiles` and `asyncio.to_thread` run blocking calls in the loop's
    default executor; a standard one's threads are joined at interpreter
    exit, so a read blocked forever (a hung NFS mount, a FIFO without a
    writer) would keep the process from exiting. Only `submit` and
    `shutdown` are used; the base class is what `set_default_executor`
    insists on, none of its threads are ever started.
    """

    def __init__(self, workers: _Workers) -> None:
        super().__init__(max_workers=1)
        self._workers = workers

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def settle(outcome: tuple[bool, Any]) -> None:
            if not future.set_running_or_notify_cancel():
                return
            ok, value = outcome
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        self._workers.put(functools.partial(fn, *args, **kwargs), settle)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # Never waits: a call blocked in a worker must not hold up the loop's
        # shutdown (and with it the interpreter's exit).
        return


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_local = threading.local()


class _Runner:
    """The loop, its threads, and the per-store semaphores (used only on the loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.workers = _Workers(_WORKERS)
        self.semaphores: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self.pid = os.getpid()
        self._ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="proxystore-background", daemon=True
        )
        self.thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError(
                f"proxystore background loop did not start within {_START_TIMEOUT}s"
            )

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_default_executor(_DaemonExecutor(self.workers))
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                # No shutdown_default_executor(): it starts a thread, which
                # Python 3.12+ refuses at interpreter exit, to wait on an
                # executor that never waits; close() shuts it down in place.
                self.loop.close()

    def semaphore(self, store: str) -> asyncio.Semaphore:
        limit = max_concurrency(store)
        entry = self.semaphores.get(store)
        if entry is None or entry[0] != limit:
            # A changed limit applies to fetches that start from now on;
            # those holding the old semaphore release it as they finish.
            entry = self.semaphores[store] = (limit, asyncio.Semaphore(limit))
        return entry[1]

    async def run_prefetch(
        self,
        prefetch: Prefetch[T],
        store: str,
        limiter: asyncio.Semaphore | None,
        job: Callable[[], Coroutine[Any, Any, T] | None],
    ) -> None:
        result = prefetch.future
        try:
            value = await self._run_prefetch(prefetch, store, limiter, job)
        except asyncio.CancelledError:
            result.cancel()
            raise
        except BaseException as err:
            # Whatever the payload raised (SystemExit and KeyboardInterrupt
            # included) belongs to that proxy's first use. Raised out of a
            # task, those two would stop the loop and every later prefetch.
            _deliver(result, False, err)
            return
        _deliver(result, True, value)

    async def _run_prefetch(
        self,
        prefetch: Prefetch[T],
        store: str,
        limiter: asyncio.Semaphore | None,
        job: Callable[[], Coroutine[Any, Any, T] | None],
    ) -> T | None:
        acquired: list[asyncio.Semaphore] = []
        try:
            # The caller's limiter first, so a job waiting on it holds no
            # store slot.
            for semaphore in (limiter, self.semaphore(store)):
                if semaphore is not None:
                    await semaphore.acquire()
                    acquired.append(semaphore)
        except BaseException:
            for semaphore in acquired:
                semaphore.release()
            raise
        if not prefetch._start(acquired, self.loop):
            for semaphore in acquired:
                semaphore.release()
            return None
        try:
            coro = job()
            if coro is None:  # its owner was dropped meanwhile
                prefetch.release()
                return None
            return await coro
        except BaseException:
            prefetch.release()
            raise

    async def cancel_pending(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self, timeout: float) -> None:
        if not self.thread.is_alive():
            return
        # One deadline for the whole stop: a loop thread stuck in a blocking
        # call (a deserializer that never returns) is a daemon and is left.
        deadline = time.monotonic() + timeout
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            cancelled = asyncio.run_coroutine_threadsafe(
                self.cancel_pending(), self.loop
            )
            concurrent.futures.wait([cancelled], max(0.0, deadline - time.monotonic()))
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        self.workers.stop()


def _deliver(future: concurrent.futures.Future[Any], ok: bool, value: Any) -> None:
    # The future may have been cancelled by its owner meanwhile.
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class PrefetchState(enum.Enum):
    """Where a `Prefetch` is; the last three are final."""

    QUEUED = "queued"
    """Waiting on the loop for its slots (the limiter's, then the store's)."""
    RUNNING = "running"
    """Holds its slots: fetching, or fetched and not yet used."""
    CLAIMED = "claimed"
    """Taken over by its first use before it started: it never runs."""
    CANCELLED = "cancelled"
    """Dropped before it started (its proxy was, say): it never runs."""
    RELEASED = "released"
    """It ran, and its slots are back (used, failed, or dropped after)."""


class Prefetch(Generic[T]):
    """One background fetch: its future, its slots and the process that made it.

    Made by `submit_held`. The fetch waits for its slots (`QUEUED`), runs
    and keeps the slots after it finishes (`RUNNING`) until `release` is
    called, normally when its result is used (`RELEASED`). A fetch still
    queued can be taken over by its first use (`claim`, `CLAIMED`), which
    then fetches itself, or dropped (`release`, `CANCELLED`); either way it
    never runs. A handle inherited through fork belongs to the parent: it
    is never waited on nor released in the child (`inherited`).
    """

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[T | None] = concurrent.futures.Future()
        """The fetch's result or what it raised; cancelled (or None) if it never ran."""
        self.pid = os.getpid()
        """The process that made it (and whose loop runs it)."""
        self._lock = threading.Lock()
        self._state = PrefetchState.QUEUED
        self._slots: list[asyncio.Semaphore] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # The queued fetch's task: cancelled when it will never be needed,
        # so a queue of dropped proxies' fetches does not wait for slots.
        self._task: concurrent.futures.Future[Any] | None = None

    @property
    def state(self) -> PrefetchState:
        """The current state."""
        return self._state

    @property
    def started(self) -> bool:
        """Whether the fetch got its slots and ran (or is running)."""
        return self._state in (PrefetchState.RUNNING, PrefetchState.RELEASED)

    @property
    def inherited(self) -> bool:
        """Whether this process is not the one that made it (a forked child)."""
        return self.pid != os.getpid()

    def claim(self) -> bool:
        """Take over a fetch that has not started: return True if it never will."""
        with self._lock:
            if self._state is not PrefetchState.QUEUED:
                return False
            self._state = PrefetchState.CLAIMED
            task = self._task
        _cancel(task)
        return True

    def release(self) -> None:
        """Give the slots back (safe from any thread, and more than once).

        A fetch still queued is cancelled: it will never run.
        """
        if self.inherited:
            return  # the slots belong to the parent's loop
        with self._lock:
            was = self._state
            if was is PrefetchState.QUEUED:
                self._state = PrefetchState.CANCELLED
            elif was is PrefetchState.RUNNING:
                self._state = PrefetchState.RELEASED
            else:
                return
            slots, self._slots = self._slots, []
            loop, task = self._loop, self._task
        if was is PrefetchState.QUEUED:
            _cancel(task)
        if slots and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                for semaphore in slots:
                    loop.call_soon_threadsafe(semaphore.release)

    def _start(
        self, slots: list[asyncio.Semaphore], loop: asyncio.AbstractEventLoop
    ) -> bool:
        """On the loop, slots acquired: run unless claimed or dropped meanwhile."""
        with self._lock:
            if self._state is not PrefetchState.QUEUED:
                return False
            self._state = PrefetchState.RUNNING
            self._slots = slots
            self._loop = loop
            return True

    def _attach(self, task: concurrent.futures.Future[Any]) -> None:
        """Record the loop task; cancel it if the fetch was dropped before."""
        with self._lock:
            self._task = task
            never = self._state in (PrefetchState.CLAIMED, PrefetchState.CANCELLED)
        if never:
            _cancel(task)

    def __repr__(self) -> str:
        return f"Prefetch(state={self._state.value}, pid={self.pid})"


_lock = threading.Lock()
_runner: _Runner | None = None
# Loops inherited through fork: unusable in the child, kept referenced so that
# collecting them does not try to close a loop whose thread never existed here.
_orphans: list[_Runner] = []


def _get_runner() -> _Runner:
    global _runner
    runner = _runner
    if runner is not None:
        return runner
    with _lock:
        if _runner is None:
            _runner = _Runner()
        return _runner


def run_on_loop(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run `coro` on the background loop; its outcome comes in the returned future.

    For library work that must not run on the caller's thread (e.g. an
    engine's event loop); the loop's shutdown cancels it.
    """
    return asyncio.run_coroutine_threadsafe(coro, _get_runner().loop)


async def run_blocking(function: Callable[[], T]) -> T:
    """Run a blocking call in a background worker thread and await its result.

    Only for coroutines running on the background loop.
    """
    runner = _get_runner()
    result: T = await runner.workers.run(runner.loop, function)
    return result


def submit_held(
    job: Callable[[], Coroutine[Any, Any, T]],
    *,
    store: str,
    limiter: asyncio.Semaphore | None = None,
) -> Prefetch[T]:
    """Run `job()` under `store`'s limit, keeping its slot until released.

    Args:
        job: Makes the coroutine to run once the slots are free (it is never
            made if the fetch is claimed before it starts).
        store: The store whose limit applies.
        limiter: Another semaphore to hold along with the store's.

    Returns:
        The fetch's handle: `Prefetch.release` frees the slots (the fetch
        releases them itself if it fails). Its future holds whatever the
        job raised, `BaseException`s included; it is cancelled (or holds
        None) if the fetch was claimed or dropped before it ran. The job is
        held weakly when it is a bound method: dropping its owner lets the
        owner's finalizer release the handle, which cancels the queued fetch.
    """
    runner = _get_runner()
    prefetch: Prefetch[T] = Prefetch()
    task = asyncio.run_coroutine_threadsafe(
        runner.run_prefetch(prefetch, store, limiter, _weakly(job)), runner.loop
    )
    prefetch._attach(task)
    return prefetch


def _weakly(
    job: Callable[[], Coroutine[Any, Any, T]],
) -> Callable[[], Coroutine[Any, Any, T] | None]:
    # A queued job must not keep its owner (a proxy's factory) alive: the
    # owner's finalizer is what cancels the job when the proxy is dropped.
    if not isinstance(job, types.MethodType):
        return job
    method = weakref.WeakMethod(job)

    def call() -> Coroutine[Any, Any, T] | None:
        bound = method()
        return None if bound is None else bound()

    return call


def _cancel(task: concurrent.futures.Future[Any] | None) -> None:
    if task is not None:
        with contextlib.suppress(RuntimeError):  # the loop already closed
            task.cancel()


def in_background_thread() -> bool:
    """Return whether the caller runs on the background loop or one of its workers.

    Such a caller must never block waiting on background work: the thread it
    would block may be the one that work needs.
    """
    if getattr(_local, "worker", False):
        return True
    runner = _runner
    return runner is not None and threading.current_thread() is runner.thread


def settings() -> PrefetchSettings:
    """Return the current settings (an immutable snapshot)."""
    return _settings


def max_concurrency(store: str) -> int:
    """Return how many fetches from `store` may be in flight at once."""
    return _settings.limit(store)


def wait_timeout() -> float:
    """Return the seconds a sync first use waits for a pending prefetch."""
    return _settings.wait_timeout


def fetch_face() -> FetchFace:
    """Return which face of a store background fetches go through."""
    return _settings.face


def configure(
    *,
    max_concurrency: int | None = None,
    store: str | None = None,
    wait_timeout: float | None = None,
    face: FetchFace | None = None,
) -> None:
    """Change the background fetch limits.

    Args:
        max_concurrency: Fetches in flight at once, per store. Applies to
            `store` only if given, else to every store without its own limit.
        store: The store name `max_concurrency` applies to.
        wait_timeout: Seconds a sync first use waits for a pending prefetch.
        face: Fetch through the store's ``"async"`` face on the loop, or its
            ``"sync"`` face in a worker thread (faster for clients whose
            async reads of large values are slow).

    Raises:
        ConfigurationError: If a limit is not a positive number.
    """
    global _settings
    if face is not None and face not in ("async", "sync"):
        raise ConfigurationError(f"face must be 'async' or 'sync', got {face!r}")
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int)
        or isinstance(max_concurrency, bool)
        or max_concurrency < 1
    ):
        raise ConfigurationError(
            f"max_concurrency must be an int >= 1, got {max_concurrency!r}"
        )
    if wait_timeout is not None:
        check_seconds(wait_timeout, "timeout", "configure_prefetch")
    with _config_lock:
        changes: dict[str, Any] = {}
        if max_concurrency is not None:
            if store is None:
                changes["max_concurrency"] = max_concurrency
            else:
                limits = {**_settings.store_limits, store: max_concurrency}
                changes["store_limits"] = types.MappingProxyType(limits)
        if wait_timeout is not None:
            changes["wait_timeout"] = wait_timeout
        if face is not None:
            changes["face"] = face
        _settings = dataclasses.replace(_settings, **changes)


def reset_configuration() -> None:
    """Restore the default limits, timeout and face."""
    global _settings
    with _config_lock:
        _settings = PrefetchSettings()


def shutdown(timeout: float = _STOP_TIMEOUT) -> None:
    """Cancel pending work, stop the background loop and join its thread.

    A later prefetch starts a new loop. Called at interpreter exit.
    """
    global _runner
    with _lock:
        runner, _runner = _runner, None
    if runner is not None and runner.pid == os.getpid():
        runner.stop(timeout)


def _forget_after_fork() -> None:
    global _config_lock, _local, _lock, _runner
    # The parent's locks may have been held by another thread at fork time.
    _config_lock = threading.Lock()
    _lock = threading.Lock()
    _local = threading.local()
    if _runner is not None:
        _orphans.append(_runner)
    _runner = None


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(shutdown, _EXIT_TIMEOUT)
