"""ProxyStore 1.1 in its own virtual environment, driven as a subprocess.

ProxyStore 1.1 installs under the import name ``proxystore``, like this
package, so it cannot share an interpreter with it. :func:`python` creates (once)
a virtual environment holding ``proxystore[redis]==1.1.0`` and numpy, and
:func:`run` runs a script there and returns what it printed as JSON.

Scripts print exactly one JSON document on stdout; anything else goes to
stderr. The environment lives in ``.bench/ps11`` at the repository root, or in
``$PROXYSTORE11_VENV``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("proxystore[redis]==1.1.0", "numpy")


def venv_path() -> Path:
    """Where the ProxyStore 1.1 environment lives."""
    return Path(os.environ.get("PROXYSTORE11_VENV", ROOT / ".bench" / "ps11"))


def python() -> Path:
    """The interpreter of the ProxyStore 1.1 environment, created on first use."""
    path = venv_path()
    interpreter = path / "bin" / "python"
    marker = path / ".installed"
    if not marker.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        subprocess.run(
            [str(interpreter), "-m", "pip", "install", "-q", *REQUIREMENTS],
            check=True,
            stdout=sys.stderr,
        )
        marker.write_text("\n".join(REQUIREMENTS) + "\n")
    return interpreter


def version() -> str:
    """The ProxyStore version the environment imports (a check it is 1.1)."""
    found: str = run(
        "import json, proxystore; print(json.dumps(proxystore.__version__))"
    )
    return found


def run(script: str, *args: str, timeout: float = 600.0) -> Any:
    """Run *script* (source text) under ProxyStore 1.1 and parse its JSON output.

    ``sys.argv[1:]`` in the script are *args*. The working directory is a
    neutral one so this repository's ``proxystore`` is never imported by
    accident.
    """
    completed = subprocess.run(
        [str(python()), "-c", script, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=venv_path(),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return json.loads(completed.stdout)


if __name__ == "__main__":
    print(version())
