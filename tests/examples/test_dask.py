"""examples/dask_distributed.py on a real LocalCluster, at a small size."""

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

pytest.importorskip("distributed")
pytest.importorskip("numpy")

REPO = Path(__file__).resolve().parents[2]
TASKS = 2
SIZE = 200_000  # float64 elements: 1.6 MB per array


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
@pytest.mark.timeout(120)
def test_dask_example_keeps_arrays_off_the_scheduler() -> None:
    summary = run_example(
        "dask_distributed.py", "--tasks", str(TASKS), "--size", str(SIZE), timeout=100
    )
    payload = summary["payload_bytes"]
    assert payload == TASKS * SIZE * 8
    expected = [float(i * SIZE) for i in range(TASKS)]

    raw, proxied, plain = summary["raw"], summary["proxied"], summary["plain"]
    for result in (raw, proxied, plain):
        assert result["sums"] == expected

    # Without proxies every array crosses both hops.
    assert raw["client_to_scheduler_bytes"] >= payload
    assert raw["scheduler_to_workers_bytes"] >= payload
    # With proxies only the small proxies do.
    for result in (proxied, plain):
        assert result["client_to_scheduler_bytes"] < payload / 50
        assert result["scheduler_to_workers_bytes"] < payload / 50
        assert result["fetches_on_workers"] == TASKS

    # Bound into the task, proxies resolve on the workers only.
    assert proxied["resolved_on_client"] == 0
    assert proxied["fetches_outside_workers"] == 0
