"""Developer and CI sessions.

`lint`, `tests`, `generate`, `check_generated`, `dupes`, `docs` and
`benchmarks` run in the current environment (pip install -e '.[dev]').
`tests-3.10` ... `tests-3.13` and `min_deps` each build their own virtualenv
from this repository's files, with the interpreters installed on the machine
(pyenv's, else the PATH's).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "check_generated", "tests"]

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
MIN_PYTHON = "3.10"
# Extras whose floors are the library's promise; dev and docs tools float.
RUNTIME_EXTRAS = ("redis", "endpoints", "globus", "examples")
# Large transfers and engine examples run once per CI run (`nox -s tests`),
# not once per interpreter.
NOT_HEAVY = ("-m", "not heavy")


def _interpreter(version: str) -> str:
    """Path of the newest installed CPython `version`, or the bare version."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [
        path
        for path in root.glob(f"{version}.*/bin/python{version}")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parent.parent.name)
    ]
    if found:
        return str(max(found, key=lambda p: int(p.parent.parent.name.split(".")[2])))
    # pyenv's shims answer only for the selected versions: use a real binary.
    on_path = shutil.which(f"python{version}")
    return on_path if on_path is not None else version


def _pytest(session: nox.Session, *args: str) -> None:
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *args,
        *session.posargs,
    )  # fmt: skip


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (heavy tests included) with coverage."""
    session.run(
        "pytest",
        "--cov=proxystore",
        "--cov-report=term:skip-covered",
        "--cov-report=xml:coverage.xml",
        *session.posargs,
    )


def _versioned_tests(session: nox.Session) -> None:
    """The suite less heavy tests, in a fresh virtualenv on one interpreter."""
    session.install("-e", ".[dev]")
    _pytest(session, *NOT_HEAVY)


for _version in PYTHONS:
    nox.session(
        name=f"tests-{_version}",
        python=_interpreter(_version),
        venv_backend="virtualenv",
    )(_versioned_tests)


def min_constraints(pyproject: dict[str, object]) -> list[str]:
    """Pin every runtime requirement to its declared lower bound (`name==floor`)."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    requirements = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        floors = [s.version for s in requirement.specifier if s.operator == ">="]
        if len(floors) != 1:
            raise ValueError(f"{text!r} in pyproject.toml declares no single floor")
        pins[requirement.name] = f"{requirement.name}=={floors[0]}"
    return sorted(pins.values())


@nox.session(python=_interpreter(MIN_PYTHON), venv_backend="virtualenv")
def min_deps(session: nox.Session) -> None:
    """The suite less heavy tests at Python 3.10 and the declared floors.

    Installs `.[test]` (not `.[dev]`: Parsl, the linters and nox itself
    need newer shared dependencies than the library declares) with every
    runtime requirement pinned to its lower bound. Every floor has a wheel
    for CPython 3.10, so nothing is built from source.
    """
    pins = min_constraints(nox.project.load_toml("pyproject.toml"))
    constraints = Path(session.create_tmp()) / "min-constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.log("constraints: " + ", ".join(pins))
    session.install("-c", str(constraints), "-e", ".[test]")
    _pytest(session, "-m", "not heavy and not parsl")


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Ruff, strict mypy (package, tests, scripts) and the import-cycle check."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("python", "scripts/import_graph.py")


@nox.session(python=False)
def generate(session: nox.Session) -> None:
    """Rewrite the generated sync face (proxystore/store/, the sync contract)."""
    session.run("python", "scripts/generate_sync.py")


@nox.session(python=False)
def check_generated(session: nox.Session) -> None:
    """Fail when a generated file is stale, orphaned or leaks async code."""
    session.run("python", "scripts/generate_sync.py", "--check")


# The first line of every module scripts/generate_sync.py writes.
GENERATED_HEADER = "# Generated from proxystore/aio/"


def generated_modules(package: Path = Path("proxystore")) -> list[Path]:
    """The modules of `package` that scripts/generate_sync.py writes."""
    return sorted(
        path
        for path in package.rglob("*.py")
        if path.read_text(encoding="utf-8").startswith(GENERATED_HEADER)
    )


@nox.session(python=False)
def dupes(session: nox.Session) -> None:
    """Report code repeated in 6+ lines across the hand-written package.

    The generated sync stores repeat their proxystore/aio/ sources by design
    and are left out. A report, not a gate: repeats do not fail the session.
    Extra arguments go to pylint (`nox -s dupes -- --min-similarity-lines=10`).
    """
    # pylint reads each pattern as a path, so a backslash would become a
    # separator: `[.]` matches the dot.
    ignored = ",".join(
        ".*" + re.escape(path.with_suffix("").as_posix()) + "[.]py$"
        for path in generated_modules()
    )
    session.log(f"left out (generated): {len(generated_modules())} modules")
    report = session.run(
        "pylint", "--disable=all", "--enable=duplicate-code",
        "--min-similarity-lines=6", "--score=n", f"--ignore-paths={ignored}",
        *session.posargs, "proxystore",
        success_codes=[0, 8],  # 8: refactor messages (the repeats) only
        silent=True,
    )  # fmt: skip
    if isinstance(report, str):  # None under --install-only
        print(report, end="")
        session.log(summarize_duplicates(report))


def summarize_duplicates(report: str) -> str:
    """One line counting pylint's duplicate-code messages and the lines they span."""
    ranges = re.findall(r"R0801: .*?\n==[\w.]+:\[(\d+):(\d+)\]", report)
    lines = sum(int(end) - int(start) for start, end in ranges)
    return f"{len(ranges)} repeated blocks, {lines} lines (first copy of each)"


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(python=False)
def benchmarks(session: nox.Session) -> None:
    """Run the store benchmark (ratios against raw clients, same run)."""
    session.run("python", "benchmarks/bench_stores.py", *session.posargs)
