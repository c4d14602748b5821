"""examples/parsl_mapreduce.py on a real HighThroughputExecutor, at a small size."""

from __future__ import annotations

import os

import pytest

from tests.examples.run import run_example

# Parsl is in the dev extra, not the test extra `nox -s min_deps` installs
# (its floors of shared dependencies are newer than ours): that session
# deselects these with -m "not parsl" rather than skipping them.
pytestmark = pytest.mark.parsl

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
    payload = summary["payload_bytes"]
    assert summary["total"] == summary["expected"] == float(sum(range(ARRAYS)) * SIZE)
    assert summary["map_tasks"] == ARRAYS // CHUNK
    assert payload == ARRAYS * SIZE * 8
    # Every array reached its map task as a proxy, and only proxies crossed
    # the executor; every array the executor stored was evicted.
    assert summary["arrived_as_proxy"] == ARRAYS
    assert summary["executor_bytes"] < payload / 100
    assert summary["left_in_store"] == 0
    # Without proxies (ProxyNever) the same sum, every array through Parsl.
    assert summary["plain"]["total"] == summary["expected"]
    assert summary["plain"]["arrived_as_proxy"] == 0
    assert summary["plain"]["executor_bytes"] >= payload
    # The map tasks ran in HTEX worker processes, not in this test's process.
    assert summary["worker_pids"]
    assert os.getpid() not in summary["worker_pids"]
