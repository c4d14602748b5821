"""examples/pipeline.py end to end at a tiny size, as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "pipeline.py"
TINY = ["--size-mb", "1", "--items", "3", "--stages", "2", "--compute", "0.01"]


def _run(*flags: str) -> dict[str, tuple[float, int, str]]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *TINY, *flags],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=EXAMPLE.parents[1],
    )
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in {"pickle", "proxy", "proxy-prefetch"}:
            rows[fields[0]] = (
                float(fields[1]),
                int(fields[3].replace(",", "")),
                fields[4],
            )
    return rows


@pytest.mark.example
def test_every_mode_delivers_correct_arrays() -> None:
    rows = _run()
    assert set(rows) == {"pickle", "proxy", "proxy-prefetch"}
    assert all(status == "ok" for _, _, status in rows.values())
    # 1 MB arrays cross 3 pipes 3 times when pickled; proxies are tiny.
    assert rows["pickle"][1] > 9_000_000
    assert rows["proxy"][1] < 20_000
    assert rows["proxy-prefetch"][1] < 20_000


@pytest.mark.example
def test_prefetch_mode_runs_under_fork() -> None:
    rows = _run("--mode", "proxy-prefetch", "--start-method", "fork")
    assert rows["proxy-prefetch"][2] == "ok"
