"""examples/dask_distributed.py on a real LocalCluster, at a small size."""

from __future__ import annotations

import pytest

from tests.examples.run import run_example

pytest.importorskip("distributed")
pytest.importorskip("numpy")

TASKS = 2
SIZE = 200_000  # float64 elements: 1.6 MB per array


@pytest.mark.example
@pytest.mark.timeout(120)
def test_dask_example_keeps_arrays_off_the_scheduler() -> None:
    summary = run_example(
        "dask_distributed.py", "--tasks", str(TASKS), "--size", str(SIZE), timeout=100
    )
    payload = summary["payload_bytes"]
    assert payload == TASKS * SIZE * 8
    expected = [float(i * SIZE) for i in range(TASKS)]

    raw, proxied, results = summary["raw"], summary["proxied"], summary["results"]
    assert raw["sums"] == proxied["sums"] == expected
    assert results["sums"] == [2 * value for value in expected]

    # Without the executor every array crosses both hops.
    assert raw["client_to_scheduler_bytes"] >= payload
    assert raw["scheduler_to_workers_bytes"] >= payload
    assert raw["fetches_on_workers"] == raw["fetches_here"] == 0
    # Through StoreExecutor only the small proxies do; the workers fetch
    # the arrays from the store, never the client or the scheduler.
    for result in (proxied, results):
        assert result["client_to_scheduler_bytes"] < payload / 50
        assert result["scheduler_to_workers_bytes"] < payload / 50
        assert result["fetches_on_workers"] == TASKS
    assert proxied["fetches_here"] == 0
    # Array results came back through the store, fetched here by the executor.
    assert results["fetches_here"] == TASKS
    assert results["fetched_bytes_here"] >= payload
    # Every argument and result the executor stored was evicted.
    assert summary["left_in_store"] == 0
