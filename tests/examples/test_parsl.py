"""examples/parsl_mapreduce.py on a real HighThroughputExecutor, at a small size."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("parsl")
pytest.importorskip("numpy")

REPO = Path(__file__).resolve().parents[2]
ARRAYS = 4
SIZE = 100_000  # float64 elements: 800 kB per array
CHUNK = 2


def run_example(script: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run ``python examples/<script> args`` and return its last line as JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), env.get("PYTHONPATH")])
    )
    # Engines start helper scripts from PATH (Parsl's interchange.py...).
    env["PATH"] = os.pathsep.join(
        filter(None, [os.path.dirname(sys.executable), env.get("PATH")])
    )
    process = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / script), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The engine's processes share the example's process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{script} did not finish in {timeout}s:\n{stderr[-4000:]}")
    assert process.returncode == 0, stderr[-4000:]
    summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return summary


@pytest.mark.example
@pytest.mark.timeout(150)
def test_parsl_mapreduce_sums_proxied_arrays_on_workers() -> None:
    summary = run_example(
        "parsl_mapreduce.py",
        *("--arrays", str(ARRAYS), "--size", str(SIZE), "--chunk", str(CHUNK)),
        timeout=140,
    )
    assert summary["total"] == summary["expected"] == float(sum(range(ARRAYS)) * SIZE)
    assert summary["map_tasks"] == ARRAYS // CHUNK
    assert summary["payload_bytes"] == ARRAYS * SIZE * 8
    # Every array reached its map task as a proxy, and only proxies travelled.
    assert summary["arrived_as_proxy"] == ARRAYS
    assert summary["pickled_proxy_bytes"] < summary["payload_bytes"] / 100
    assert summary["resolved_on_submit_side"] == 0
    # The comparison round (proxies as top-level arguments) gives the same sum.
    assert summary["plain"]["total"] == summary["expected"]
    # The map tasks ran in HTEX worker processes, not in this test's process.
    assert summary["worker_pids"]
    assert os.getpid() not in summary["worker_pids"]
