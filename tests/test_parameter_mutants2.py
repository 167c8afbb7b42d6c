"""ParameterBuffer's construction, in a few milliseconds: the values and the gradients already
set are copied in (the others start at zero), dtype and device are the parameters', and a
buffer of one parameter works."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.backend import to_numpy
from xpnet.parameter import Parameter, ParameterBuffer


def test_the_buffer_copies_values_and_the_gradients_already_set():
    w = Parameter(np.arange(6.0).reshape(2, 3), "W")
    b = Parameter(np.array([7.0, 8.0, 9.0]), "b")
    w.grad = np.full((2, 3), -1.5)  # b has no gradient yet
    buf = ParameterBuffer([w, b])
    np.testing.assert_array_equal(buf.data, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 9.0])
    np.testing.assert_array_equal(buf.grad, [-1.5] * 6 + [0.0] * 3)
    np.testing.assert_array_equal(w.grad, np.full((2, 3), -1.5))
    np.testing.assert_array_equal(b.grad, np.zeros(3))
    assert w.buffer is buf and b.buffer is buf and buf.holds([w, b])
    assert buf.slices == [(0, 6), (6, 9)]


def test_a_buffer_of_one_float32_parameter():
    p = Parameter(np.array([[1.0, 2.0]], dtype=np.float32), "W")
    buf = ParameterBuffer([p])
    assert buf.data.dtype == np.float32 and buf.grad.dtype == np.float32
    assert p.data.shape == (1, 2) and p.data.dtype == np.float32
    np.testing.assert_array_equal(buf.grad, [0.0, 0.0])


def test_the_buffer_lives_on_the_parameters_strict_device():
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    w = Parameter(xps.ones((2, 2), dtype=xps.float32, device=device), "W")
    b = Parameter(xps.zeros((2,), dtype=xps.float32, device=device), "b")
    w.grad = xps.full((2, 2), 3.0, dtype=xps.float32, device=device)
    buf = ParameterBuffer([w, b])
    for a in (buf.data, buf.grad, w.data, w.grad, b.data, b.grad):
        assert a.device == device and a.dtype == xps.float32
    np.testing.assert_array_equal(to_numpy(buf.grad), [3.0] * 4 + [0.0] * 2)


def test_an_empty_buffer_is_refused():
    with pytest.raises(ValueError, match="at least one parameter"):
        ParameterBuffer([])
