"""scripts/generate_sync.py: the committed sync faces are what it produces."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "generate_sync.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_sync", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _load()


def _convert(source: str, names: dict[str, str] | None = None) -> str:
    renames = generator.derive_renames([], [])
    if names is None:
        names = {
            name: generator.sync_name(name)
            for name in generator.coroutine_names(source)
            if generator.sync_name(name) is not None
        }
    renames.names.update(names)
    text: str = generator.convert(source, "fixture.py", renames)
    return text


def test_committed_sync_faces_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "leak no async code" in result.stdout


def test_renames_are_derived_from_the_async_defs() -> None:
    source = (
        "from proxystore.aio.base import Store\n"
        "_IS_SYNC = False\n"
        "class X(Store[str]):\n"
        "    async def _awrite(self, key):\n"
        "        async with self.lock:\n"
        "            return await self._aexecute(key)\n"
        "    async def _aexecute(self, key):\n"
        "        return key\n"
        "    async def __aenter__(self):\n"
        "        await self._awrite(1)\n"
    )
    output = _convert(source)
    assert output.splitlines()[0].startswith(generator.HEADER_MARK)
    assert "from proxystore.store.base import Store" in output
    assert "_IS_SYNC = True" in output
    assert "def _write(self, key):" in output
    assert "with self.lock:" in output
    assert "return self._execute(key)" in output
    assert "def __enter__(self):" in output
    assert "self._write(1)" in output
    assert "async" not in output
    assert "await" not in output


def test_an_a_word_without_an_async_def_is_kept() -> None:
    # No hand-kept verb list: `_aget_thing` is renamed only if a coroutine
    # of that name exists, and words that merely start with "a" never are.
    output = _convert("agent = asset + settle + _aget_thing\n", names={})
    assert output.splitlines()[1] == "agent = asset + settle + _aget_thing"


def test_derived_renames_cover_the_drivers_helpers_and_compat_pairs() -> None:
    renames = generator.derive_renames(generator.MODULES, generator.COMPAT_MODULES)
    names = renames.names
    assert names["_awrite"] == "_write"
    assert names["_aexecute"] == "_execute"
    assert names["__aenter__"] == "__enter__"
    assert names["aclose_all"] == "close_all"  # ClientsPerLoop's twin methods
    assert names["asleep"] == "sleep"
    assert names["ASemaphore"] == "Semaphore"
    assert names["acurrent_loop"] == "current_loop"
    assert names["ato_thread"] == "to_thread"


def test_a_compat_name_without_its_twin_is_an_error() -> None:
    source = "async def afetch():\n    pass\n\nasleep = 1\nsleep = 2\n"
    with pytest.raises(generator.GeneratorError, match="afetch"):
        generator.compat_pairs(source, "compat.py")
    assert generator.compat_pairs("asleep = 1\nsleep = 2\n", "c.py") == {
        "asleep": "sleep"
    }


def test_async_only_blocks_are_dropped() -> None:
    source = (
        "x = 1\n"
        "# async-only: begin\n"
        "from proxystore.aio._redis_async import QueuedGets\n"
        "# async-only: end\n"
        "y = 2\n"
    )
    assert _convert(source).splitlines()[1:] == ["x = 1", "y = 2"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("# async-only: begin\nx = 1\n", "never ends"),
        ("x = 1\n# async-only: end\n", "without begin"),
        (
            "# async-only: begin\n# async-only: begin\n# async-only: end\n",
            "nested",
        ),
        ("# async-only: begin\n" + "x = 1\n" * 11 + "# async-only: end\n", "11 lines"),
    ],
)
def test_malformed_async_only_blocks_are_errors(source: str, message: str) -> None:
    with pytest.raises(generator.GeneratorError, match=message):
        generator.drop_async_only(source, "fixture.py")


def test_both_names_of_a_pair_imported_together_become_one() -> None:
    source = (
        "from proxystore._compat import (\n    aremove_files,\n    remove_files,\n)\n"
    )
    output = _convert(source, names={"aremove_files": "remove_files"})
    assert output.splitlines()[1:] == [
        "from proxystore._compat import (",
        "    remove_files,",
        ")",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "import asyncio",
        "    x = await y",
        '    """Runs in the async face."""',
        "    # the async",
        "        self._awrite(commands)",
        "from proxystore.aio._redis_async import QueuedGets",
        "import aiofiles",
        "client = httpx.AsyncClient()",
    ],
)
def test_leaks_are_found(line: str) -> None:
    found = generator.leaks(f"# header\n{line}\n", {"_awrite"}, generator.ASYNC_ONLY)
    assert len(found) == 1
    assert "line 2" in found[0]


def test_the_face_name_and_ordinary_words_are_no_leak() -> None:
    text = (
        'face = "sync" if sync else "async"\n'
        "self._write(commands)\n"
        "asynchronous = awaited = 1\n"
    )
    assert generator.leaks(text, {"_awrite"}, generator.ASYNC_ONLY) == []


def test_committed_generated_files_contain_no_async_trace() -> None:
    renames = generator.derive_renames(generator.MODULES, generator.COMPAT_MODULES)
    names = generator._leak_names(renames)
    for source, output in generator.mapping().items():
        if not (ROOT / source).exists():
            continue
        text = (ROOT / output).read_text()
        assert generator.leaks(text, names, generator.ASYNC_ONLY) == [], output


def test_unused_rule_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        generator, "RULES", [*generator.RULES, (r"\bnever_used\b", "x")]
    )
    with pytest.raises(generator.GeneratorError, match="never used"):
        generator.generate(tmp_path)


def test_orphan_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = tmp_path / "proxystore" / "store"
    store.mkdir(parents=True)
    (store / "gone.py").write_text(
        generator.HEADER.format(source="proxystore/aio/gone.py") + "x = 1\n"
    )
    (store / "kept.py").write_text(
        generator.HEADER.format(source="proxystore/aio/kept.py") + "x = 1\n"
    )
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    monkeypatch.setattr(
        generator, "MODULES", {"proxystore/aio/kept.py": "proxystore/store/kept.py"}
    )
    monkeypatch.setattr(generator, "TEST_MODULES", {})
    assert [path.name for path in generator.orphans()] == ["gone.py"]


def test_every_module_of_both_faces_is_in_one_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert generator.unlisted() == []
    aio = tmp_path / "aio"
    store = tmp_path / "store"
    aio.mkdir()
    store.mkdir()
    for name in ["base", "resolve", "new_driver"]:
        (aio / f"{name}.py").touch()
    for name in ["base", "utils", "stray"]:
        (store / f"{name}.py").touch()
    monkeypatch.setattr(generator, "SOURCE_DIR", aio)
    monkeypatch.setattr(generator, "OUTPUT_DIR", store)
    monkeypatch.setattr(
        generator, "MODULES", {"proxystore/aio/base.py": "proxystore/store/base.py"}
    )
    monkeypatch.setattr(generator, "ASYNC_ONLY", ("resolve",))
    monkeypatch.setattr(generator, "HAND_WRITTEN", ("utils",))
    problems = generator.unlisted()
    assert any("new_driver.py is in no list" in p for p in problems)
    assert any(
        "stray.py is neither generated nor in HAND_WRITTEN" in p for p in problems
    )
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("loop = None if _IS_SYNC else get_loop()\n", "face ternary"),
        ("if not _IS_SYNC:\n    pass\n", "not _IS_SYNC"),
    ],
)
def test_a_source_never_tests_its_face_for_a_primitive(line: str, message: str) -> None:
    with pytest.raises(generator.GeneratorError, match=message):
        _convert(line)
    _convert("if _IS_SYNC:\n    refresh()\n")  # a sync-only workaround is allowed
