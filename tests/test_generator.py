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


def test_committed_sync_faces_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_convert_fixture_module() -> None:
    generator = _load()
    source = (
        "from proxystore.aio.base import Store\n"
        "_IS_SYNC = False\n"
        "class X(Store[str]):\n"
        "    async def _aget_bytes(self, key):\n"
        "        async with self.lock:\n"
        "            return await self.aget(key)\n"
        "    async def __aenter__(self):\n"
        "        await self.aclose()\n"
    )
    uses = [0] * len(generator.RULES)
    output = generator.convert(source, "fixture", uses)
    assert output.splitlines()[0].startswith(generator.HEADER_MARK)
    assert "from proxystore.store.base import Store" in output
    assert "_IS_SYNC = True" in output
    assert "def _get_bytes(self, key):" in output
    assert "with self.lock:" in output
    assert "return self.get(key)" in output
    assert "def __enter__(self):" in output
    assert "self.close()" in output
    assert "async" not in output
    assert "await" not in output


def test_words_that_only_look_like_coroutines_are_kept() -> None:
    generator = _load()
    uses = [0] * len(generator.RULES)
    output = generator.convert("agent = asset + settle + reset\n", "fixture", uses)
    assert output.splitlines()[1] == "agent = asset + settle + reset"


def test_unused_rule_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    generator = _load()
    monkeypatch.setattr(
        generator, "RULES", [*generator.RULES, (r"\bnever_used\b", "x")]
    )
    with pytest.raises(SystemExit, match="never used"):
        generator.generate(tmp_path)


def test_orphan_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    generator = _load()
    output = tmp_path / "store"
    output.mkdir()
    (output / "gone.py").write_text(generator.HEADER.format(name="gone") + "x = 1\n")
    monkeypatch.setattr(generator, "OUTPUT_DIR", output)
    assert [path.name for path in generator.orphans()] == ["gone.py"]
