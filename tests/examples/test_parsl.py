"""examples/parsl_mapreduce.py on a real HighThroughputExecutor, at a small size."""

from __future__ import annotations

import os

import pytest

from tests.examples.run import run_example

pytest.importorskip("parsl")
pytest.importorskip("numpy")

ARRAYS = 4
SIZE = 100_000  # float64 elements: 800 kB per array
CHUNK = 2


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
    # The comparison round (proxies as top-level arguments) gives the same
    # sum, and Parsl's isinstance checks did not fetch any array here.
    assert summary["plain"]["total"] == summary["expected"]
    assert summary["plain"]["resolved_on_submit_side"] == 0
    # The map tasks ran in HTEX worker processes, not in this test's process.
    assert summary["worker_pids"]
    assert os.getpid() not in summary["worker_pids"]
