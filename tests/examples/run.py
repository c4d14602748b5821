"""Running an example script the way a user would, bounded by a timeout."""

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

REPO = Path(__file__).resolve().parents[2]


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
