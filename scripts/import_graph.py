"""Print proxystore's import graph and its cycles; exit 1 if there is a cycle.

Usage:
    python scripts/import_graph.py            # the cycles (and a count of edges)
    python scripts/import_graph.py --graph    # every module and what it imports

Every import counts: module level, inside functions (lazy) and under
`if TYPE_CHECKING:` (type-only), because each is a dependency a reader and a
refactoring must respect. `from pkg import name` is an edge to `pkg.name` when
that is a module, else to `pkg`. An import of a package by one of its own
modules (an `__init__` re-export) is not counted. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The face-neutral core: it must reach neither face, even through a lazy or
# type-only import (both faces build on it).
NEUTRAL_CORE = ("proxystore.registry", "proxystore.store_factory")
FACES = ("proxystore.aio", "proxystore.store")


def modules(package: Path) -> dict[str, Path]:
    """Map every module's dotted name under `package` to its file."""
    found: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _targets(name: str, node: ast.AST, known: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            is_package = known[name].name == "__init__.py"
            package = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
    else:
        return set()
    hits: set[str] = set()
    for candidate in candidates:
        while candidate and candidate not in known:
            candidate = candidate.rpartition(".")[0]
        if candidate and candidate != name:
            hits.add(candidate)
    return hits


def import_graph(package: Path) -> dict[str, set[str]]:
    """Return module -> the package's modules it imports (any kind of import)."""
    known = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            edges |= _targets(name, node, known)
        own_packages = {t for t in edges if name.startswith(f"{t}.")}
        graph[name] = edges - own_packages
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        # Iterative Tarjan: the graph is small, but recursion limits are not ours.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Return every module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def face_leaks(graph: dict[str, set[str]]) -> list[str]:
    """Return a line for each face module the neutral core reaches."""
    leaks = []
    for core in NEUTRAL_CORE:
        for target in sorted(reachable(graph, core)):
            if any(target == face or target.startswith(f"{face}.") for face in FACES):
                leaks.append(f"{core} reaches the face module {target}")
    return leaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(ROOT / "proxystore"))
    parser.add_argument("--graph", action="store_true", help="print every edge")
    args = parser.parse_args()
    graph = import_graph(Path(args.package).resolve())
    if args.graph:
        for name in sorted(graph):
            print(f"{name} -> {', '.join(sorted(graph[name])) or '(nothing)'}")
    found = cycles(graph)
    for component in found:
        print("cycle: " + " <-> ".join(component))
    leaks = face_leaks(graph) if "proxystore.registry" in graph else []
    for leak in leaks:
        print(leak)
    edges = sum(len(targets) for targets in graph.values())
    print(f"{len(found)} import cycles among {len(graph)} modules ({edges} imports)")
    return 1 if found or leaks else 0


if __name__ == "__main__":
    sys.exit(main())
