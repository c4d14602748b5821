"""The async FileStore: each operation is one worker-thread hop, none on the loop."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import proxystore.aio.file as file_module
from proxystore.aio.file import FileStore

BLOCKING = ("replace", "remove", "stat", "fstat", "utime", "fsync")


def test_every_operation_is_one_hop_with_no_file_call_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []  # (what, thread)

    def recording(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.get_ident()))
            return function(*args, **kwargs)

        return recorded

    real_to_thread = file_module.ato_thread

    async def counted(function: Callable[..., Any], *args: Any) -> Any:
        calls.append(("hop", threading.get_ident()))
        return await real_to_thread(function, *args)

    store = FileStore("one-hop", tmp_path, durable=True)
    for name in BLOCKING:
        monkeypatch.setattr(os, name, recording(name, getattr(os, name)))
    monkeypatch.setattr(os.path, "exists", recording("exists", os.path.exists))
    monkeypatch.setattr(file_module, "open", recording("open", open), raising=False)
    monkeypatch.setattr(file_module, "ato_thread", counted)

    async def main() -> dict[str, list[tuple[str, int]]]:
        done: dict[str, list[tuple[str, int]]] = {}

        async def step(label: str, operation: Any) -> Any:
            calls.clear()
            result = await operation
            done[label] = list(calls)
            return result

        key = await step("set", store.aset(b"x" * 100))
        await step("get", store.aget(key))
        await step("timestamp", store.aget_timestamp(key))
        await step("exists", store.aexists(key))
        await step("evict", store.aevict(key))
        done["loop"] = [("loop", threading.get_ident())]
        return done

    done = asyncio.run(main())
    loop_thread = done.pop("loop")[0][1]
    for label, recorded in done.items():
        hops = [what for what, _ in recorded if what == "hop"]
        assert hops == ["hop"], f"{label}: {len(hops)} thread hops"
        on_loop = [
            what for what, thread in recorded if what != "hop" and thread == loop_thread
        ]
        assert on_loop == [], f"{label} blocked the loop with {on_loop}"
        assert len(recorded) > 1, f"{label} did no file work"
