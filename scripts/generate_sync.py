"""Generate the blocking stores in proxystore/store/ from proxystore/aio/.

Usage:
    python scripts/generate_sync.py          # rewrite the generated modules
    python scripts/generate_sync.py --check  # exit 1 if any is stale or orphaned

Each rule is a regular expression applied line by line. A rule that no
source uses is an error, so the list cannot rot. A file in proxystore/store/
that carries the generated header but has no source left is an orphan, also
an error. Paths are absolute, and the output path must differ from the input.
The output is not reformatted (lines only get shorter), so it is reproducible
without any tool installed; `ruff format` skips the generated modules.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "proxystore" / "aio"
OUTPUT_DIR = ROOT / "proxystore" / "store"

# Modules of proxystore/aio/ with a generated twin; the rest (the package
# __init__, _compat, resolve helpers) are async-only or hand-written twice.
MODULES = (
    "base",
    "local",
    "file",
    "redis",
    "globus",
    "endpoint",
    "future",
    "stream",
    "stream_brokers",
    "stream_redis",
)

HEADER = (
    "# Generated from proxystore/aio/{name}.py by scripts/generate_sync.py: "
    "DO NOT EDIT.\n"
)
HEADER_MARK = "# Generated from proxystore/aio/"

_COROUTINE_NAMES = (
    r"(?:set|get|exists|evict|proxy|close|resolve|fetch|is_cached|future"
    r"|send|flush|publish|pending|receive|ack|subscribe)"
)

RULES: list[tuple[str, str]] = [
    (r"\b_IS_SYNC = False\b", "_IS_SYNC = True"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (rf"\b(_?)a({_COROUTINE_NAMES}\w*)\b", r"\1\2"),
    (r"\bproxystore\.aio\b", "proxystore.store"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    (r"\bredis\.asyncio\b", "redis"),
]


def _compiled() -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(pattern), replacement) for pattern, replacement in RULES]


def convert(source: str, module: str, uses: list[int]) -> str:
    """Return the sync twin of an async module's source, counting rule uses."""
    lines = [HEADER.format(name=module)]
    rules = _compiled()
    for line in source.splitlines(keepends=True):
        for index, (pattern, replacement) in enumerate(rules):
            line, count = pattern.subn(replacement, line)
            uses[index] += count
        lines.append(line)
    return "".join(lines)


def generate(output_dir: Path) -> dict[Path, str]:
    """Write every generated module into `output_dir`; return path -> text."""
    uses = [0] * len(RULES)
    written: list[Path] = []
    for module in MODULES:
        source = SOURCE_DIR / f"{module}.py"
        if not source.exists():
            continue
        target = output_dir / f"{module}.py"
        if target.resolve() == source.resolve():
            raise SystemExit(f"refusing to write {target} over its source")
        target.write_text(convert(source.read_text(), module, uses))
        written.append(target)
    unused = [RULES[index][0] for index, count in enumerate(uses) if count == 0]
    if unused:
        raise SystemExit(f"generator rules never used (remove them): {unused}")
    return {path: path.read_text() for path in written}


def orphans() -> list[Path]:
    """Generated files in proxystore/store/ whose source no longer exists."""
    found = []
    for path in sorted(OUTPUT_DIR.glob("*.py")):
        with path.open() as file:
            first = file.readline()
        if first.startswith(HEADER_MARK) and not (SOURCE_DIR / path.name).exists():
            found.append(path)
    return found


def check() -> int:
    """Compare freshly generated modules with the committed ones."""
    import tempfile

    with tempfile.TemporaryDirectory() as temp:
        fresh = generate(Path(temp))
        stale = [
            OUTPUT_DIR / path.name
            for path, text in fresh.items()
            if not (OUTPUT_DIR / path.name).exists()
            or (OUTPUT_DIR / path.name).read_text() != text
        ]
    problems = [f"stale: {path.relative_to(ROOT)}" for path in stale]
    problems += [f"orphan: {path.relative_to(ROOT)}" for path in orphans()]
    for problem in problems:
        print(problem)
    if problems:
        print("run `python scripts/generate_sync.py` (or `nox -s generate`) and commit")
        return 1
    print(f"{len(fresh)} generated modules are fresh")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    for path in generate(OUTPUT_DIR):
        print(f"wrote {path.relative_to(ROOT)}")
    stray = orphans()
    if stray:
        print("orphans (generated files with no source):", *stray)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
