"""examples/async_service.py: a real asyncio TCP service on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("numpy")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "async_service.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("async_service_example", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.example
@pytest.mark.timeout(60)
async def test_service_answers_with_proxies_the_client_resolves(
    tmp_path: Path,
) -> None:
    example = load_example()
    requests, size = 4, 50_000

    summary = await example.run(requests, size, str(tmp_path))

    assert summary["sums"] == [float(value * size) for value in range(requests)]
    assert summary["array_bytes"] == requests * size * 8
    # Only pickled proxies crossed the socket.
    assert summary["wire_bytes"] < 1024 * requests
    # evict=True: resolving removed every object from the store.
    assert summary["left_in_store"] == 0
    assert not [name for name in os.listdir(tmp_path) if not name.startswith(".")]


@pytest.mark.example
@pytest.mark.timeout(60)
def test_service_example_runs_as_a_script() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), env.get("PYTHONPATH")])
    )
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--requests", "3", "--size", "1000"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["sums"] == summary["expected"] == [0.0, 1000.0, 2000.0]
    assert summary["left_in_store"] == 0
