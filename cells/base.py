"""The contract every cell fulfils, and the tiny ops namespace its equations are written in."""
from __future__ import annotations

from abc import ABC
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


# Every cell's input enters through one projection, ``z_in = x U + b``: backends compute it for
# a whole window in one GEMM; every other parameter belongs to the recurrence.
INPUT_PARAMS = ("U", "b")


class CellSpec(ABC):
    """One recurrent cell: parameters, initialisation and step equations.

    A layer's parameters are named by ``param_names``, in a fixed order, with their shapes
    from :meth:`param_shapes`; ``biases`` says which of them are biases. Two are every
    cell's, the input projection (:data:`INPUT_PARAMS`):

    - ``U``: ``(input_size, n_blocks * hidden)``, input weights, one block per gate,
    - ``b``: ``(n_blocks * hidden,)``, their bias;

    the rest are the recurrence's own, by default

    - ``V``: ``(hidden, n_blocks * hidden)``, recurrent weights, same blocks

    (the GRU adds a recurrent bias ``b_h``; a cell may have none, as minGRU). The blocks are
    stacked in the order of ``gates`` (so all gates are one GEMM). The state is a tuple of
    arrays of shape ``(batch, hidden)`` named by ``state_names``; the layer's output is
    always the last of them (``h``).
    """

    name: ClassVar[str]
    gates: ClassVar[tuple[str, ...]]
    state_names: ClassVar[tuple[str, ...]]
    param_names: tuple[str, ...] = ("U", "V", "b")
    biases: tuple[str, ...] = ("b",)
    # Settings that change the function the cell computes; each is a `bench run` flag and a
    # keyword of the constructor, and a record keeps the values of its cell's options.
    options: ClassVar[tuple[Option, ...]] = ()

    @property
    def n_blocks(self) -> int:
        return len(self.gates)

    @property
    def recurrent_names(self) -> tuple[str, ...]:
        """The parameters of the recurrence: all but the input projection's."""
        return tuple(name for name in self.param_names if name not in INPUT_PARAMS)

    def recurrent_products(self, hidden_size: int) -> list[tuple[int, int]]:
        """``(k, n)`` of each matrix product the recurrence computes per step, ``(batch, k) @
        (k, n)``: one per recurrent weight matrix (``V``: ``(hidden, blocks*hidden)``; none
        for a cell without recurrent weights). What FLOP counts and the roofline count."""
        shapes = self.param_shapes(hidden_size, hidden_size)
        return [shapes[name] for name in self.recurrent_names if len(shapes[name]) == 2]

    def param_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """One layer's parameters, named and ordered as ``param_names``: the weights as the
        class says, every bias ``(n_blocks * hidden,)``."""
        width = self.n_blocks * hidden_size
        weights = {"U": (input_size, width), "V": (hidden_size, width)}
        return {name: (width,) if name in self.biases else weights[name] for name in self.param_names}

    def init_params(
        self, input_size: int, hidden_size: int, init_scale: float, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Weights uniform in ±init_scale, drawn in ``param_names`` order; biases zero (then
        :meth:`adjust_biases`).

        Zero cell biases follow TensorFlow's BasicLSTMCell, which the published PTB runs used.
        The draw order is fixed, so every backend built from the same seed starts from the
        same numbers.
        """
        params = {
            name: np.zeros(shape) if name in self.biases else rng.uniform(-init_scale, init_scale, shape)
            for name, shape in self.param_shapes(input_size, hidden_size).items()
        }
        self.adjust_biases(params, hidden_size)
        return params

    def adjust_biases(self, params: dict[str, np.ndarray], hidden_size: int) -> None:
        """Hook for cells whose biases start away from zero (the LSTM forget bias)."""

    def gate_slice(self, gate: str, hidden_size: int) -> slice:
        k = self.gates.index(gate)
        return slice(k * hidden_size, (k + 1) * hidden_size)

    def step(self, ops: Ops, params: dict[str, Any], x: Any, state: Sequence[Any]) -> tuple[Any, ...]:
        """One time step: ``x`` is ``(batch, input_size)``; returns the new state tuple.

        The input enters every cell only through ``x U + b``, so backends compute that
        projection for a whole window in one GEMM and call :meth:`recurrence` per step.
        """
        return self.recurrence(ops, self.recurrent_params(params), x @ params["U"] + params["b"], state)

    def recurrent_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The recurrence's entries of a layer's parameters (or of anything named like them)."""
        return {name: params[name] for name in self.recurrent_names}

    def recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any, state: Sequence[Any]) -> tuple[Any, ...]:
        """The step given its input projection ``z_in = x_t U + b`` ``(batch, blocks*hidden)``
        and the recurrence's parameters (``V``, ...) by name.

        Every cell defines it, or declares :meth:`linear_recurrence` instead, from which it
        follows: ``h_t = a_t * h_{t-1} + b_t``."""
        a, b = self.linear_recurrence(ops, params, z_in)
        (h_prev,) = state
        return (a * h_prev + b,)

    def linear_recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any) -> tuple[Any, Any]:
        """``(a, b)`` of a cell whose step is linear in its state, ``h_t = a_t * h_{t-1} + b_t``
        (element-wise), with ``a`` and ``b`` ``(..., hidden)`` functions of the input
        projection ``z_in`` ``(..., blocks*hidden)`` (and the recurrence's parameters) alone.

        A cell that declares it has one state, ``h``, and need not write :meth:`recurrence`.
        Written on the last axis only (``z_in[..., :n]``), the same lines give one step's
        ``a`` and ``b`` or a whole window's ``(steps, batch, ...)`` at once, which is what
        lets a backend's ``scan`` impl combine them over time in one parallel pass
        (:attr:`is_linear` says whether a cell declares it)."""
        raise NotImplementedError(f"cell {self.name!r} defines neither its recurrence nor a linear recurrence")

    @property
    def is_linear(self) -> bool:
        """Whether the cell declares :meth:`linear_recurrence` (the ``scan`` impls run it)."""
        return type(self).linear_recurrence is not CellSpec.linear_recurrence

    def linear_recurrence_grad(
        self, params: dict[str, np.ndarray], z_in: np.ndarray, da: np.ndarray, db: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The hand-written derivative of :meth:`linear_recurrence` on NumPy arrays, for the
        numpy backend's ``scan`` (NumPy has no autodiff): given the loss's gradients ``da``
        and ``db`` ``(..., hidden)`` (full shape, also where ``a`` broadcasts), the gradient
        with respect to ``z_in`` ``(..., blocks*hidden)`` and to each of ``params`` by name
        (summed over the leading axes). Optional: a cell without it runs ``scan`` on the
        frameworks, not on numpy (:attr:`has_linear_grad`)."""
        raise NotImplementedError(f"cell {self.name!r} declares no derivative of its linear recurrence")

    @property
    def has_linear_grad(self) -> bool:
        """Whether the cell writes :meth:`linear_recurrence_grad` (the numpy ``scan`` needs it)."""
        return type(self).linear_recurrence_grad is not CellSpec.linear_recurrence_grad

    def numpy_kernel(self) -> Any | None:
        """The numpy backend's hand-written kernel for this cell, or None (the default) for
        none of its own: the backend then looks in its table of built-in kernels, keyed by
        exact cell type (``backends/numpy/kernels.py``), and refuses the cell if it is not
        there.

        The object runs one layer over a time-major window through two methods:

        - ``forward(P, params, state) -> (hs, final_state, cache)``: ``P = x U + b``
          ``(steps, batch, blocks*hidden)``, the recurrence's parameters by name
          (:meth:`recurrent_params`) and the initial state tuple in; every step's output
          ``(steps, batch, hidden)``, the final state tuple and what the backward needs out;
        - ``backward(dhs, params, cache, trace) -> (dZ, grads, norms)``: the gradient of the
          loss with respect to every step's output in; the gradient with respect to ``P``,
          each recurrent parameter's gradient by name, and with ``trace`` the per-example
          norms of the gradient with respect to each state at every step
          (``{"h": (steps, batch)}``, ``"s"`` too for a cell state) out.

        The conformance kit (``bench/testing.py``) holds it to the float64 reference.
        """
        return None

    def option_values(self) -> dict[str, Any]:
        """This cell's value of each of its declared :attr:`options`."""
        return {option.name: getattr(self, option.name) for option in self.options}
