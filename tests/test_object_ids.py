"""Object ids (`_shared.new_object_id`): drawn from a pool of CSPRNG output,
each handed out once across threads and across a fork."""

from __future__ import annotations

import os
import re
import select
import sys
import threading

import pytest

from proxystore import _shared

TIMEOUT = 30.0
HEX_ID = re.compile(r"[0-9a-f]{32}")
# More than one pool's worth, so every test crosses refills.
MANY = 3 * _shared._POOL_IDS + 7


def test_ids_are_32_hex_characters_and_never_repeat() -> None:
    ids = [_shared.new_object_id() for _ in range(MANY)]
    assert all(HEX_ID.fullmatch(key) for key in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_get_the_same_id() -> None:
    threads_count, per_thread = 8, MANY
    results: list[list[str]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count)

    def draw(out: list[str]) -> None:
        start.wait(TIMEOUT)
        for _ in range(per_thread):
            out.append(_shared.new_object_id())

    threads = [
        threading.Thread(target=draw, args=(out,), daemon=True) for out in results
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
    finally:
        sys.setswitchinterval(interval)
    drawn = [key for out in results for key in out]
    assert len(drawn) == threads_count * per_thread
    assert len(set(drawn)) == len(drawn)


def _ids_from_a_forked_child(count: int) -> list[str]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(
                write, " ".join(_shared.new_object_id() for _ in range(count)).encode()
            )
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([read], [], [], TIMEOUT)
            assert ready, "the forked child sent nothing"
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode().split()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    _shared.new_object_id()  # the parent now holds a partly used pool
    child = _ids_from_a_forked_child(MANY)
    parent = [_shared.new_object_id() for _ in range(MANY)]
    assert len(child) == MANY
    assert all(HEX_ID.fullmatch(key) for key in child)
    assert not set(child) & set(parent)
    assert len(set(child)) == len(child)
