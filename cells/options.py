"""A setting, declared where it belongs: the run's own settings in ``bench.config``, a cell's
(the LSTM's forget bias, the RNN's activation) on the cell class, a task's (the echo lag) on
the task. Each one is a ``bench run`` flag and is checked the same way, before anything
runs: its type, its choices, and a :class:`Bound` whose limits may follow the run's dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cells.errors import BenchError, unknown_name

INT32_MAX = 2**31 - 1
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class DtypeLimit:
    """A limit that moves with ``--dtype``: the dtype's largest finite number (``max``,
    times ``sign``, over ``divisor``) or its smallest normal one (``tiny``)."""

    which: str
    sign: int = 1
    divisor: int = 1

    def __call__(self, dtype: str) -> float:
        info = np.finfo(dtype)
        return self.sign * float(info.max if self.which == "max" else info.tiny) / self.divisor


LARGEST, SMALLEST_NORMAL = DtypeLimit("max"), DtypeLimit("tiny")
IN_DTYPE = "representable in {dtype}"


@dataclass(frozen=True)
class Bound:
    """A numeric setting's valid values, ``low <= value <= high``; NaN fails both comparisons,
    so it is refused with the rest. ``why`` says where the limits come from."""

    low: float | DtypeLimit
    high: float | DtypeLimit
    why: str = ""

    def limits(self, dtype: str) -> tuple[float, float]:
        low, high = (x(dtype) if isinstance(x, DtypeLimit) else x for x in (self.low, self.high))
        return low, high

    def holds(self, value: float, dtype: str) -> bool:
        low, high = self.limits(dtype)
        return low <= value <= high

    def interval(self, dtype: str = "float32", exact: bool = True) -> str:
        """``[1, 2**31 - 1]``; with ``exact`` False, floats to 2 digits."""
        low, high = (_number(x, exact) for x in self.limits(dtype))
        return f"[{low}, {high}]"

    def text(self, dtype: str, integer: bool) -> str:
        """``an integer in [1, 2**31 - 1] (why)``."""
        why = f" ({self.why.format(dtype=dtype)})" if self.why else ""
        return f"{'an integer' if integer else 'a number'} in {self.interval(dtype)}{why}"


def size(low: int = 1) -> Bound:
    """A size or count: TensorFlow's shapes are int32, and counts keep to the same range."""
    return Bound(low, INT32_MAX)


def _number(x: float, exact: bool = True) -> str:
    if isinstance(x, int):
        return f"2**{(x + 1).bit_length() - 1} - 1" if x > 2**16 and (x + 1) & x == 0 else str(x)
    return repr(x) if exact else f"{x:.2g}"


def shown(value: Any) -> str:
    """A value as an error message quotes it (a huge one cut short)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def check_bound(name: str, value: float, bound: Bound, dtype: str = "float32", integer: bool = True) -> None:
    """The one message of an out-of-range value: ``--flag must be <range>, got <value>``."""
    if not bound.holds(value, dtype):
        raise BenchError(f"{name} must be {bound.text(dtype, integer)}, got {shown(value)}")


_TYPES = {int: (int,), float: (int, float), str: (str,)}


@dataclass(frozen=True)
class Option:
    """One setting: its name (``echo_step``, the flag ``--echo-step``), default, help, type
    (int, float or str), and its choices or bound; ``optional`` allows None (e.g. threads:
    "all cores")."""

    name: str
    default: Any
    help: str
    type: type = float
    choices: tuple[str, ...] | None = None
    bound: Bound | None = None
    optional: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, dtype: str = "float32") -> None:
        """A BenchError in one line unless ``value`` is of this option's type, one of its
        choices and within its bound (in the run's ``dtype``)."""
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, _TYPES[self.type]):
            kind = self.type.__name__ + (" | None" if self.optional else "")
            raise BenchError(f"{self.flag} must be of type {kind}, got {shown(value)}")
        if self.choices and value not in self.choices:
            raise unknown_name(self.name.replace("_", " "), str(value), list(self.choices))
        if self.bound:
            check_bound(self.flag, value, self.bound, dtype, self.type is int)

    def describe_range(self) -> str:
        """``one of: a, b`` or ``range [1, 2**31 - 1]`` (per dtype where it depends on it)."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if not self.bound:
            return ""
        ranges = {dtype: self.bound.interval(dtype, exact=False) for dtype in DTYPES}
        if len(set(ranges.values())) == 1:
            return "range " + ranges[DTYPES[0]]
        return "range " + ", ".join(f"{text} in {dtype}" for dtype, text in ranges.items())
