"""Keras's fused recurrent layers, one entry per cell: the table ``TFBackend`` declares.

Read without importing TensorFlow; the factories and kernel descriptions import Keras when
called (after ``TFFusedModel`` has imported TensorFlow). Every layer is built by
``TFFusedModel`` with the same options (batch-major, full sequences and final states, zero
initializers overwritten by the given weights); a factory adds what is the cell's own.
"""
from __future__ import annotations

from typing import Any

from backends.fused import FusedLayer, LayerTensor, fused_table
from cells import GRUCell, LSTMCell, RNNCell

# kernel (in, blocks*hidden), recurrent_kernel (hidden, blocks*hidden), bias: canonical
# shapes, Keras's blocks
_PARAMS = {"U": LayerTensor("cell.kernel"), "V": LayerTensor("cell.recurrent_kernel"), "b": LayerTensor("cell.bias")}


def _lstm(cell: LSTMCell, options: dict[str, Any], gpu: bool) -> Any:
    import keras

    return keras.layers.LSTM(
        **options,
        activation="tanh",
        recurrent_activation="sigmoid",
        unit_forget_bias=False,  # the forget bias is already in the given b
        use_cudnn="auto" if gpu else False,
    )


def _gru(cell: GRUCell, options: dict[str, Any], gpu: bool) -> Any:
    import keras

    return keras.layers.GRU(
        **options,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        use_cudnn="auto" if gpu else False,
    )


def _simple_rnn(cell: RNNCell, options: dict[str, Any], gpu: bool) -> Any:
    import keras

    return keras.layers.SimpleRNN(**options, activation=cell.activation)  # sigmoid: generic loop


def _lstm_kernel(cell: LSTMCell, layer: Any, gpu: bool) -> str:
    if gpu and _keras_would_use_cudnn(layer):
        return "keras LSTM -> cuDNN (tf.function)"
    return "keras LSTM, generic while_loop (tf.function)"


def _gru_kernel(cell: GRUCell, layer: Any, gpu: bool) -> str:
    if gpu and _keras_would_use_cudnn(layer):
        return "keras GRU -> cuDNN (tf.function)"
    return "keras GRU, generic while_loop (tf.function)"


def _simple_rnn_kernel(cell: RNNCell, layer: Any, gpu: bool) -> str:
    return f"keras SimpleRNN ({cell.activation}), generic while_loop (tf.function)"


def _keras_would_use_cudnn(layer: Any) -> bool:
    """Keras's own test (activations, no unroll, bias, a GPU visible); a private helper,
    so an unknown Keras answers False rather than claiming cuDNN."""
    try:
        from keras.src.backend.tensorflow.rnn import cudnn_ok
    except ImportError:  # pragma: no cover - Keras moved it
        return False
    return bool(layer.use_cudnn in ("auto", True) and cudnn_ok(layer.activation, layer.recurrent_activation, layer.unroll, layer.use_bias))


FUSED_LAYERS = fused_table(
    FusedLayer(
        cell=LSTMCell,
        layer="keras.layers.LSTM",
        make=_lstm,
        gates=("i", "f", "g", "o"),  # Keras's i, f, c, o: its c is our g
        params=_PARAMS,
        state_order=("h", "s"),  # [h, c]: c is our s
        kernel=_lstm_kernel,
    ),
    FusedLayer(
        cell=RNNCell,
        layer="keras.layers.SimpleRNN",
        make=_simple_rnn,  # any activation of the cell: tanh or sigmoid
        gates=("h",),
        params=_PARAMS,
        state_order=("h",),
        kernel=_simple_rnn_kernel,
    ),
    FusedLayer(
        cell=GRUCell,
        layer="keras.layers.GRU",
        make=_gru,
        refuse=lambda cell: (None if cell.reset_gate == "after"
                             else "Keras's cuDNN-compatible GRU resets after the recurrent product"),
        gates=("z", "r", "n"),  # Keras's z, r, h: its h is our n; h' = z h + (1 - z) n, as the cell
        # bias (2, 3 hidden): the input bias, then the recurrent one
        params={**_PARAMS, "b": LayerTensor("cell.bias", row=0), "b_h": LayerTensor("cell.bias", row=1)},
        state_order=("h",),
        kernel=_gru_kernel,
    ),
    framework="tf",
)
