"""Flax's recurrent cells, one entry per cell: the table ``JaxBackend`` declares.

Read without importing JAX; the factories import Flax when called. Each layer is Flax's
cell under ``flax.linen.RNN`` (a ``lax.scan`` over time, time-major), applied to
variables mapped from the canonical weights inside the compiled step. Flax keeps one
tensor per gate (``ii``, ``if``, ... of ``OptimizedLSTMCell``): a path with ``{gate}``
names one such tensor per gate block, in the entry's gate order; a path without it holds
the whole parameter. The GRU's entry has no layer to build: ``flax.linen.GRUCell`` has no
recurrent bias in its r and z gates, which the cell trains, and resets after the recurrent
product; the entry says which, by the cell's ``reset_gate``.
"""
from __future__ import annotations

from typing import Any

from backends.fused import FusedLayer, LayerTensor, NoFusedLayer, fused_table
from cells import GRUCell, LSTMCell, RNNCell

# why flax.linen.GRUCell computes another function, by the GRU's reset_gate
GRU_LIMITS = {
    "after": "flax.linen.GRUCell has a recurrent bias in n only, none in r and z, so it cannot train the cell's b_h",
    "before": "flax.linen.GRUCell resets after the recurrent product",
}


def _lstm(cell: LSTMCell, hidden_size: int, dtype: Any) -> Any:
    import flax.linen as nn

    return nn.RNN(nn.OptimizedLSTMCell(features=hidden_size, dtype=dtype, param_dtype=dtype),
                  time_major=True, return_carry=True)


def _simple(cell: RNNCell, hidden_size: int, dtype: Any) -> Any:
    import flax.linen as nn
    import jax

    activation = jax.nn.sigmoid if cell.activation == "sigmoid" else jax.numpy.tanh
    return nn.RNN(nn.SimpleCell(features=hidden_size, activation_fn=activation, dtype=dtype, param_dtype=dtype),
                  time_major=True, return_carry=True)


FUSED_LAYERS = fused_table(
    FusedLayer(
        cell=LSTMCell,
        layer="flax.linen.OptimizedLSTMCell",
        make=_lstm,
        gates=("i", "f", "g", "o"),  # ii|if|ig|io: Flax's g is our g
        # (in, H) input kernels without a bias; (H, H) recurrent kernels with the one bias
        params={"U": LayerTensor("i{gate}.kernel"), "V": LayerTensor("h{gate}.kernel"),
                "b": LayerTensor("h{gate}.bias")},
        state_order=("s", "h"),  # carry (c, h): c is our s
        kernel=lambda cell: "flax OptimizedLSTMCell under nn.RNN (lax.scan), XLA",
    ),
    FusedLayer(
        cell=RNNCell,
        layer="flax.linen.SimpleCell",
        make=_simple,  # tanh or sigmoid: SimpleCell takes any activation_fn
        gates=("h",),
        params={"U": LayerTensor("i.kernel"), "V": LayerTensor("h.kernel"), "b": LayerTensor("i.bias")},
        state_order=("h",),
        kernel=lambda cell: f"flax SimpleCell ({cell.activation}) under nn.RNN (lax.scan), XLA",
    ),
    NoFusedLayer(cell=GRUCell, layer="flax.linen.GRUCell", refuse=lambda cell: GRU_LIMITS[cell.reset_gate]),
    framework="jax",
)
