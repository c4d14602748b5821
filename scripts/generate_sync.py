"""Generate the sync face (proxystore/store/, some tests) from the async sources.

Usage:
    python scripts/generate_sync.py          # rewrite the generated modules
    python scripts/generate_sync.py --check  # exit 1 on anything stale or wrong

The rules, all checked by ``--check``:

- Every module of proxystore/aio/ is in exactly one list: `MODULES` (it has a
  generated sync twin) or `ASYNC_ONLY` (never generated; the sync face never
  imports it). Every file of proxystore/store/ is a generated twin or in
  `HAND_WRITTEN`. The compat module both faces import, `proxystore._compat`,
  is face-neutral (outside both packages) and imports asyncio lazily.
- Renames are derived, not listed: every ``async def`` named ``a<name>``
  (after any leading underscores: ``_awrite``, ``__aenter__``) in a
  generated source or a compat module becomes ``<name>``, everywhere in the
  generated text; so do the pairs of a compat module (two names that differ
  by a leading ``a``/``A``: ``asleep``/``sleep``, ``ASemaphore``/
  ``Semaphore``); and so does a core module's ``async def a<name>`` that
  has a ``def <name>`` twin in the same class (``ClientsPerLoop.aclose_all``
  and ``close_all``). A coroutine of the sources whose natural name starts
  with "a" is therefore spelled with the prefix anyway (``aadd``).
- A source never picks a primitive by its face (``x if _IS_SYNC else y``:
  that is a compat pair) nor tests ``not _IS_SYNC`` (code the sync face
  would carry dead: that is an async-only block). ``_IS_SYNC`` itself stays
  for the faces' identity and for the rare sync-only workaround.
- Lines from ``# async-only: begin`` to ``# async-only: end`` are dropped.
  Such a block is a hook into an `ASYNC_ONLY` module (an import, a call),
  at most `MAX_BLOCK_LINES` lines: async-only code lives in those modules.
- A token rule (`RULES`) that no source uses is an error, so the list
  cannot rot; a generated file whose source is gone is an orphan.
- Leak check: a generated file must not contain ``asyncio``, ``await``,
  ``async `` (code, comments or docstrings; the face's name ``"async"`` may
  stay), ``aiofiles``, an ``Async...``
  name, an import of an `ASYNC_ONLY` module, nor a call of a coroutine
  name of the async sources (``_awrite(``) or of a compat pair's async name.

The output is not reformatted (lines only get shorter), so it is
reproducible without any tool installed; `ruff format` skips the generated
modules.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "proxystore" / "aio"
OUTPUT_DIR = ROOT / "proxystore" / "store"

MODULES: dict[str, str] = {
    f"proxystore/aio/{name}.py": f"proxystore/store/{name}.py"
    for name in (
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
}
"""Generated library modules: async source -> sync twin (paths from the root)."""

TEST_MODULES: dict[str, str] = {
    "tests/contract/test_contract_aio.py": "tests/contract/test_contract_sync.py",
}
"""Generated test modules: the store contract, written for the async face."""

ASYNC_ONLY = ("__init__", "_redis_async", "executor", "resolve")
"""Modules of proxystore/aio/ that are never generated nor imported by the sync face."""

COMPAT_MODULES = ("proxystore/_compat.py", "tests/contract/_compat.py")
"""Modules holding async/sync pairs of primitives (see the module docstring)."""

HAND_WRITTEN = ("__init__", "exceptions", "factory", "utils")
"""Modules of proxystore/store/ written by hand."""

HEADER = "# Generated from {source} by scripts/generate_sync.py: DO NOT EDIT.\n"
HEADER_MARK = "# Generated from "

BLOCK_BEGIN = "# async-only: begin"
BLOCK_END = "# async-only: end"
MAX_BLOCK_LINES = 10

RULES: list[tuple[str, str]] = [
    (r"\b_IS_SYNC = False\b", "_IS_SYNC = True"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bawait ", ""),
    (r"\bproxystore\.aio\b", "proxystore.store"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    (r"\bredis\.asyncio\b", "redis"),
    (r"\bAsyncIterator\b", "Iterator"),
]
"""Token rules, applied line by line after the async-only blocks are dropped."""

LEAKS = (
    r"\basyncio\b",
    r"\bawait\b",
    r"\basync(?:\s|$)",
    r"\baiofiles\b",
    r"\bAsync[A-Z]\w*",
)
"""Patterns that must not appear in a generated file."""

_FACE_TERNARY = re.compile(r"\bif\s+(?:not\s+)?_IS_SYNC\s+else\b")
_NOT_SYNC = re.compile(r"\bnot\s+_IS_SYNC\b")
_IMPORT_OPEN = re.compile(r"^from [\w.]+ import \($")
_IMPORTED_NAME = re.compile(r"^\s+(\w+),$")
_ASYNC_PREFIX = re.compile(r"^(_*)a([a-z_]\w*)$")
_CLASS_PREFIX = re.compile(r"^A([A-Z]\w*)$")


class GeneratorError(Exception):
    """A source breaks a rule of the generator."""


class Renames:
    """Async name -> sync name, derived from the sources and compat modules."""

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.names: dict[str, str] = dict(names or {})

    def pattern(self) -> re.Pattern[str] | None:
        """One regex matching every async name as a whole word."""
        if not self.names:
            return None
        words = sorted(self.names, key=len, reverse=True)
        return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b")


def _read(path: str | Path) -> str:
    return (ROOT / path).read_text()


def coroutine_names(source: str) -> set[str]:
    """Names of every ``async def`` in `source` (functions and methods)."""
    return {
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.AsyncFunctionDef)
    }


def sync_name(name: str) -> str | None:
    """``aname`` -> ``name``, ``_aname`` -> ``_name``, ``AName`` -> ``Name``."""
    match = _ASYNC_PREFIX.match(name)
    if match is not None:
        return match.group(1) + match.group(2)
    match = _CLASS_PREFIX.match(name)
    return match.group(1) if match is not None else None


def compat_pairs(source: str, path: str) -> dict[str, str]:
    """The async -> sync pairs of a compat module; a twinless async name is an error."""
    defined: set[str] = set()
    body = ast.parse(source).body
    # Names bound lazily (module ``__getattr__``) are declared for type
    # checkers under ``if TYPE_CHECKING:``: they are the module's names too.
    body += [
        inner
        for node in body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for inner in node.body
    ]
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    public = {name for name in defined if not name.startswith("_") and name != "T"}
    pairs: dict[str, str] = {}
    for name in sorted(public):
        twin = sync_name(name)
        if twin is not None and twin in public:
            pairs[name] = twin
    twinless = [
        name
        for name in sorted(public)
        if name[0] in "aA" and name not in pairs and name not in pairs.values()
    ]
    if twinless:
        raise GeneratorError(f"{path}: names without a sync twin: {twinless}")
    return pairs


def twin_methods(source: str) -> dict[str, str]:
    """``async def a<name>`` with a ``def <name>`` beside it (same class or module)."""
    pairs: dict[str, str] = {}
    tree = ast.parse(source)
    scopes: list[ast.Module | ast.ClassDef] = [tree]
    scopes += [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    for scope in scopes:
        body = scope.body
        defined = {n.name for n in body if isinstance(n, ast.FunctionDef)}
        for node in body:
            if isinstance(node, ast.AsyncFunctionDef):
                twin = sync_name(node.name)
                if twin is not None and twin in defined:
                    pairs[node.name] = twin
    return pairs


def shared_modules() -> list[Path]:
    """The package's modules outside both faces (the core both faces use)."""
    package = ROOT / "proxystore"
    return [
        path
        for path in sorted(package.rglob("*.py"))
        if path.parent not in (SOURCE_DIR, OUTPUT_DIR)
    ]


def derive_renames(sources: Iterable[str], compat: Iterable[str]) -> Renames:
    """Collect the renames (see the module docstring).

    From the coroutines of `sources`, the pairs of the `compat` modules, and
    the twin methods of the core modules both faces use (``aclose_all``
    beside ``close_all``).
    """
    renames = Renames()
    for module in shared_modules():
        renames.names.update(twin_methods(module.read_text()))
    for path in sources:
        for name in coroutine_names(_read(path)):
            twin = sync_name(name)
            if twin is not None and name[0] != "A":
                renames.names[name] = twin
    for path in compat:
        if (ROOT / path).exists():
            renames.names.update(compat_pairs(_read(path), path))
    return renames


def drop_async_only(source: str, path: str) -> str:
    """Remove the ``# async-only`` blocks (markers included)."""
    kept: list[str] = []
    start: int | None = None
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker == BLOCK_BEGIN:
            if start is not None:
                raise GeneratorError(f"{path}:{number}: nested async-only block")
            start = number
        elif marker == BLOCK_END:
            if start is None:
                raise GeneratorError(f"{path}:{number}: async-only end without begin")
            if number - start - 1 > MAX_BLOCK_LINES:
                raise GeneratorError(
                    f"{path}:{start}: async-only block of {number - start - 1} "
                    f"lines (at most {MAX_BLOCK_LINES}): move the code into an "
                    "async-only module and keep only the hook here"
                )
            start = None
        elif start is None:
            kept.append(line)
    if start is not None:
        raise GeneratorError(f"{path}:{start}: async-only block never ends")
    return "".join(kept)


def check_face_tests(source: str, path: str) -> None:
    """Refuse a source that picks a primitive or skips code by testing its face.

    ``x if _IS_SYNC else y`` is a compat pair's job, and ``if not _IS_SYNC``
    (code the sync face would carry dead) an ``# async-only`` block's.
    """
    for number, line in enumerate(source.splitlines(), 1):
        if _FACE_TERNARY.search(line):
            raise GeneratorError(
                f"{path}:{number}: a face ternary; use a pair of the compat module"
            )
        if _NOT_SYNC.search(line):
            raise GeneratorError(
                f"{path}:{number}: `not _IS_SYNC`; put async-only code in an "
                "async-only module hooked by an `# async-only` block"
            )


def convert(
    source: str, path: str, renames: Renames, uses: list[int] | None = None
) -> str:
    """Return the sync twin of an async module's source, counting rule uses."""
    check_face_tests(source, path)
    lines = [HEADER.format(source=path)]
    rules = [(re.compile(pattern), replacement) for pattern, replacement in RULES]
    rename = renames.pattern()
    imported: set[str] | None = None  # names of the open ``from x import (``
    for line in drop_async_only(source, path).splitlines(keepends=True):
        for index, (pattern, replacement) in enumerate(rules):
            line, count = pattern.subn(replacement, line)
            if uses is not None:
                uses[index] += count
        if rename is not None:
            line = rename.sub(lambda m: renames.names[m.group(1)], line)
        if imported is not None:
            name = _IMPORTED_NAME.match(line)
            if name is not None and name.group(1) in imported:
                continue  # both names of a pair were imported: keep one
            if name is None:
                imported = None
            else:
                imported.add(name.group(1))
        elif _IMPORT_OPEN.match(line):
            imported = set()
        lines.append(line)
    return "".join(lines)


def leaks(text: str, coroutines: Iterable[str], async_only: Iterable[str]) -> list[str]:
    """Describe every trace of async code in a generated file's `text`."""
    found: list[str] = []
    patterns = [re.compile(p) for p in LEAKS]
    calls = sorted(set(coroutines), key=len, reverse=True)
    if calls:
        patterns.append(re.compile(r"\b(?:" + "|".join(map(re.escape, calls)) + r")\("))
    modules = [f"proxystore.aio.{name}" for name in async_only if name != "__init__"]
    if modules:
        patterns.append(re.compile("|".join(rf"\b{re.escape(m)}\b" for m in modules)))
    for number, line in enumerate(text.splitlines(), 1):
        if number == 1 and line.startswith(HEADER_MARK):
            continue
        for pattern in patterns:
            match = pattern.search(line)
            if match is not None:
                found.append(f"line {number}: {match.group(0)!r}: {line.strip()}")
                break
    return found


def _leak_names(renames: Renames) -> set[str]:
    """Names whose call in a generated file is a leak: every coroutine of aio/."""
    names = set(renames.names)
    for path in sorted(SOURCE_DIR.glob("*.py")):
        names |= {n for n in coroutine_names(path.read_text()) if sync_name(n)}
    return names


def mapping() -> dict[str, str]:
    """Every generated file: source path -> output path (from the root)."""
    return {**MODULES, **TEST_MODULES}


def generate(output_root: Path) -> dict[Path, str]:
    """Write every generated file under `output_root`; return path -> text.

    Raises:
        GeneratorError: If a rule is never used, a block is malformed, or a
            generated file leaks async code.
    """
    sources = [path for path in mapping() if (ROOT / path).exists()]
    renames = derive_renames(sources, COMPAT_MODULES)
    leak_names = _leak_names(renames)
    uses = [0] * len(RULES)
    written: dict[Path, str] = {}
    problems: list[str] = []
    for source in sources:
        target = output_root / mapping()[source]
        if target.resolve() == (ROOT / source).resolve():
            raise GeneratorError(f"refusing to write {target} over its source")
        text = convert(_read(source), source, renames, uses)
        problems += [
            f"{mapping()[source]}: leak {leak}"
            for leak in leaks(text, leak_names, ASYNC_ONLY)
        ]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written[target] = text
    unused = [RULES[index][0] for index, count in enumerate(uses) if count == 0]
    if unused:
        problems.append(f"generator rules never used (remove them): {unused}")
    if problems:
        raise GeneratorError("\n".join(problems))
    return written


def orphans() -> list[Path]:
    """Files carrying the generated header whose source is not in the mapping."""
    outputs = {ROOT / path for path in mapping().values()}
    found = []
    for directory in {(ROOT / path).parent for path in mapping().values()}:
        for path in sorted(directory.glob("*.py")):
            with path.open() as file:
                first = file.readline()
            if first.startswith(HEADER_MARK) and path not in outputs:
                found.append(path)
    return sorted(found)


def unlisted() -> list[str]:
    """Modules of aio/ and store/ that no allowlist names (or two do)."""
    problems = []
    generated = {Path(path).stem for path in MODULES}
    lists: Mapping[str, set[str]] = {
        "MODULES": generated,
        "ASYNC_ONLY": set(ASYNC_ONLY),
    }
    for path in sorted(SOURCE_DIR.glob("*.py")):
        homes = [name for name, members in lists.items() if path.stem in members]
        if len(homes) != 1:
            problems.append(
                f"proxystore/aio/{path.name} is in {homes or 'no list'}: put it in "
                "exactly one of MODULES and ASYNC_ONLY"
            )
    for name, members in lists.items():
        for member in sorted(members):
            if not (SOURCE_DIR / f"{member}.py").exists():
                problems.append(
                    f"{name} names proxystore/aio/{member}.py: no such file"
                )
    for path in sorted(OUTPUT_DIR.glob("*.py")):
        if path.stem not in generated and path.stem not in HAND_WRITTEN:
            problems.append(
                f"proxystore/store/{path.name} is neither generated nor in HAND_WRITTEN"
            )
    for member in HAND_WRITTEN:
        if member in generated or not (OUTPUT_DIR / f"{member}.py").exists():
            problems.append(f"HAND_WRITTEN names {member}: generated or missing")
    return problems


def check() -> int:
    """Compare freshly generated files with the committed ones; check the lists."""
    problems = unlisted()
    try:
        with tempfile.TemporaryDirectory() as temp:
            fresh = generate(Path(temp))
            for path, text in fresh.items():
                committed = ROOT / path.relative_to(temp)
                if not committed.exists() or committed.read_text() != text:
                    problems.append(f"stale: {path.relative_to(temp)}")
    except GeneratorError as err:
        problems.append(str(err))
        fresh = {}
    problems += [f"orphan: {path.relative_to(ROOT)}" for path in orphans()]
    for problem in problems:
        print(problem)
    if problems:
        print("run `python scripts/generate_sync.py` (or `nox -s generate`) and commit")
        return 1
    print(f"{len(fresh)} generated modules are fresh and leak no async code")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    problems = unlisted()
    try:
        written = generate(ROOT)
    except GeneratorError as err:
        problems.append(str(err))
        written = {}
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    problems += [f"orphan: {path.relative_to(ROOT)}" for path in orphans()]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
