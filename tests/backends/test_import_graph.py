"""Layers point one way below the runner: ``cells/`` and ``backends/`` never import
``bench/``, and no module of theirs imports one that imports it back (lazy imports inside
functions included: a cycle is a cycle even when it only closes at run time)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cells", "backends")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the two packages -> every module it names in an import statement."""
    modules = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = named
    return graph


def test_cells_and_backends_never_import_bench():
    offenders = {name: sorted(m for m in named if m == "bench" or m.startswith("bench."))
                 for name, named in _imports().items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    edges = {name: {m for m in named if m in graph and m != name} for name, named in graph.items()}
    cycles = []

    def visit(name: str, path: list[str], done: set[str]) -> None:
        if name in path:
            cycles.append(path[path.index(name):] + [name])
            return
        if name in done:
            return
        for other in sorted(edges[name]):
            visit(other, path + [name], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(edges):
        visit(name, [], done)
    assert cycles == []
