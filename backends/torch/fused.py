"""torch's fused recurrent layers, one entry per cell: the table ``TorchBackend`` declares.

Read without importing torch; the factories and kernel descriptions import it when called.
Every layer is single-layer and time-major, built by ``FusedModel`` with the same module
options. For the LSTM and the RNN, ``bias_hh_l0`` is held at zero and frozen: torch adds
both biases and each would receive the same gradient, moving the canonical single ``b``
twice as fast. The GRU's is its recurrent bias ``b_h`` (inside the reset gate's product).
"""
from __future__ import annotations

from typing import Any

from backends.fused import FusedLayer, LayerTensor, fused_table
from cells import GRUCell, LSTMCell, RNNCell

# nn.LSTM / nn.RNN: weight_ih_l0 is (blocks*hidden, in) = Uᵀ with torch's blocks, and so on
_PARAMS = {
    "U": LayerTensor("weight_ih_l0", transposed=True),
    "V": LayerTensor("weight_hh_l0", transposed=True),
    "b": LayerTensor("bias_ih_l0"),
}


def _lstm(cell: LSTMCell, **options: Any) -> Any:
    import torch

    return torch.nn.LSTM(**options)


def _rnn(cell: RNNCell, **options: Any) -> Any:
    import torch

    return torch.nn.RNN(nonlinearity=cell.activation, **options)


def _gru(cell: GRUCell, **options: Any) -> Any:
    import torch

    return torch.nn.GRU(**options)


def _kernel(device: Any, dtype: Any, onednn_on_cpu: bool = False) -> str:
    import torch

    if device.type == "cuda":
        if torch.backends.cudnn.enabled and torch.backends.cudnn.is_available():
            return "cudnn"
        return "aten (native CUDA RNN)"
    # torch's CPU dispatch (aten/src/ATen/native/RNN.cpp, use_mkldnn): LSTM, float32, mkldnn on
    if onednn_on_cpu and dtype == torch.float32 and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        return "mkldnn (oneDNN LSTM)"
    return "aten (native CPU RNN)"


FUSED_LAYERS = fused_table(
    FusedLayer(
        cell=LSTMCell,
        layer="torch.nn.LSTM",
        make=_lstm,
        gates=("i", "f", "g", "o"),  # W_ii|W_if|W_ig|W_io in nn.LSTM's docs
        params=_PARAMS,
        frozen_zero=("bias_hh_l0",),
        state_order=("h", "s"),  # (h_0, c_0): c is our s
        kernel=lambda device, dtype: _kernel(device, dtype, onednn_on_cpu=True),
    ),
    FusedLayer(
        cell=RNNCell,
        layer="torch.nn.RNN",
        make=_rnn,
        refuse=lambda cell: None if cell.activation == "tanh" else "nn.RNN is tanh only",
        gates=("h",),
        params=_PARAMS,
        frozen_zero=("bias_hh_l0",),
        state_order=("h",),
        kernel=_kernel,
    ),
    FusedLayer(
        cell=GRUCell,
        layer="torch.nn.GRU",
        make=_gru,
        refuse=lambda cell: None if cell.reset_gate == "after" else "nn.GRU resets after the recurrent product",
        gates=("r", "z", "n"),  # W_ir|W_iz|W_in in nn.GRU's docs; h' = (1 - z) n + z h, as the cell
        params={**_PARAMS, "b_h": LayerTensor("bias_hh_l0")},
        state_order=("h",),
        kernel=_kernel,
    ),
    framework="torch",
)
