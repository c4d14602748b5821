"""How much a resolved `Proxy` adds to common operations on its target.

Run: ``python benchmarks/bench_proxy.py [--number N] [--repeat R]``.

Each statement is timed on the plain object and through a resolved proxy
with `timeit`, both minus an empty-loop baseline; the added cost is the
difference. The baseline, plain and proxied timings are interleaved within
each repeat and the minimum of each is kept, so load from other processes
hits all three alike. If `lazy_object_proxy` is importable, its pure-Python
proxy is measured too, as the reference the targets were derived from (they
are half of its added cost).
"""

from __future__ import annotations

import argparse
import timeit
from typing import Any

from proxystore.proxy import Proxy, resolve


class Target:
    def __init__(self) -> None:
        self.attr = 1


class Value:
    """A zero-argument picklable factory returning a fixed object."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


# statement, plain object, budget for the added ns (None: no budget)
CASES: list[tuple[str, Any, float | None]] = [
    ("len(x)", [1, 2, 3], 60.0),
    ("x.attr", Target(), 250.0),
    ("isinstance(x, Target)", Target(), 90.0),
    ("x + 1", 1, None),
    ("x[0]", [1, 2, 3], None),
    ("hash(x)", "key", None),
]


def min_ns(
    stmt: str, subjects: list[Any], number: int, repeat: int
) -> tuple[float, list[float]]:
    """Return the empty-loop ns and `stmt`'s ns on each subject, interleaved."""
    empty = timeit.Timer("pass")
    timers = [timeit.Timer(stmt, globals={"x": x, "Target": Target}) for x in subjects]
    best_empty = float("inf")
    best = [float("inf")] * len(timers)
    for _ in range(repeat):
        best_empty = min(best_empty, empty.timeit(number))
        for i, timer in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number))
    return best_empty / number * 1e9, [t / number * 1e9 for t in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    try:
        from lazy_object_proxy.simple import Proxy as ReferenceProxy
    except ImportError:
        ReferenceProxy = None

    header = f"{'operation':<24}{'empty':>7}{'plain':>8}{'proxy':>8}{'added':>8}"
    header += f"{'ratio':>8}{'target':>8}  ok "
    if ReferenceProxy is not None:
        header += f"{'reference added':>17}"
    print("ns per operation; plain and proxy are minus the empty loop")
    print(header)
    failed = []
    for stmt, plain_obj, budget in CASES:
        proxy = Proxy(Value(plain_obj))
        resolve(proxy)
        subjects = [plain_obj, proxy]
        if ReferenceProxy is not None:
            reference = ReferenceProxy(Value(plain_obj))
            reference.__wrapped__  # noqa: B018 (resolves it)
            subjects.append(reference)
        empty, timings = min_ns(stmt, subjects, args.number, args.repeat)
        plain, proxied = timings[0] - empty, timings[1] - empty
        added = proxied - plain
        ratio = proxied / plain if plain > 0 else float("inf")
        ok = "-" if budget is None else ("yes" if added <= budget else "NO")
        if ok == "NO":
            failed.append(stmt)
        target = "-" if budget is None else f"<={budget:.0f}"
        line = f"{stmt:<24}{empty:>7.1f}{plain:>8.1f}{proxied:>8.1f}{added:>8.1f}"
        line += f"{ratio:>7.1f}x{target:>8}  {ok:<3}"
        if ReferenceProxy is not None:
            line += f"{timings[2] - empty - plain:>17.1f}"
        print(line)
    print("all within target" if not failed else f"over target: {', '.join(failed)}")


if __name__ == "__main__":
    main()
