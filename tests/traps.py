"""Objects whose unpickling leaves a trace: proof that a payload was (not) loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def leave_trace(path: str) -> str:
    """Write a marker file (what arbitrary code in a pickle could do)."""
    Path(path).write_text("unpickled")
    return "trap sprung"


class Trap:
    """Unpickling this calls `leave_trace`; it stands in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return (leave_trace, (self.path,))
