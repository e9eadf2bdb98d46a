"""The contract every cell fulfils, and the tiny ops namespace its equations are written in."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from cells.options import Option


@dataclass(frozen=True)
class Ops:
    """The few element-wise functions a cell's step needs beyond ``@``, ``*`` and ``+``.

    Writing the step against this namespace lets one set of equations run on NumPy arrays,
    torch tensors and TensorFlow tensors alike: the backends pass their own functions.
    """

    tanh: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: exact, and never overflows in exp for large |x|
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


NUMPY_OPS = Ops(tanh=np.tanh, sigmoid=_np_sigmoid)


class CellSpec(ABC):
    """One recurrent cell: parameters, initialisation and step equations.

    Parameters of one layer are named by ``param_names``: the three arrays

    - ``U``: ``(input_size, n_blocks * hidden)``, input weights, one block per gate,
    - ``V``: ``(hidden, n_blocks * hidden)``, recurrent weights, same blocks,
    - ``b``: ``(n_blocks * hidden,)``, bias,

    where the blocks are stacked in the order of ``gates`` (so all gates are one GEMM).
    The state is a tuple of arrays of shape ``(batch, hidden)`` named by ``state_names``;
    the layer's output is always the last of them (``h``).
    """

    name: ClassVar[str]
    gates: ClassVar[tuple[str, ...]]
    state_names: ClassVar[tuple[str, ...]]
    param_names: ClassVar[tuple[str, ...]] = ("U", "V", "b")
    # Settings that change the function the cell computes; each is a `bench run` flag and a
    # keyword of the constructor, and a record keeps the values of its cell's options.
    options: ClassVar[tuple[Option, ...]] = ()

    @property
    def n_blocks(self) -> int:
        return len(self.gates)

    def param_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """One layer's parameters, named and ordered as ``param_names``."""
        width = self.n_blocks * hidden_size
        shapes = {"U": (input_size, width), "V": (hidden_size, width), "b": (width,)}
        return {name: shapes[name] for name in self.param_names}

    def init_params(
        self, input_size: int, hidden_size: int, init_scale: float, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Weights uniform in ±init_scale, biases zero (then ``adjust_bias``).

        Zero cell biases follow TensorFlow's BasicLSTMCell, which the published PTB runs used.
        Draw order is fixed (U then V) so every backend built from the same seed starts
        from the same numbers.
        """
        shapes = self.param_shapes(input_size, hidden_size)
        params = {
            "U": rng.uniform(-init_scale, init_scale, shapes["U"]),
            "V": rng.uniform(-init_scale, init_scale, shapes["V"]),
            "b": np.zeros(shapes["b"]),
        }
        self.adjust_bias(params["b"], hidden_size)
        return params

    def adjust_bias(self, b: np.ndarray, hidden_size: int) -> None:
        """Hook for cells whose bias starts away from zero (the LSTM forget bias)."""

    def gate_slice(self, gate: str, hidden_size: int) -> slice:
        k = self.gates.index(gate)
        return slice(k * hidden_size, (k + 1) * hidden_size)

    def step(self, ops: Ops, params: dict[str, Any], x: Any, state: Sequence[Any]) -> tuple[Any, ...]:
        """One time step: ``x`` is ``(batch, input_size)``; returns the new state tuple.

        The input enters every cell only through ``x U + b``, so backends compute that
        projection for a whole window in one GEMM and call :meth:`recurrence` per step.
        """
        return self.recurrence(ops, params["V"], x @ params["U"] + params["b"], state)

    @abstractmethod
    def recurrence(self, ops: Ops, V: Any, z_in: Any, state: Sequence[Any]) -> tuple[Any, ...]:
        """The step given its input projection ``z_in = x_t U + b`` ``(batch, blocks*hidden)``."""

    def option_values(self) -> dict[str, Any]:
        """This cell's value of each of its declared :attr:`options`."""
        return {option.name: getattr(self, option.name) for option in self.options}
