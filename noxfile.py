"""Developer sessions. They run in the current environment (pip install -e '.[dev]')."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "check_generated", "tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the whole test suite with coverage of proxystore/."""
    session.run(
        "pytest",
        "--cov=proxystore",
        "--cov-report=term:skip-covered",
        "--cov-report=xml:coverage.xml",
        *session.posargs,
    )


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Ruff (lint and format check) and strict mypy on the package."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "proxystore")


@nox.session(python=False)
def generate(session: nox.Session) -> None:
    """Rewrite the generated sync stores in proxystore/store/ from proxystore/aio/."""
    session.run("python", "scripts/generate_sync.py")


@nox.session(python=False)
def check_generated(session: nox.Session) -> None:
    """Fail when a generated sync store is stale or orphaned."""
    session.run("python", "scripts/generate_sync.py", "--check")


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(python=False)
def benchmarks(session: nox.Session) -> None:
    """Run the store benchmark (ratios against raw clients, same run)."""
    session.run("python", "benchmarks/bench_stores.py", *session.posargs)
