"""Object ids: unguessable, unique, distinct across forks."""

from __future__ import annotations

import multiprocessing
import re

import pytest

from proxystore._shared import new_object_id

pytestmark = pytest.mark.timeout(30)


def test_ids_are_32_hex_characters_with_nothing_shared() -> None:
    ids = [new_object_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # No per-process prefix or counter: knowing one id reveals no other.
    assert len({i[:8] for i in ids}) > 9_900
    assert len({i[-8:] for i in ids}) > 9_900


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_object_id() for _ in range(100)])


def test_forked_children_never_repeat_the_parent() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    children = [context.Process(target=_child_ids, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    mine = [new_object_id() for _ in range(100)]
    theirs = [queue.get(timeout=20) for _ in children]
    for child in children:
        child.join(20)
        assert child.exitcode == 0
    every = mine + theirs[0] + theirs[1]
    assert len(set(every)) == 300
