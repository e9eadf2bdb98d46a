"""The fused-layer tables (``backends/<framework>/fused.py``) hold together, and a cell
without an entry is refused in one plain line, before anything is built.

Walks every registered backend's table, so a new entry (or a new backend's table) is
checked without writing a test.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import numpy as np
import pytest

from backends.base import Backend, FUSED_IMPL, TrainSettings
from backends.fused import FusedLayer, LayerTensor, NoFusedLayer, fused_table, why_no_fused_layer
from backends.layout import NUMPY_ARRAYS, ParamLayout
from backends.spec import ModelSpec, init_params
from bench.errors import BenchError
from bench.registry import backend_names, get_backend
from cells import CellSpec, GRUCell, LSTMCell, RNNCell


def _tables() -> list:
    params = []
    for name in backend_names():
        table = get_backend(name).fused_layers
        for cell_type, entry in (table or {}).items():
            params.append(pytest.param(name, cell_type, entry, id=f"{name}-{cell_type.name}"))
    return params


def _cell(cell_type: type) -> CellSpec:
    return cell_type()


class PluginCell(CellSpec):
    """A plugin cell no framework table knows."""

    name = "plugin-cell"
    gates = ("r", "z", "n")
    state_names = ("h",)

    def recurrence(self, ops, params, z_in, state):
        return tuple(state)  # never run here


class ForgetfulLSTM(LSTMCell):
    """A subclass may change the equations: fused layers are matched by exact type."""

    name = "forgetful-lstm"


def test_both_framework_backends_declare_a_table():
    names = {name for name in backend_names() if get_backend(name).fused_layers}
    assert {"torch", "tf"} <= names


@pytest.mark.parametrize("backend_name,cell_type,entry", _tables())
def test_entry_gate_order_params_and_states_are_the_cells(backend_name, cell_type, entry):
    assert entry.cell is cell_type
    assert sorted(entry.gates) == sorted(cell_type.gates) and len(set(entry.gates)) == len(entry.gates)
    assert set(entry.params) == set(cell_type.param_names)
    assert sorted(entry.state_order) == sorted(cell_type.state_names)
    assert entry.state_in and entry.state_out  # both permutations resolve
    assert entry.layer and callable(entry.make) and callable(entry.kernel)


@pytest.mark.parametrize("backend_name,cell_type,entry", _tables())
def test_entry_layouts_round_trip_every_parameter_exactly(backend_name, cell_type, entry):
    cell = _cell(cell_type)
    shapes = cell.param_shapes(3, 4)
    rng = np.random.default_rng(0)
    for name, shape in shapes.items():
        value = rng.standard_normal(shape)
        layout = entry.layout(name)
        stored = layout.to_framework(value, NUMPY_ARRAYS)
        expected_shape = shape[::-1] if entry.params[name].transposed else shape
        assert stored.shape == expected_shape, name
        if layout.row is not None:  # one row of a stacked tensor: the others hold other parameters
            stacked = rng.standard_normal((layout.row + 2, *stored.shape))
            stacked[layout.row] = stored
            stored = stacked
        np.testing.assert_array_equal(layout.to_canonical(stored, NUMPY_ARRAYS), value, err_msg=name)


@pytest.mark.parametrize("backend_name", [n for n in backend_names() if get_backend(n).fused_layers])
def test_a_cell_without_an_entry_is_refused_in_one_plain_line(backend_name):
    backend = get_backend(backend_name)
    for cell in (PluginCell(), ForgetfulLSTM()):
        why = backend.unsupported(cell, FUSED_IMPL)
        assert why == f"{backend_name} has no fused layer for cell {cell.name!r}; use --impl cell"
        assert backend.unsupported(cell, "cell") is None


def test_only_a_refused_option_names_the_layers_limit():
    from backends.torch import TorchBackend

    why = TorchBackend.unsupported(RNNCell("sigmoid"), FUSED_IMPL)
    assert why == "torch has no fused layer for cell 'rnn' with activation='sigmoid' (nn.RNN is tanh only); use --impl cell"
    assert TorchBackend.unsupported(RNNCell("tanh"), FUSED_IMPL) is None
    assert "tanh" not in TorchBackend.unsupported(PluginCell(), FUSED_IMPL)


def test_consulting_the_tables_imports_no_framework():
    code = (
        "import sys\n"
        "from bench.registry import backend_names, get_backend\n"
        "from cells import LSTMCell, RNNCell\n"
        "for name in backend_names():\n"
        "    for cell in (LSTMCell(), RNNCell('sigmoid')):\n"
        "        get_backend(name).unsupported(cell, 'fused')\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_build_refuses_what_unsupported_refuses_before_the_backend_builds_anything():
    built = []

    class Recording(Backend):
        name: ClassVar[str] = "recording"
        impls: ClassVar[tuple[str, ...]] = ("fused",)
        default_impl: ClassVar[str] = "fused"
        fused_layers = fused_table(
            FusedLayer(cell=RNNCell, layer="rec", make=lambda *a: None, gates=("h",),
                       params={"U": LayerTensor("u"), "V": LayerTensor("v"), "b": LayerTensor("b")},
                       state_order=("h",), kernel=lambda *a: "rec",
                       refuse=lambda cell: None if cell.activation == "tanh" else "tanh only here")
        )

        @classmethod
        def make_model(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Any:
            built.append(spec.cell.name)
            return None

    settings = TrainSettings(impl="fused")
    for cell in (PluginCell(), RNNCell("sigmoid")):
        spec = ModelSpec(cell, "scalar", 1, 4, 1, 2)
        with pytest.raises(BenchError, match="recording has no fused layer"):
            Recording.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), settings)
    assert built == []
    spec = ModelSpec(RNNCell("tanh"), "scalar", 1, 4, 1, 2)
    Recording.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), settings)
    assert built == ["rnn"]


def test_jax_gru_refusal_is_data_in_its_table_entry():
    """Flax's GRUCell computes another function for either reset gate: the table's entry
    says why, through the same hook and wording as every refused option."""
    from backends.jax.fused import FUSED_LAYERS, GRU_LIMITS

    assert isinstance(FUSED_LAYERS.entry(GRUCell), NoFusedLayer) and GRUCell not in FUSED_LAYERS
    for reset_gate in ("after", "before"):
        why = why_no_fused_layer("jax", FUSED_LAYERS, GRUCell(reset_gate))
        assert why == (f"jax has no fused layer for cell 'gru' with reset_gate={reset_gate!r} "
                       f"({GRU_LIMITS[reset_gate]}); use --impl cell")
        assert Backend.unsupported.__func__(get_backend("jax"), GRUCell(reset_gate), FUSED_IMPL) == why


def test_a_closed_table_refuses_two_entries_for_one_cell_naming_both():
    def layer(name: str) -> FusedLayer:
        return FusedLayer(cell=RNNCell, layer=name, make=lambda *a: None, gates=("h",), params={},
                          state_order=("h",), kernel=lambda *a: "")

    with pytest.raises(BenchError, match=r"^two fused layers for cell 'rnn' in the one table: "
                                         r"first \(built in\) and second \(built in\)$"):
        fused_table(layer("first"), layer("second"))


def test_lstm_layout_for_torch_order_is_the_documented_block_permutation():
    """Torch and Keras stack i, f, g, o; the cell g, i, f, o: framework block k = canonical
    block (1, 2, 0, 3)[k], and torch's weights are the transpose."""
    layout = ParamLayout.between(LSTMCell.gates, ("i", "f", "g", "o"), transposed=True)
    assert layout.blocks == (1, 2, 0, 3)
    H = 2
    U = np.arange(3 * 4 * H, dtype=float).reshape(3, 4 * H)
    rows = np.r_[H:2 * H, 2 * H:3 * H, 0:H, 3 * H:4 * H]
    np.testing.assert_array_equal(layout.to_framework(U, NUMPY_ARRAYS), U[:, rows].T)
    assert ParamLayout.between(("h",), ("h",)) == ParamLayout()


def test_gate_orders_that_are_not_permutations_are_rejected():
    with pytest.raises(ValueError, match="not permutations"):
        ParamLayout.between(("g", "i", "f", "o"), ("i", "f", "c", "o"))


def test_the_refusal_wording_is_one_line_for_every_reason():
    table = fused_table(
        FusedLayer(cell=RNNCell, layer="x", make=lambda *a: None, gates=("h",), params={}, state_order=("h",),
                   kernel=lambda *a: "", refuse=lambda cell: "x is tanh only")
    )
    for cell in (PluginCell(), RNNCell("sigmoid")):
        why = why_no_fused_layer("fw", table, cell)
        assert why.startswith(f"fw has no fused layer for cell {cell.name!r}") and "\n" not in why


def test_torch_entries_build_layers_whose_tensors_have_the_layouts_shapes():
    torch = pytest.importorskip("torch")
    from backends.torch import TorchBackend

    for cell_type, entry in TorchBackend.fused_layers.items():
        cell = _cell(cell_type)
        module = entry.make(cell, input_size=3, hidden_size=4, num_layers=1, bias=True, batch_first=False,
                            device="meta", dtype=torch.float32)
        for name, (tensor, layout) in entry.held(module).items():
            canonical = np.zeros(cell.param_shapes(3, 4)[name])
            assert tuple(tensor.shape) == layout.to_framework(canonical, NUMPY_ARRAYS).shape, (cell.name, name)
        assert all(tuple(t.shape) == (4 * cell.n_blocks,) for t in entry.frozen(module))


def test_tf_entries_build_layers_whose_variables_have_the_layouts_shapes():
    pytest.importorskip("tensorflow")
    from backends.tf import TFBackend

    for cell_type, entry in TFBackend.fused_layers.items():
        cell = _cell(cell_type)
        layer = entry.make(cell, dict(units=4, return_sequences=True, return_state=True), False)
        layer.build((None, None, 3))
        for name, (var, layout) in entry.held(layer).items():
            canonical = np.zeros(cell.param_shapes(3, 4)[name])
            shape = tuple(var.shape)[1:] if layout.row is not None else tuple(var.shape)  # one row of a stack
            assert shape == layout.to_framework(canonical, NUMPY_ARRAYS).shape, (cell.name, name)
