"""The conformance-kit checks that a plugin's own tests run in this session, so that our
grid (``tests/backends/test_conformance.py``, ``test_numpy_gradients.py``) runs none twice:
``pytest tests examples/mingru/tests`` collects minGRU's cases in both."""
from __future__ import annotations

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent


def cell_key(cell) -> tuple:
    """A cell as the kit computes with it: its class and its options' values (not its name)."""
    return type(cell), tuple(sorted(cell.option_values().items()))


def case_key(case) -> tuple:
    """What makes two conformance cases the same check on the same inputs."""
    return cell_key(case.cell), case.backend, case.impl, case.task, case.check_name


class KitElsewhere:
    """The conformance-kit checks that tests outside ``tests/`` (a plugin's own, such as
    ``examples/mingru/tests``) run in this session: each case (``bench.testing.Case``, as a
    parameter), and the finite-difference check of each cell class a test calls
    ``check_finite_differences`` on (with the class's default options, as ``MyCell()``),
    each mapped to the file that runs it."""

    def __init__(self, items: list) -> None:
        from bench import testing
        from cells.base import CellSpec

        self.cases: dict[tuple, str] = {}
        self.finite_differences: dict[tuple, str] = {}
        for item in items:
            if TESTS_DIR in item.path.parents:
                continue
            where = item.nodeid.split("::")[0]
            for value in getattr(getattr(item, "callspec", None), "params", {}).values():
                if isinstance(value, testing.Case):
                    self.cases.setdefault(case_key(value), where)
            function = getattr(item, "function", None)
            if function is None or "check_finite_differences" not in function.__code__.co_names:
                continue
            for name in function.__code__.co_names:
                cls = function.__globals__.get(name)
                if isinstance(cls, type) and issubclass(cls, CellSpec):
                    defaults = tuple(sorted((option.name, option.default) for option in cls.options))
                    self.finite_differences.setdefault((cls, defaults), where)
