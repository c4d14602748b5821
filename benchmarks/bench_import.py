"""What ``import proxystore`` and a first LocalStore set + get cost a fresh process.

Run: ``python benchmarks/bench_import.py [--runs N] [--cpu C] [--top K]``.

Each run starts a fresh interpreter. The baseline is ``python -c pass`` (the
interpreter's own start-up, ``site`` included), measured in the same run and
interleaved with the cases (ABAB...), so load from other processes hits
every case alike. Each case reports its median wall time, its spread
(min-max) and its cost over the baseline. Children are pinned to one CPU
(``--cpu``, default the last one) where the platform allows.

Cases:

- ``import``: ``import proxystore``;
- ``import + local set/get``: that, then ``init_store("local")``, one
  ``set`` of 100 bytes and one ``get`` (the sync face's first use);
- ``import + local set/get (numpy dict)``: the same with a small dict, which
  goes through pickle rather than the bytes fast path.

It also prints which of the heavy modules (dill, asyncio, ssl...) the sync
face imported, and with ``--top K`` the K slowest imports under
``python -X importtime`` (cumulative microseconds) for the set/get case.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

SET_GET = """
import proxystore
from proxystore.store import init_store
store = init_store("local", name="bench-import")
key = store.set(PAYLOAD)
assert store.get(key) == PAYLOAD
"""

CASES = {
    "python -c pass": "pass",
    "import proxystore": "import proxystore",
    "import + local set/get bytes": SET_GET.replace("PAYLOAD", "b'x' * 100"),
    "import + local set/get dict": SET_GET.replace("PAYLOAD", "{'a': [1, 2.0]}"),
}

HEAVY = (
    "dill",
    "asyncio",
    "ssl",
    "concurrent.futures",
    "logging",
    "socket",
    "inspect",
    "uuid",
    "hashlib",
    "xxhash",
    "aiofiles",
    "proxystore.aio",
)


def child_env(cache_dir: str) -> dict[str, str]:
    """The environment for children: bytecode cached, as users have it.

    A process started with PYTHONDONTWRITEBYTECODE compiles every module
    it imports from source each time; the children write and read their
    bytecode under `cache_dir` instead (the source tree stays clean).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    env["PWD"] = cache_dir
    return env


def _pin(cpu: int | None) -> Any:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def run_once(code: str, cpu: int | None, env: dict[str, str]) -> tuple[float, float]:
    """Return the child's wall time and CPU time (user + system), in seconds."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=env["PWD"],  # `-c` puts the working directory first on sys.path
        preexec_fn=_pin(cpu),
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"{code!r} exited with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def imported_modules(code: str, env: dict[str, str]) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=env["PWD"],
    ).stdout
    modules = set(json.loads(out))
    return [name for name in HEAVY if name in modules]


def slowest_imports(code: str, top: int, env: dict[str, str]) -> list[tuple[int, str]]:
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        cwd=env["PWD"],
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows = []
    for line in err.splitlines():
        fields = line.split("|")
        if not line.startswith("import time:") or not fields[1].strip().isdigit():
            continue
        rows.append((int(fields[1]), fields[2].rstrip()))
    rows.sort(reverse=True)
    return rows[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument(
        "--baseline-tree",
        help="also run the cases against the proxystore package in this source "
        "tree (e.g. an older commit's `git archive`), interleaved",
    )
    args = parser.parse_args()
    cpu = args.cpu
    if cpu is None and hasattr(os, "sched_getaffinity"):
        cpu = max(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as cache_dir:
        env = child_env(cache_dir)
        trees = {"": env}
        if args.baseline_tree:
            trees[" [baseline]"] = {**env, "PYTHONPATH": args.baseline_tree}
        cases = {
            label + suffix: (code, tree_env)
            for label, code in CASES.items()
            for suffix, tree_env in trees.items()
            if code != "pass" or not suffix
        }
        for code, case_env in cases.values():
            run_once(code, cpu, case_env)  # write .pyc files, warm the page cache
        walls: dict[str, list[float]] = {label: [] for label in cases}
        cpus: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(args.runs):
            for label, (code, case_env) in cases.items():
                wall, cpu_time = run_once(code, cpu, case_env)
                walls[label].append(wall * 1e3)
                cpus[label].append(cpu_time * 1e3)
        print(f"python {sys.version.split()[0]}, {args.runs} runs, pinned to CPU {cpu}")
        for title, samples in (("wall time", walls), ("CPU time (user+sys)", cpus)):
            base = statistics.median(samples["python -c pass"])
            print(f"{title}, ms")
            print(
                f"{'case':<44}{'median':>8}{'min':>8}{'max':>8}{'over pass':>11}"
                f"{'ratio':>8}"
            )
            for label, times in samples.items():
                median = statistics.median(times)
                print(
                    f"{label:<44}{median:>8.1f}{min(times):>8.1f}{max(times):>8.1f}"
                    f"{median - base:>11.1f}{median / base:>7.2f}x"
                )
        for label, (code, case_env) in cases.items():
            if code != "pass":
                found = imported_modules(code, case_env)
                print(f"{label}: imports {', '.join(found) or 'none'}")
        if args.top:
            label = "import + local set/get dict"
            print(f"slowest imports (cumulative us, -X importtime), {label}:")
            for micros, name in slowest_imports(CASES[label], args.top, env):
                print(f"{micros:>9} {name}")


if __name__ == "__main__":
    main()
