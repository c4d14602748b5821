"""The sync face imports no heavy module it does not need (start-up time).

Each check runs in a fresh interpreter: `sys.modules` there shows what the
code imported, whatever other tests imported here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("dill", "asyncio", "ssl", "proxystore.aio")


def imported_after(code: str, tmp_path: Path) -> list[str]:
    """Run `code` in a fresh interpreter; return which `HEAVY` modules it imported."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    found: list[str] = json.loads(completed.stdout.splitlines()[-1])
    return found


def test_import_imports_nothing_heavy(tmp_path: Path) -> None:
    assert imported_after("import proxystore", tmp_path) == []


def test_sync_local_and_file_stores_import_nothing_heavy(tmp_path: Path) -> None:
    code = f"""
    import pickle
    import proxystore
    from proxystore.store import init_store

    local = init_store("local", name="lazy-local")
    assert local.get(local.set(b"x" * 100)) == b"x" * 100
    assert local.get(local.set({{"a": [1, 2.0]}})) == {{"a": [1, 2.0]}}
    assert pickle.loads(pickle.dumps(local.proxy([1, 2, 3]))) == [1, 2, 3]
    file = init_store("file", name="lazy-file", store_dir={str(tmp_path)!r})
    assert file.get(file.set({{"a": 1}})) == {{"a": 1}}
    assert pickle.loads(pickle.dumps(file.proxy([1]))) == [1]
    file.close()
    """
    assert imported_after(code, tmp_path) == []


def test_dill_is_imported_for_what_pickle_cannot_take(tmp_path: Path) -> None:
    code = """
    from proxystore.store import init_store

    store = init_store("local", name="lazy-dill")
    double = store.get(store.set(lambda x: 2 * x))
    assert double(2) == 4
    """
    assert "dill" in imported_after(code, tmp_path)


def test_the_async_face_imports_asyncio(tmp_path: Path) -> None:
    code = """
    import asyncio
    from proxystore import aio

    async def main() -> None:
        store = aio.init_store("local", name="lazy-aio")
        assert await store.aget(await store.aset(b"x")) == b"x"

    asyncio.run(main())
    """
    found = imported_after(code, tmp_path)
    assert "asyncio" in found
    assert "dill" not in found
