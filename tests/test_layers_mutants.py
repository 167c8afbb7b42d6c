"""Layer details the other tests leave open: reprs, config and argument messages, activation
names, a Dense built alone, Dropout's own random stream when it
has used every step index, and a Dropout whose rate is raised after a forward at rate 0."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.backend import Backend, resolve_backend
from xpnet.kernels import PortableKernels
from xpnet.layers import BatchNorm, Dense, Dropout, Layer, LeakyReLU, layer_config
from xpnet.layers import dropout as dropout_module
from xpnet.layers.activations import normalize_activation


def test_reprs():
    assert repr(BatchNorm(3)) == "BatchNorm(num_features=3, eps=1e-05, momentum=0.1)"
    assert repr(Dense(2, 3, init="he_normal")) == "Dense(2, 3, init='he_normal')"
    assert repr(Dense(2, 3, activation="relu")) == "Dense(2, 3, activation='relu')"


def test_dropout_starts_a_new_stream_after_the_last_step_index():
    layer = Dropout(0.5)
    layer.rng = np.random.default_rng(0)
    x = np.ones((4, 6))
    layer.forward(x, training=True)
    first_seed = layer._own_seed
    # Skip to the end of the stream (2**32 forwards) rather than run them.
    layer._own_step = dropout_module._STEP_LIMIT - 1
    layer.forward(x, training=True)
    assert layer._own_seed == first_seed
    layer.forward(x, training=True)  # step 2**32 does not exist: a new seed, step 0
    assert layer._own_seed != first_seed
    assert layer._own_step == 1


def test_a_key_dropped_at_rate_zero_is_not_used_later():
    layer = Dropout(0.0)
    layer.rng = np.random.default_rng(1)
    x = np.ones((3, 4))
    layer.set_random_key(5, 0)
    assert layer.forward(x, training=True) is x  # rate 0: the key is dropped
    layer.p = 0.5
    y = layer.forward(x, training=True)  # from the layer's own stream
    assert set(np.unique(y)) <= {0.0, 2.0}
    with pytest.raises(RuntimeError, match="no random generator"):
        Dropout(0.5).forward(x, training=True)


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "gelu"])
def test_dense_built_alone_on_a_second_device_keeps_device_dtype_and_names(activation):
    # Built directly (no model, whose flat buffer would recast the parameters), in float32 on
    # array_api_strict's second device.
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    layer = Dense(3, 2, activation=activation)
    layer.build(Backend("array_api_strict", xps, device), xps.float32, np.random.default_rng(0))
    assert [p.name for p in layer.parameters()] == ["W", "b"]
    assert layer.W.shape == (3, 2) and layer.b.shape == (2,)
    for p in layer.parameters():
        assert p.data.dtype == xps.float32 and p.data.device == device
    x = xps.asarray(np.linspace(-2.0, 2.0, 12).reshape(4, 3), dtype=xps.float32, device=device)
    y = layer.forward(x, training=True)
    assert y.dtype == xps.float32 and y.device == device and y.shape == (4, 2)
    dx = layer.backward(xps.ones_like(y))
    assert dx.dtype == xps.float32 and dx.device == device and dx.shape == (4, 3)
    layer.forward(x)  # inference by default: nothing kept
    with pytest.raises(RuntimeError, match="needs the input of a forward with training=True"):
        layer.backward(xps.ones_like(y))


def test_dense_leaky_relu_uses_the_default_slope():
    layer = Dense(2, 2, activation="leaky_relu")
    layer.build(resolve_backend("numpy"), np.float64, np.random.default_rng(0))
    layer.W.data[...] = np.eye(2)
    x = np.array([[-1.0, 2.0]])
    np.testing.assert_allclose(layer.forward(x), [[-0.01, 2.0]])


def test_layer_config_errors_say_which_layer():
    class Unregistered(Layer):
        kind = "Unregistered"

    with pytest.raises(ValueError, match=r"^xpnet: layer \(Unregistered\) is not a registered"):
        layer_config(Unregistered())
    with pytest.raises(ValueError, match=r"^xpnet: layer 2 \(Unregistered\) is not a registered"):
        layer_config(Unregistered(), 2)
    # NaN is no JSON: refused, not written as a bare NaN token.
    leaky = LeakyReLU(0.1)
    leaky.alpha = float("nan")
    with pytest.raises(ValueError, match=r"^xpnet: layer config is not JSON-serialisable"):
        layer_config(leaky)


def test_unknown_kernel_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="the kernels implement: relu, leaky_relu, sigmoid, "):
        PortableKernels().activation(np.zeros(2), "bogus")


def test_activation_names():
    for linear in ("linear", "identity", "none", "", " Identity ", "NONE"):
        assert normalize_activation(linear) is None
    assert normalize_activation("LeakyReLU") == "leaky_relu"
    assert normalize_activation("gelu-tanh") == "gelu_tanh"
    valid = "gelu, gelu_tanh, leaky_relu, relu, sigmoid, silu, softmax, tanh, linear"
    with pytest.raises(ValueError, match=f"valid activations are: {valid}$"):
        normalize_activation("bogus")


def test_dense_size_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^xpnet: Dense in_features must"):
        Dense(0, 2)
    with pytest.raises(ValueError, match=r"^xpnet: Dense out_features must"):
        Dense(2, 0)


def test_dropout_default_rate_and_its_error():
    assert Dropout().p == 0.5
    with pytest.raises(ValueError, match=r"^xpnet: Dropout p must"):
        Dropout(1.0)


def test_dropout_backward_before_any_forward_passes_the_gradient_through():
    g = np.ones((2, 3))
    assert Dropout(0.5).backward(g) is g
