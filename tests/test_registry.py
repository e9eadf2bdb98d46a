import sys
import textwrap

import pytest

from bench import registry
from bench.errors import BenchError


@pytest.fixture
def foreign_plugin(tmp_path, monkeypatch):
    """An installed distribution that is not ours, declaring a cell entry point."""
    (tmp_path / "toy_plugin.py").write_text(textwrap.dedent('''
        from cells.rnn import RNNCell

        class ToyCell(RNNCell):
            """A plugin cell: a vanilla RNN under another name."""
            name = "toy"
    '''))
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bench.cells]\ntoy = toy_plugin:ToyCell\n")
    monkeypatch.syspath_prepend(str(tmp_path))
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
    with pytest.raises(BenchError, match=r"unknown backend 'nmupy' \(did you mean 'numpy'\?\); choose one of: numpy, tf, torch"):
        registry.get_backend("nmupy")
    with pytest.raises(BenchError, match="unknown cell 'gru'; choose one of: lstm, rnn"):
        registry.make_cell("gru")


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
