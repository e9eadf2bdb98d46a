"""Every backend x impl x cell computes the float64 reference's function: the conformance
kit (``bench.testing``, whose docstring lists the checks) run on every registered cell in
every choice of its options, as a plugin's own tests run it on the plugin's cell.

A case that a plugin's own tests run in the same session (``pytest tests
examples/mingru/tests``: the same check of the same cell on the same backend, impl and task)
is skipped here, naming the file that runs it, so that no case runs twice."""
from __future__ import annotations

import pytest

from tests.conformance_cases import kit_cases
from tests.kit_elsewhere import case_key


@pytest.mark.parametrize("case", kit_cases(), ids=str)
def test_every_backend_and_impl_matches_the_float64_reference(case, kit_elsewhere):
    if where := kit_elsewhere.cases.get(case_key(case)):
        pytest.skip(f"this case runs in {where}, the cell's own tests")
    case.check()
