"""What checking a received store proxy costs at unpickle time.

Run: ``python benchmarks/bench_unpickle.py [--number N] [--repeat R]``.

Unpickling a store proxy checks its configuration before anything can be
built (`proxystore.registry.admit`): a name this process registered with
the same configuration is one dict lookup and comparison; an unknown name
is checked in full (class, every argument, the policy) the first time its
configuration is seen ("first sight": the admitted-configuration cache is
cleared before each), and found in that cache afterwards while the
registration and the policy stay the same ("seen before"). The baseline is
unpickling a `Proxy` of a trivial picklable factory, measured in the same
run, interleaved with the cases; the report gives each case's median and
spread (min-max over repeats) and its ratio to the baseline's median.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import timeit
from collections.abc import Callable
from typing import Any

import proxystore as ps
from proxystore import policy, registry
from proxystore.proxy import Proxy


class Value:
    """A zero-argument picklable factory returning a fixed object."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


KEY = "0123456789abcdef0123456789abcdef"


def _cases(store_dir: str) -> list[tuple[str, Callable[[], Any]]]:
    baseline = pickle.dumps(Proxy(Value(KEY)))
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("baseline Proxy(Value)", lambda: pickle.loads(baseline))
    ]
    for kind, kwargs in (
        ("file", {"store_dir": store_dir}),
        ("redis", {"hostname": "10.0.0.5", "port": 6380}),
    ):
        name = f"bench-unpickle-{kind}"
        store = ps.store.init_store(kind, name, **kwargs)
        blob = pickle.dumps(store.proxy_from_key(KEY))

        def registered(blob: bytes = blob) -> Any:
            return pickle.loads(blob)

        def unknown(blob: bytes = blob, name: str = name) -> Any:
            registry.unregister(name)
            return pickle.loads(blob)

        def first_sight(blob: bytes = blob, name: str = name) -> Any:
            registry.unregister(name)
            registry._admitted.clear()
            return pickle.loads(blob)

        cases.append((f"{kind}, registered name", registered))
        cases.append((f"{kind}, unknown, seen before", unknown))
        cases.append((f"{kind}, unknown, first sight", first_sight))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    policy.configure(
        "strict", allow=["redis:10.0.0.5", f"file:{tempfile.gettempdir()}"]
    )
    with tempfile.TemporaryDirectory() as store_dir:
        cases = _cases(store_dir)
        samples: list[list[float]] = [[] for _ in cases]
        for _ in range(args.repeat):
            for index, (_, function) in enumerate(cases):
                seconds = timeit.timeit(function, number=args.number)
                samples[index].append(seconds / args.number * 1e6)
    base = statistics.median(samples[0])
    print("us per pickle.loads (strict policy, configurations on the allowlist)")
    print(f"{'case':<30}{'median':>8}{'min':>8}{'max':>8}{'ratio':>8}")
    for (label, _), times in zip(cases, samples, strict=True):
        median = statistics.median(times)
        print(
            f"{label:<30}{median:>8.2f}{min(times):>8.2f}{max(times):>8.2f}"
            f"{median / base:>7.2f}x"
        )


if __name__ == "__main__":
    main()
