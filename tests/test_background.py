"""proxystore._background: the prefetch handle's states and the settings."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from proxystore import _background
from proxystore._background import Prefetch, PrefetchSettings, PrefetchState
from proxystore.exceptions import ConfigurationError
from tests.background import submit

TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _defaults() -> Iterator[None]:
    _background.reset_configuration()
    yield
    _background.reset_configuration()


class _Gate:
    """Holds a store's only slot on the background loop until opened."""

    def __init__(self, store: str) -> None:
        _background.configure(max_concurrency=1, store=store)
        self.store = store
        self.event = asyncio.Event()
        self.held = submit(self.event.wait(), store=store)

    def open(self) -> None:
        async def _open() -> None:
            self.event.set()

        submit(_open()).result(TIMEOUT)
        self.held.result(TIMEOUT)
        # Whatever queued behind the gate had its turn once this runs.
        submit(asyncio.sleep(0), store=self.store).result(TIMEOUT)


_runs: list[str] = []


async def _value() -> str:
    _runs.append("value")
    return "value"


def _job() -> Any:
    return _value()


def test_a_prefetch_runs_holds_its_slot_and_releases_it(store_name: str) -> None:
    prefetch: Prefetch[str] = _background.submit_held(_job, store=store_name)
    assert prefetch.future.result(TIMEOUT) == "value"
    assert prefetch.state is PrefetchState.RUNNING  # fetched, not yet used
    assert prefetch.started
    assert not prefetch.inherited
    prefetch.release()
    assert prefetch.state is PrefetchState.RELEASED
    prefetch.release()  # twice is harmless
    assert prefetch.state is PrefetchState.RELEASED


def test_a_queued_prefetch_can_be_claimed_and_never_runs(store_name: str) -> None:
    gate = _Gate(store_name)
    _runs.clear()
    try:
        prefetch: Prefetch[str] = _background.submit_held(_job, store=store_name)
        assert prefetch.state is PrefetchState.QUEUED
        assert prefetch.claim()
        assert prefetch.state is PrefetchState.CLAIMED
        assert not prefetch.claim()
        prefetch.release()  # a claimed fetch has no slots: nothing changes
        assert prefetch.state is PrefetchState.CLAIMED
    finally:
        gate.open()
    assert _runs == []
    assert not prefetch.started


def test_a_queued_prefetch_released_is_cancelled(store_name: str) -> None:
    gate = _Gate(store_name)
    _runs.clear()
    try:
        prefetch: Prefetch[str] = _background.submit_held(_job, store=store_name)
        prefetch.release()
        assert prefetch.state is PrefetchState.CANCELLED
        assert not prefetch.claim()
    finally:
        gate.open()
    assert _runs == []
    # Its slot was never taken: the next prefetch runs at once.
    after: Prefetch[str] = _background.submit_held(_job, store=store_name)
    assert after.future.result(TIMEOUT) == "value"
    after.release()


def test_a_released_slot_lets_the_next_prefetch_run(store_name: str) -> None:
    _background.configure(max_concurrency=1, store=store_name)
    first: Prefetch[str] = _background.submit_held(_job, store=store_name)
    assert first.future.result(TIMEOUT) == "value"
    second: Prefetch[str] = _background.submit_held(_job, store=store_name)
    assert second.state is PrefetchState.QUEUED  # behind first's slot
    first.release()
    assert second.future.result(TIMEOUT) == "value"
    second.release()


def test_settings_are_one_frozen_value_replaced_by_configure() -> None:
    before = _background.settings()
    assert before == PrefetchSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.max_concurrency = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        before.store_limits["x"] = 1  # type: ignore[index]
    _background.configure(max_concurrency=3, wait_timeout=2.0, face="async")
    _background.configure(max_concurrency=7, store="special")
    after = _background.settings()
    assert before == PrefetchSettings()  # the old snapshot is untouched
    assert after.max_concurrency == 3
    assert after.limit("special") == 7
    assert after.limit("other") == 3
    assert after.wait_timeout == 2.0
    assert after.face == "async"
    _background.reset_configuration()
    assert _background.settings() == PrefetchSettings()


@pytest.mark.parametrize(
    "options",
    [{"max_concurrency": 0}, {"max_concurrency": True}, {"face": "threads"}],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        _background.configure(**options)
    assert _background.settings() == PrefetchSettings()
