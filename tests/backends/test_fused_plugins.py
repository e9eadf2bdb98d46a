"""A plugin adds a fused layer to a framework's table through an entry point
(``bench.fused.<backend>``), without editing ours; a clash with an entry already there, or
an entry point that is no layer, is one line naming what clashed."""
from __future__ import annotations

import sys

import pytest

from backends.base import FUSED_IMPL
from bench.errors import BenchError
from bench.registry import get_backend
from cells import LSTMCell
from tests.test_registry import _install

_PLUGIN = '''
    from backends.fused import FusedLayer, LayerTensor
    from cells import LSTMCell
    from cells.rnn import RNNCell

    class TwinCell(RNNCell):
        """A plugin cell: a vanilla RNN under another name."""
        name = "twin"

    def _make(cell, **options):
        import torch

        return torch.nn.RNN(nonlinearity=cell.activation, **options)

    _PARAMS = {"U": LayerTensor("weight_ih_l0", transposed=True), "V": LayerTensor("weight_hh_l0", transposed=True),
               "b": LayerTensor("bias_ih_l0")}
    TWIN = FusedLayer(cell=TwinCell, layer="torch.nn.RNN (twin)", make=_make, gates=("h",), params=_PARAMS,
                      frozen_zero=("bias_hh_l0",), state_order=("h",), kernel=lambda device, dtype: "aten",
                      refuse=lambda cell: None if cell.activation == "tanh" else "twin is tanh only")
    CLASH = FusedLayer(cell=LSTMCell, layer="plugin.LSTM", make=_make, gates=("g", "i", "f", "o"),
                       params=_PARAMS, state_order=("s", "h"), kernel=lambda device, dtype: "aten")
    NOT_A_LAYER = object()
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Installs the plugin module with the given entry points (for this test only)."""

    def done(entry_points: str) -> None:
        _install(tmp_path, monkeypatch, "twin_plugin", _PLUGIN, entry_points)

    yield done
    sys.modules.pop("twin_plugin", None)


def test_an_entry_point_adds_a_fused_layer_to_the_backends_table(install):
    torch = get_backend("torch")
    install("[bench.fused.torch]\ntwin = twin_plugin:TWIN\n")
    from twin_plugin import TWIN, TwinCell

    assert torch.fused_layers[TwinCell] is TWIN and LSTMCell in torch.fused_layers
    assert torch.unsupported(TwinCell(), FUSED_IMPL) is None
    assert torch.unsupported(TwinCell("sigmoid"), FUSED_IMPL) == (
        "torch has no fused layer for cell 'twin' with activation='sigmoid' (twin is tanh only); use --impl cell")
    assert get_backend("tf").unsupported(TwinCell(), FUSED_IMPL) == "tf has no fused layer for cell 'twin'; use --impl cell"


def test_the_plugins_layer_is_gone_once_the_plugin_is(install, monkeypatch):
    torch = get_backend("torch")
    install("[bench.fused.torch]\ntwin = twin_plugin:TWIN\n")
    from twin_plugin import TwinCell

    assert TwinCell in torch.fused_layers
    monkeypatch.undo()  # the plugin's directory leaves the import path
    assert TwinCell not in torch.fused_layers and len(torch.fused_layers) == 3


def test_two_layers_for_one_cell_are_one_line_naming_both(install):
    install("[bench.fused.torch]\nmy-lstm = twin_plugin:CLASH\n")
    with pytest.raises(BenchError) as caught:
        get_backend("torch").unsupported(LSTMCell(), FUSED_IMPL)
    assert str(caught.value) == ("two fused layers for cell 'lstm' in the torch table: torch.nn.LSTM (built in) "
                                 "and plugin.LSTM (entry point my-lstm = twin_plugin:CLASH)")


def test_an_entry_point_that_is_no_layer_is_one_line(install):
    install("[bench.fused.jax]\nbad = twin_plugin:NOT_A_LAYER\n")
    with pytest.raises(BenchError, match=r"^entry point bad = twin_plugin:NOT_A_LAYER \(group bench.fused.jax\) "
                                         r"loads a value of type 'object', not a backends.fused.FusedLayer$"):
        get_backend("jax").unsupported(LSTMCell(), FUSED_IMPL)


def test_an_entry_point_that_fails_to_load_is_one_line(install):
    install("[bench.fused.tf]\nmissing = twin_plugin:NOWHERE\n")
    with pytest.raises(BenchError, match=r"^fused layer 'missing' \(twin_plugin:NOWHERE, group bench.fused.tf\) "
                                         r"failed to load: .*NOWHERE"):
        get_backend("tf").unsupported(LSTMCell(), FUSED_IMPL)
