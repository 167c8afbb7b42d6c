"""The parameter's defaults, which the models' tests (always naming their parameters) leave
open."""

from __future__ import annotations

import numpy as np

from xpnet.parameter import Parameter


def test_a_parameter_is_unnamed_by_default():
    p = Parameter(np.zeros((2, 3)))
    assert p.name == ""
    assert p.grad is None and p.buffer is None
    assert repr(p) == "Parameter(name='', shape=(2, 3), dtype=float64)"
