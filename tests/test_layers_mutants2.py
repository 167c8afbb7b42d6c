"""Dense before and at build, in a few milliseconds: an unbuilt layer has no parameters and
says so, and the default initializer follows the layer's own activation, else the next
layer's."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.backend import resolve_backend, to_numpy
from xpnet.initializers import get_initializer
from xpnet.layers import Dense


def test_an_unbuilt_dense_has_no_parameters_and_says_so():
    layer = Dense(3, 3)
    assert layer.parameters() == []
    assert layer.W is None and layer.b is None
    with pytest.raises(RuntimeError, match="has no weights yet"):
        layer.forward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="has no weights yet"):
        layer.backward(np.ones((2, 3)))


@pytest.mark.parametrize(
    ("activation", "next_activation", "init"),
    [
        (None, "relu", "he_uniform"),
        (None, None, "glorot_uniform"),
        ("tanh", "relu", "glorot_uniform"),
        ("relu", None, "he_uniform"),
    ],
)
def test_the_default_initializer_follows_the_activation_then_the_next(
    activation, next_activation, init
):
    layer = Dense(4, 4, activation=activation)
    layer.build(resolve_backend("numpy"), "float64", np.random.default_rng(3), next_activation)
    want = get_initializer(init)(np.random.default_rng(3), 4, 4)
    np.testing.assert_array_equal(to_numpy(layer.W.data), want)
    np.testing.assert_array_equal(to_numpy(layer.b.data), np.zeros(4))
    assert [p.name for p in layer.parameters()] == ["W", "b"]
