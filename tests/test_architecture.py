"""The house's layers point one way: ``bench`` (orchestration) -> ``backends`` (how a framework
runs a model) -> ``cells`` (what a cell is), and no module imports one that imports it back.
Read from the source, every import counted (those inside functions too), so a lazy import
cannot hide an arrow pointing up."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("bench", "backends", "cells")  # each may import only the ones after it


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports, by absolute name."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)  # annotations only: no arrow at run time
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("lower", ["cells", "backends"])
def test_a_lower_layer_imports_nothing_above_it(lower):
    above = LAYERS[: LAYERS.index(lower)]
    upward = {name: sorted(d for d in deps if d.split(".")[0] in above)
              for name, deps in GRAPH.items() if name.split(".")[0] == lower}
    assert {name: deps for name, deps in upward.items() if deps} == {}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_no_module_imports_one_that_imports_it_back():
    assert _cycles() == []


# Inside bench/: the command line (cli, __main__; run_flags, the flags of `bench run`, which
# fan-out passes on to each run) may import anything, and no room imports cli; the rest
# is in rooms whose arrows point one way. The shared core (config, registry, tasks, data,
# storage, documents, ...) imports none of the rooms; one run knows nothing of many runs,
# measurement or the report; the report reads records, never a run, a model or the test kit.
COMMAND_LINE = {"bench.__main__", "bench.cli", "bench.run_flags"}
ROOMS = ("bench.run", "bench.fanout", "bench.measure", "bench.report")
MAY_NOT_IMPORT = {
    "bench.run": ("bench.fanout", "bench.measure", "bench.report", "bench.testing"),
    "bench.fanout": ("bench.report", "bench.testing"),
    "bench.measure": ("bench.fanout", "bench.report", "bench.testing"),
    "bench.report": ("bench.run", "bench.fanout", "bench.measure", "bench.testing", "backends", "cells"),
}


def _room(module: str) -> str | None:
    return next((room for room in ROOMS if module == room or module.startswith(room + ".")), None)


def _within(module: str, names: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


def test_the_shared_core_imports_no_room_and_no_command_line():
    core = {name for name in GRAPH if name.split(".")[0] == "bench" and _room(name) is None and name not in COMMAND_LINE}
    assert {name: sorted(d for d in GRAPH[name] if _room(d) or d in COMMAND_LINE) for name in core
            if any(_room(d) or d in COMMAND_LINE for d in GRAPH[name])} == {}


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_what_it_may(room):
    members = [name for name in GRAPH if _room(name) == room]
    assert members, f"no modules in {room}"
    wrong = {name: sorted(d for d in GRAPH[name] if d in ("bench.__main__", "bench.cli") or _within(d, MAY_NOT_IMPORT[room]))
             for name in members}
    assert {name: deps for name, deps in wrong.items() if deps} == {}


def test_the_walk_sees_lazy_imports():
    """The runner imports its factory at the top, the factory the registry; and a lazy
    import inside a function (the torch backend's build) is seen too."""
    assert "bench.run.factory" in GRAPH["bench.run.runner"] and "bench.registry" in GRAPH["bench.run.factory"]
    assert any(name.startswith("backends.torch.") for name in GRAPH["backends.torch"])


def test_listing_every_plugin_imports_no_framework():
    """`bench list` loads every backend, cell and task entry point: none may import torch or
    TensorFlow (seconds and hundreds of MB) just to be listed."""
    code = ("import sys; from bench import registry as r; "
            "[r.get_backend(n) for n in r.backend_names()]; [r.get_cell_class(n) for n in r.cell_names()]; "
            "[r.get_task_class(n) for n in r.task_names()]; import bench.config, bench.cli; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# What a report may know of tasks, cells and presets is what the records declare
# (bench.declarations): only bench.report.legacy, for records written before they did,
# asks the registry, the settings' module, the tasks or the declarations' builder.
PLUGIN_KNOWLEDGE = ("bench.registry", "bench.config", "bench.tasks", "bench.declarations", "bench.data")


def test_the_report_reads_records_and_asks_no_plugin():
    members = [name for name in GRAPH if _room(name) == "bench.report" and name != "bench.report.legacy"]
    asks = {name: sorted(d for d in GRAPH[name] if _within(d, PLUGIN_KNOWLEDGE)) for name in members}
    assert {name: deps for name, deps in asks.items() if deps} == {}
    assert "bench.registry" in GRAPH["bench.report.legacy"]  # the door exists, and the walk sees it


def test_the_report_names_no_task_and_no_cell():
    """No task's or cell's name, nor a setting of one, stands in the report's code as a
    string: what it needs of them the records declare."""
    from bench.registry import cell_names, declared_options, task_names

    names = set(task_names()) | set(cell_names()) | set(declared_options())
    found = {}
    for path in (ROOT / "bench" / "report").glob("*.py"):
        if path.name == "legacy.py":
            continue
        strings = {node.value for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        if named := sorted(strings & names):
            found[path.name] = named
    assert found == {}
