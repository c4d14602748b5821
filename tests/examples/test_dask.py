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

    # Bound into the task or passed plainly, proxies resolve on the workers
    # only: dask's isinstance checks, probes and tokenize do not fetch.
    for result in (proxied, plain):
        assert result["resolved_on_client"] == 0
        assert result["fetches_outside_workers"] == 0
