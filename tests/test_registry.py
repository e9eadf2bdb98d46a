import sys
import textwrap

import pytest

from bench import registry
from bench.errors import BenchError


def _install(tmp_path, monkeypatch, module: str, source: str, entry_points: str):
    """An installed distribution that is not ours: ``module`` and its entry points."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.fixture
def foreign_plugin(tmp_path, monkeypatch):
    """A plugin declaring a cell entry point."""
    _install(tmp_path, monkeypatch, "toy_plugin", '''
        from cells.rnn import RNNCell

        class ToyCell(RNNCell):
            """A plugin cell: a vanilla RNN under another name."""
            name = "toy"
    ''', "[bench.cells]\ntoy = toy_plugin:ToyCell\n")
    yield
    sys.modules.pop("toy_plugin", None)


def test_builtins_are_registered():
    assert {"numpy", "torch", "tf"} <= set(registry.backend_names())
    assert {"rnn", "lstm"} <= set(registry.cell_names())


def test_a_foreign_entry_point_is_discovered(foreign_plugin):
    assert "toy" in registry.cell_names()
    cell = registry.make_cell("toy", activation="sigmoid", forget_bias=1.0)
    assert cell.name == "toy" and cell.activation == "sigmoid"


def test_unknown_names_list_the_valid_ones_and_suggest():
    with pytest.raises(BenchError, match=r"unknown backend 'nmupy' \(did you mean 'numpy'\?\); choose one of: jax, numpy, tf, torch"):
        registry.get_backend("nmupy")
    cells = ", ".join(registry.cell_names())  # plugins installed beside the built-ins are listed too
    with pytest.raises(BenchError, match=f"unknown cell 'no-such-cell'; choose one of: {cells}$"):
        registry.make_cell("no-such-cell")
    with pytest.raises(BenchError, match=r"unknown cell 'lstn' \(did you mean 'lstm'\?\)"):
        registry.make_cell("lstn")


def test_unknown_impl_lists_the_impls():
    with pytest.raises(BenchError, match="has no impl 'fused'; choose one of: cell"):
        registry.require_available(registry.get_backend("numpy"), "fused")


def test_listing_backends_imports_no_framework():
    import subprocess

    code = (
        "import sys; from bench.cli import main; main(['list']); "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, 'framework imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "numpy" in done.stdout and "ptb-small" in done.stdout


@pytest.fixture
def option_plugin(tmp_path, monkeypatch):
    """An installed plugin cell that declares an option of its own (and no fused layer)."""
    _install(tmp_path, monkeypatch, "leaky_plugin", '''
        from cells.options import Bound, Option
        from cells.rnn import RNNCell

        class LeakyCell(RNNCell):
            """A plugin cell with a setting of its own: a tanh RNN whose new state leaks."""
            name = "leaky"
            options = RNNCell.options + (Option("leak", 0.5, "share of the old state kept", float,
                                                bound=Bound(0.0, 1.0)),)

            def __init__(self, activation="tanh", leak=0.5):
                super().__init__(activation)
                self.leak = leak

            def recurrence(self, ops, params, z_in, state):
                (h_prev,) = state
                (h,) = super().recurrence(ops, params, z_in, state)
                return (self.leak * h_prev + (1 - self.leak) * h,)
    ''', "[bench.cells]\nleaky = leaky_plugin:LeakyCell\n")
    yield
    sys.modules.pop("leaky_plugin", None)


def test_a_plugin_cells_option_is_a_flag_a_setting_and_recorded(option_plugin, tmp_path, capsys):
    from bench.cli import build_parser
    from bench.config import make_config
    from bench.run.runner import RunOptions, run

    assert "--leak" in build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    config = make_config("echo", cell="leaky", leak=0.25, epochs=1, total_series_length=1500)
    assert config.leak == 0.25 and config.as_dict()["leak"] == 0.25 and "forget_bias" not in config.as_dict()
    with pytest.raises(BenchError, match=r"--leak must be a number in \[0.0, 1.0\], got 2"):
        make_config("echo", cell="leaky", leak=2)
    with pytest.raises(BenchError, match="numpy backend has no hand-written BPTT for cell 'leaky'"):
        run(config, RunOptions(results_dir=str(tmp_path), quiet=True))  # never the RNN's BPTT for it
    pytest.importorskip("torch")
    record = run(config.replace(backend="torch", impl="cell"), RunOptions(results_dir=str(tmp_path), quiet=True)).record
    assert record["config"]["leak"] == 0.25 and record["model"]["cell_options"] == {"activation": "tanh", "leak": 0.25}
    assert record["status"] == "completed"


def test_a_plugin_cell_is_in_the_conformance_grid_and_runs_in_matrix_by_default(option_plugin):
    import argparse

    from bench.fanout.preflight import grid as matrix_grid
    from tests.conformance_cases import grid

    assert {"numpy-cell-leaky", "torch-cell-leaky", "torch-fused-leaky"} <= {p.id for p in grid()}
    assert "leaky" in matrix_grid(argparse.Namespace(backends=None, cells=None, impls=None))[1]
    from bench.registry import get_backend, make_cell

    assert "no fused layer for cell 'leaky'" in get_backend("torch").unsupported(make_cell("leaky"), "fused")


def test_the_scan_is_cached_and_a_new_import_path_is_seen(tmp_path, monkeypatch):
    """One command asks the registry thousands of times: the metadata is scanned once per
    import path, and a plugin put on the path later is still found."""
    calls = []
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda **kw: calls.append(kw) or real(**kw))
    registry.refresh()
    for _ in range(50):
        registry.cell_names()
    assert len(calls) == 1
    _install(tmp_path, monkeypatch, "late_plugin", '''
        from cells.rnn import RNNCell

        class LateCell(RNNCell):
            """A cell installed after the first scan."""
            name = "late"
    ''', "[bench.cells]\nlate = late_plugin:LateCell\n")
    try:
        assert "late" in registry.cell_names()
        assert len(calls) == 2
    finally:
        sys.modules.pop("late_plugin", None)


def test_each_group_is_one_cached_registry_with_names_list_and_get():
    assert set(registry.REGISTRIES) == {"bench.backends", "bench.cells", "bench.tasks", "bench.executors"}
    assert registry.REGISTRIES["bench.cells"] is registry.CELLS and registry.CELLS.names() == registry.cell_names()
    assert registry.CELLS.list("?ru") == ["gru"] and registry.BACKENDS.list("t*") == ["tf", "torch"]
    assert registry.CELLS.list() == registry.CELLS.names() and registry.TASKS.list("no-such-*") == []
    assert registry.CELLS.get("lstm") is registry.get_cell_class("lstm")
    with pytest.raises(BenchError, match=r"^unknown task 'ecko' \(did you mean 'echo'\?\); choose one of: "):
        registry.TASKS.get("ecko")


def test_a_registry_refreshed_reads_the_metadata_again(monkeypatch):
    registry.CELLS.names()
    calls = []
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda **kw: calls.append(kw["group"]) or real(**kw))
    registry.TASKS.refresh()
    registry.TASKS.names()
    registry.TASKS.names()
    registry.TASKS.refresh()
    registry.TASKS.list("e*")
    registry.CELLS.names()  # not refreshed: its scan is kept
    assert calls == ["bench.tasks", "bench.tasks"]


@pytest.fixture
def executor_plugin(tmp_path, monkeypatch):
    """A plugin declaring an executor that skips every job, and one entry that is no executor."""
    _install(tmp_path, monkeypatch, "skip_executor", '''
        from contextlib import contextmanager

        from bench.fanout.executors import ExecutorPlugin
        from bench.fanout.jobs import Outcome

        @contextmanager
        def _open(address):
            yield lambda jobs: [Outcome(label, "skipped", 0.0, "skip executor") for label, _ in jobs]

        SKIP = ExecutorPlugin(check=lambda address: None, open=_open)
        NOT_AN_EXECUTOR = "nothing"
    ''', "[bench.executors]\nskip = skip_executor:SKIP\nbroken = skip_executor:NOT_AN_EXECUTOR\n")
    yield
    sys.modules.pop("skip_executor", None)


def test_executors_are_a_group_and_the_clis_choices_come_from_it(executor_plugin):
    from bench.cli import build_parser
    from bench.fanout.executors import check_executor, make_executor

    assert {"local", "ray", "skip"} <= set(registry.executor_names())
    matrix = build_parser()._subparsers._group_actions[0].choices["matrix"]
    (executor,) = [action for action in matrix._actions if action.dest == "executor"]
    assert list(executor.choices) == registry.executor_names()
    check_executor("skip", None)
    with make_executor("skip") as run_jobs:
        assert [o.status for o in run_jobs([("a", ["run"]), ("b", ["run"])])] == ["skipped", "skipped"]
    with pytest.raises(BenchError, match=r"^executor 'broken' is a str, not a bench.fanout.executors.ExecutorPlugin$"):
        check_executor("broken", None)
    with pytest.raises(BenchError, match=r"^unknown executor 'locl' \(did you mean 'local'\?\)"):
        check_executor("locl", None)


def test_the_builtin_executors_check_their_settings_as_before():
    from bench.fanout.executors import check_executor, make_executor
    from bench.fanout.jobs import run_all

    with pytest.raises(BenchError, match=r"^--address auto joins a Ray cluster: add --executor ray$"):
        check_executor("local", "auto")
    with make_executor("local") as run_jobs:
        assert run_jobs is run_all
    pytest.importorskip("ray")
    check_executor("ray", "ray://head:10001")
    with pytest.raises(BenchError, match=r"^--address must be auto, HOST:PORT or ray://HOST:PORT"):
        check_executor("ray", "head")
