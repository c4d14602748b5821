"""scripts/import_graph.py: proxystore's imports point one way."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_cycle_and_the_core_reaches_no_face() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("0 import cycles among ")


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_type_only_and_lazy_imports_make_cycles(tmp_path: Path) -> None:
    graph_script = _load()
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "def f():\n    from . import c\n",
            "c.py": "import pkg.a\n",
            "d.py": "from pkg import a\n",
        },
    )
    graph = graph_script.import_graph(package)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.d"] == {"pkg.a"}
    assert graph_script.cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_a_package_init_import_from_its_own_module_is_no_edge(tmp_path: Path) -> None:
    graph_script = _load()
    package = _package(
        tmp_path,
        {
            "__init__.py": "from pkg.sub import x\n",
            "sub/__init__.py": "from pkg.sub.x import X\n",
            "sub/x.py": "from pkg.sub import helper\n",
            "sub/helper.py": "",
        },
    )
    graph = graph_script.import_graph(package)
    assert graph["pkg.sub.x"] == {"pkg.sub.helper"}
    assert graph_script.cycles(graph) == []
