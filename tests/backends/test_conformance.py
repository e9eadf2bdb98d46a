"""Every backend x impl x cell computes the float64 reference's function: the conformance
kit (``bench.testing``, whose docstring lists the checks) run on every registered cell in
every choice of its options, as a plugin's own tests run it on the plugin's cell."""
from __future__ import annotations

import pytest

from tests.conformance_cases import kit_cases


@pytest.mark.parametrize("case", kit_cases(), ids=str)
def test_every_backend_and_impl_matches_the_float64_reference(case):
    case.check()
