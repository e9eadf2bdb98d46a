"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), a cellbench cell plugin."""
from minlstm.cell import MinLSTMCell
from minlstm.kernel import MinLSTMKernel

__all__ = ["MinLSTMCell", "MinLSTMKernel"]
