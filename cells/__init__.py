"""What a recurrent cell IS, independent of any framework.

Each cell declares its parameters (names, shapes, gate order), how they are initialised
from a seeded ``numpy.random.Generator``, and its step equations written once against a
small ``ops`` namespace, so the very same equations run in NumPy (the reference), PyTorch
and TensorFlow.
"""
from cells.base import CellSpec, NUMPY_OPS, Ops
from cells.gru import GRUCell
from cells.lstm import LSTMCell
from cells.rnn import RNNCell

__all__ = ["CellSpec", "GRUCell", "LSTMCell", "NUMPY_OPS", "Ops", "RNNCell"]
