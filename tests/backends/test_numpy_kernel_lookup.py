"""Which kernel the numpy backend runs for a cell: the cell's own ``numpy_kernel()`` first,
then the built-in table by exact type, else the one-line refusal."""
from __future__ import annotations

import pytest

from backends.numpy.kernels import KERNELS, GRUKernel, LSTMKernel, RNNKernel, make_kernel, why_no_kernel
from bench.errors import BenchError
from cells import CellSpec, GRUCell, LSTMCell, RNNCell


class OwnKernelRNN(RNNCell):
    """A subclass that brings its own kernel: it comes before the RNN's table entry."""

    name = "own-kernel-rnn"

    def numpy_kernel(self) -> object:
        return "own kernel"


class PlainSubclassRNN(RNNCell):
    """A subclass without a kernel of its own: the RNN's BPTT may not fit its equations."""

    name = "plain-subclass-rnn"


def test_the_builtin_cells_declare_none_and_are_served_from_the_table():
    assert CellSpec.numpy_kernel(RNNCell()) is None and set(KERNELS) == {LSTMCell, RNNCell, GRUCell}
    assert isinstance(make_kernel(LSTMCell()), LSTMKernel)
    assert make_kernel(RNNCell("sigmoid")).activation == "sigmoid"
    assert isinstance(make_kernel(GRUCell("before")), GRUKernel) and not make_kernel(GRUCell("before")).after
    assert isinstance(make_kernel(RNNCell()), RNNKernel) and why_no_kernel(RNNCell()) is None


def test_a_cells_own_kernel_comes_before_the_table():
    assert make_kernel(OwnKernelRNN()) == "own kernel" and why_no_kernel(OwnKernelRNN()) is None


def test_a_cell_without_a_kernel_is_refused_in_one_line_even_a_subclass_of_a_builtin():
    why = why_no_kernel(PlainSubclassRNN())
    assert why == ("the numpy backend has no hand-written BPTT for cell 'plain-subclass-rnn'; the cell must define "
                   "numpy_kernel() (see README, 'Adding a cell')")
    with pytest.raises(BenchError) as caught:
        make_kernel(PlainSubclassRNN())
    assert str(caught.value) == why
