"""Layers on every backend: gradients against finite differences, precision, stability, checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import xpnet
from xpnet.layers import (
    LAYER_TYPES,
    Dense,
    Dropout,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    layer_from_config,
)
from xpnet.random import hash_bits_reference, keep_threshold
from xpnet.testing import (
    assert_allclose,
    check_gradient,
    check_layer,
    numerical_gradient,
    tf32_active,
    tolerance,
)

# float64 gradient checks: central differences with step EPS carry a rounding error of about
# 1e-16 * |f| / EPS ~ 1e-10 and a truncation error of EPS^2 * f''' ~ 1e-12; the worst relative
# error measured over many random directions was ~1e-7, so these leave a margin of 10x.
EPS = 1e-6
GRAD_RTOL = 1e-6
GRAD_ATOL = 1e-8
DIRECTIONS = 4

ACTIVATION_LAYERS = {
    "relu": ReLU,
    "leaky_relu": lambda: LeakyReLU(0.1),
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal values pushed at least 0.2 from 0, so no difference step crosses a ReLU kink."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (0.2 + np.abs(x))


def built_dense(backend, n_in, n_out, dtype="float64", seed=0, **kwargs) -> Dense:
    layer = Dense(n_in, n_out, **kwargs)
    layer.build(backend, dtype, np.random.default_rng(seed))
    return layer


def weighted_sum(xp, y, g):
    """A scalar whose gradient with respect to ``y`` is ``g``: sum(y * g)."""
    return xp.sum(y * g)


# --------------------------------------------------------------------------- gradients
def _check(layer, x, backend, **kwargs):
    kwargs.setdefault("directions", DIRECTIONS)
    return check_layer(layer, x, backend=backend, eps=EPS, rtol=GRAD_RTOL, atol=GRAD_ATOL, **kwargs)


@pytest.mark.parametrize("name", sorted(ACTIVATION_LAYERS))
def test_activation_input_gradient(backend, rng, name):
    errors = _check(
        ACTIVATION_LAYERS[name](), backend.asarray(away_from_zero(rng, (5, 7))), backend
    )
    assert set(errors) == {"input"}


@pytest.mark.parametrize("name", sorted(ACTIVATION_LAYERS))
def test_activation_full_numerical_gradient(backend, rng, name):
    # Every element, not only random directions: catches an error confined to one entry.
    _check(ACTIVATION_LAYERS[name](), away_from_zero(rng, (3, 4)), backend, elementwise=True)


def _generic_dense(backend, rng, n_in, n_out, activation):
    """A built Dense layer at a generic point: random biases, pre-activations clear of 0."""
    layer = built_dense(backend, n_in, n_out, activation=activation)
    x = rng.standard_normal((5, n_in))
    bias = rng.standard_normal(n_out)
    if activation in ("relu", "leaky_relu"):
        # Keep pre-activations clear of the kink at 0.
        z = x @ xpnet.to_numpy(layer.W.data) + bias
        bias = bias + np.where(np.abs(z).min(axis=0) < 0.05, 0.3, 0.0)
    layer.b.data[...] = backend.asarray(bias)
    return layer, backend.asarray(x)


@pytest.mark.parametrize("shape", [(6, 4), (5, 5)], ids=["6x4", "square"])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
def test_dense_gradients(backend, rng, activation, shape):
    # The square case matters: a transposed weight gradient has the right shape there, so
    # only its values can give it away.
    layer, x = _generic_dense(backend, rng, *shape, activation)
    errors = _check(layer, x, backend, directions=6)
    assert set(errors) == {"input", "W", "b"}
    assert tuple(layer.W.grad.shape) == shape and tuple(layer.b.grad.shape) == shape[1:]


@pytest.mark.parametrize("activation", [None, "tanh"])
def test_dense_full_numerical_gradients_of_a_square_layer(backend, rng, activation):
    layer, x = _generic_dense(backend, rng, 3, 3, activation)
    _check(layer, x, backend, elementwise=True)


class _TransposedWeightGradient(Dense):
    """Dense with a classic bug: the weight gradient transposed."""

    def backward(self, grad, need_input_grad=True):
        dx = super().backward(grad, need_input_grad)
        self.W.grad = xpnet.backend.namespace_of(grad).asarray(self.W.grad.T, copy=True)
        return dx


def test_check_layer_catches_a_transposed_weight_gradient_by_value(backend, rng):
    layer = _TransposedWeightGradient(4, 4)
    with pytest.raises(AssertionError) as info:
        check_layer(layer, rng.standard_normal((6, 4)), backend=backend)
    report = str(info.value)
    assert "W (4, 4): FAIL" in report
    assert "input (6, 4): ok" in report and "b (4,): ok" in report
    with pytest.raises(AssertionError, match=r"W \(4, 4\): FAIL"):
        check_layer(layer, rng.standard_normal((6, 4)), elementwise=True)


class _ForgetfulBias(Dense):
    def backward(self, grad, need_input_grad=True):
        dx = super().backward(grad, need_input_grad)
        self.b.grad = None
        return dx


def test_check_layer_reports_a_missing_parameter_gradient(backend, rng):
    with pytest.raises(AssertionError, match="b: FAIL, backward gave nothing"):
        check_layer(_ForgetfulBias(3, 2), rng.standard_normal((4, 3)), backend=backend)


def test_check_layer_builds_in_float64_and_restores_the_parameters(backend, rng):
    layer = Dense(3, 3, activation="sigmoid")
    check_layer(layer, rng.standard_normal((4, 3)), backend=backend)
    assert layer.backend is backend
    assert layer.W.data.dtype == backend.xp.float64
    fresh = built_dense(backend, 3, 3, activation="sigmoid")
    np.testing.assert_array_equal(xpnet.to_numpy(layer.W.data), xpnet.to_numpy(fresh.W.data))
    np.testing.assert_array_equal(xpnet.to_numpy(layer.b.data), 0.0)


def test_check_layer_refuses_float32_parameters(backend, rng):
    layer = built_dense(backend, 3, 2, "float32")
    with pytest.raises(ValueError, match=r"float64 parameters.*Dense.W is float32"):
        check_layer(layer, rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="directions must be a positive int"):
        check_layer(Tanh(), rng.standard_normal((4, 3)), directions=0)


def test_check_layer_works_on_a_layer_inside_a_model(rng):
    model = xpnet.Sequential([Dense(4, 4, activation="tanh"), Dense(4, 2)], dtype="float64")
    first = model.layers[0]
    model.parameters()  # builds and flattens: W and b are views into one buffer
    buffer_view = first.W.data
    check_layer(first, rng.standard_normal((3, 4)))
    assert first.W.data is buffer_view  # perturbed in place and restored, never replaced


def test_dense_without_input_gradient_still_fills_parameter_gradients(backend, rng):
    layer = built_dense(backend, 3, 2)
    x = backend.asarray(rng.standard_normal((4, 3)))
    g = backend.asarray(rng.standard_normal((4, 2)))
    layer.forward(x, training=True)
    assert layer.backward(g, need_input_grad=False) is None
    assert_allclose(layer.W.grad, xpnet.to_numpy(x).T @ xpnet.to_numpy(g))
    assert_allclose(layer.b.grad, xpnet.to_numpy(g).sum(axis=0))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_fused_activation_equals_a_separate_layer(backend, rng, activation):
    fused = built_dense(backend, 5, 3, activation=activation, seed=1)
    plain = built_dense(backend, 5, 3)
    plain.W.data = fused.W.data  # the default initializers differ (He vs Glorot)
    # The fused leaky ReLU has the default slope.
    act = LeakyReLU() if activation == "leaky_relu" else ACTIVATION_LAYERS[activation]()
    x = backend.asarray(rng.standard_normal((4, 5)))
    g = backend.asarray(rng.standard_normal((4, 3)))
    fused_y = fused.forward(x, training=True)
    plain_y = act.forward(plain.forward(x, training=True), training=True)
    assert_allclose(fused_y, plain_y, rtol=0, atol=0)
    assert_allclose(fused.backward(g), plain.backward(act.backward(g)), rtol=0, atol=0)
    assert_allclose(fused.W.grad, plain.W.grad, rtol=0, atol=0)


# --------------------------------------------------------------------------- inference
@pytest.mark.parametrize("name", ["dense", *sorted(ACTIVATION_LAYERS)])
def test_inference_keeps_nothing_and_backward_then_says_why(backend, rng, name):
    layer = built_dense(backend, 4, 4, activation="tanh") if name == "dense" else None
    layer = layer or ACTIVATION_LAYERS[name]()
    x = backend.asarray(rng.standard_normal((3, 4)))
    g = backend.asarray(rng.standard_normal((3, 4)))
    layer.forward(x, training=True)
    layer.backward(g)  # a training forward is followed by backward
    y = layer.forward(x)  # inference: nothing of x or y stays on the layer
    kept = [v for v in vars(layer).values() if v is x or v is y]
    assert kept == []
    with pytest.raises(RuntimeError, match=r"backward needs .*training=True.*keeps nothing"):
        layer.backward(g)


def test_a_fresh_layer_backward_says_it_needs_a_training_forward(backend):
    with pytest.raises(RuntimeError, match=r"ReLU.backward needs the output"):
        ReLU().backward(backend.asarray(np.ones((2, 2))))
    with pytest.raises(RuntimeError, match=r"Dense.backward needs the input"):
        built_dense(backend, 2, 2).backward(backend.asarray(np.ones((2, 2))))


def test_inference_between_forward_and_backward_is_refused_not_silently_wrong(backend, rng):
    # predict used to leave its own batch on the layers, so a backward after it computed
    # gradients of the wrong input without a word.
    model = xpnet.Sequential(
        [Dense(4, 5, activation="relu"), Dense(5, 3)], dtype="float64", backend=backend
    )
    x = backend.asarray(rng.standard_normal((6, 4)))
    g = backend.asarray(rng.standard_normal((6, 3)))
    model.forward(x, training=True)
    model.backward(g)
    want = [xpnet.to_numpy(p.grad).copy() for p in model.parameters()]
    model.forward(x, training=True)
    model.predict(rng.standard_normal((2, 4)))
    with pytest.raises(RuntimeError, match="training=True"):
        model.backward(g)
    model.forward(x, training=True)
    model.backward(g)
    for p, w in zip(model.parameters(), want, strict=True):
        np.testing.assert_array_equal(xpnet.to_numpy(p.grad), w)


def _fixed_mask_dropout(p: float, seed: int) -> Dropout:
    layer = Dropout(p)
    layer.rng = np.random.default_rng(seed)
    return layer


def test_dropout_gradient_with_a_fixed_mask(backend, xp, rng):
    layer = Dropout(0.4)
    x = backend.asarray(rng.standard_normal((6, 5)))
    g = backend.asarray(rng.standard_normal((6, 5)))
    layer.rng = np.random.default_rng(11)
    layer.forward(x, training=True)
    dx = layer.backward(g)

    def f(x_):
        layer.rng = np.random.default_rng(11)  # the same generator state: the same mask
        return weighted_sum(xp, layer.forward(x_, training=True), g)

    check_gradient(f, [x], [dx], eps=EPS, rtol=GRAD_RTOL, atol=GRAD_ATOL, directions=DIRECTIONS)


# --------------------------------------------------------------------------- precision
def _layer_pair(backend, name: str):
    """The same layer in float32 and float64 (same weights, rounded to float32)."""
    if name.startswith("dense"):
        activation = name.partition(":")[2] or None
        return (
            built_dense(backend, 8, 5, "float32", seed=4, activation=activation),
            built_dense(backend, 8, 5, "float64", seed=4, activation=activation),
        )
    if name == "dropout":
        return _fixed_mask_dropout(0.3, 2), _fixed_mask_dropout(0.3, 2)
    return ACTIVATION_LAYERS[name](), ACTIVATION_LAYERS[name]()


@pytest.mark.parametrize(
    "name", ["dense", "dense:relu", "dense:tanh", "dropout", *sorted(ACTIVATION_LAYERS)]
)
def test_float32_matches_float64(backend, xp, rng, name):
    l32, l64 = _layer_pair(backend, name)
    x = rng.standard_normal((6, 8) if name.startswith("dense") else (6, 5))
    out_width = 5
    g = rng.standard_normal((6, out_width))
    y32 = l32.forward(backend.asarray(x, dtype="float32"), training=True)
    y64 = l64.forward(backend.asarray(x, dtype="float64"), training=True)
    assert y32.dtype == xp.float32
    assert y64.dtype == xp.float64
    d32 = l32.backward(backend.asarray(g, dtype="float32"))
    d64 = l64.backward(backend.asarray(g, dtype="float64"))
    assert d32.dtype == xp.float32
    rtol, atol = tolerance("float32", tf32=tf32_active(backend))
    assert_allclose(y32, y64, rtol=rtol, atol=atol)
    assert_allclose(d32, d64, rtol=rtol, atol=atol)
    for p32, p64 in zip(l32.parameters(), l64.parameters(), strict=True):
        assert p32.grad.dtype == xp.float32
        assert_allclose(p32.grad, p64.grad, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_is_stable_at_large_inputs(backend, dtype):
    x = backend.asarray([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], dtype=dtype)
    layer = Sigmoid()
    # exp(-1000) underflowing to 0 is the intended result; overflow or NaN would be a bug.
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = xpnet.to_numpy(layer.forward(x, training=True))
        dx = xpnet.to_numpy(layer.backward(backend.asarray(np.ones((1, 5)), dtype=dtype)))
    assert np.all(np.isfinite(y))
    assert np.all(np.isfinite(dx))
    assert y[0, 0] == 0.0
    assert y[0, 2] == 0.5
    assert y[0, 4] == 1.0
    assert y[0, 1] == pytest.approx(math.exp(-50.0), rel=1e-5)
    assert 1.0 - y[0, 3] == pytest.approx(0.0, abs=1e-7)
    assert np.all(dx >= 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_of_huge_logits(backend, dtype):
    logits = np.array([[1e4, 0.0, -1e4], [1000.0, 1000.0, 1000.0], [-1e4, -1e4 + 1.0, -3e4]])
    layer = Softmax()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = xpnet.to_numpy(layer.forward(backend.asarray(logits, dtype=dtype), training=True))
        dx = xpnet.to_numpy(layer.backward(backend.asarray(np.ones((3, 3)), dtype=dtype)))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[0], [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(y[1], [1 / 3] * 3, rtol=1e-6)
    e = math.e
    np.testing.assert_allclose(y[2], [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-5, atol=1e-7)
    # A constant upstream gradient has no softmax component: the Jacobian kills it.
    np.testing.assert_allclose(dx, 0.0, atol=1e-6)


def test_softmax_rows_sum_to_one_and_keep_order(backend, rng):
    x = rng.standard_normal((10, 6)) * 5
    y = xpnet.to_numpy(Softmax().forward(backend.asarray(x)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(np.argsort(y, axis=1), np.argsort(x, axis=1))


def test_activation_values(backend):
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    xb = backend.asarray(x)
    assert_allclose(ReLU().forward(xb), np.maximum(x, 0))
    assert_allclose(LeakyReLU(0.2).forward(xb), np.where(x > 0, x, 0.2 * x))
    assert_allclose(Tanh().forward(xb), np.tanh(x))
    assert_allclose(Sigmoid().forward(xb), 1 / (1 + np.exp(-x)))


# --------------------------------------------------------------------------- dropout
def test_dropout_p0_is_the_identity_in_training(backend, rng):
    layer = _fixed_mask_dropout(0.0, 0)
    x = backend.asarray(rng.standard_normal((4, 3)))
    assert layer.forward(x, training=True) is x
    g = backend.asarray(rng.standard_normal((4, 3)))
    assert layer.backward(g) is g


def test_dropout_is_the_identity_in_eval_mode(backend, rng):
    layer = Dropout(0.5)  # no generator needed when not training
    x = backend.asarray(rng.standard_normal((4, 3)))
    assert layer.forward(x) is x
    assert layer.forward(x, training=False) is x
    g = backend.asarray(rng.standard_normal((4, 3)))
    assert layer.backward(g) is g


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_mask_is_the_same_on_every_backend(backend, rng, dtype):
    p, seed = 0.3, 123
    x = rng.standard_normal((7, 9))
    out = xpnet.to_numpy(
        _fixed_mask_dropout(p, seed).forward(backend.asarray(x, dtype=dtype), training=True)
    )
    # The documented recipe: a forward without a key draws one seed from the generator and
    # counts its calls as steps; keep where the position's 32-bit hash reaches the threshold.
    key = int(np.random.default_rng(seed).integers(0, 2**63 - 1))
    bits = [[hash_bits_reference(key, 0, r, c) for c in range(9)] for r in range(7)]
    keep = np.array(bits, dtype=np.int64) >= keep_threshold(p)
    expected = x.astype(dtype) * keep.astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype=dtype)
    np.testing.assert_array_equal(out == 0, ~keep)
    assert_allclose(out, expected, rtol=0, atol=0)


def test_dropout_keep_rate_and_scale(backend):
    p = 0.3
    layer = _fixed_mask_dropout(p, 5)
    out = xpnet.to_numpy(layer.forward(backend.asarray(np.ones((400, 250))), training=True))
    kept = out != 0
    # 100,000 Bernoulli(0.7) draws: standard error 0.0014, so 0.007 is 5 of them.
    assert kept.mean() == pytest.approx(1 - p, abs=0.007)
    np.testing.assert_allclose(out[kept], 1.0 / (1.0 - p), rtol=1e-12)
    # Inverted dropout keeps the expectation of each unit.
    assert out.mean() == pytest.approx(1.0, abs=0.01)


def test_dropout_draws_a_new_mask_each_call(backend):
    layer = _fixed_mask_dropout(0.5, 0)
    x = backend.asarray(np.ones((20, 20)))
    a = xpnet.to_numpy(layer.forward(x, training=True))
    b = xpnet.to_numpy(layer.forward(x, training=True))
    assert not np.array_equal(a, b)


def test_dropout_needs_a_generator_to_train(backend):
    with pytest.raises(RuntimeError, match="random generator"):
        Dropout(0.5).forward(backend.asarray(np.ones((2, 2))), training=True)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make",
    [
        lambda: Dense(0, 3),
        lambda: Dense(3, -1),
        lambda: Dense(2.5, 3),
        lambda: Dense(True, 3),
        lambda: Dense("3", 3),
        lambda: Dense(3, 3, activation="swish"),
        lambda: Dense(3, 3, activation=3),
        lambda: Dense(3, 3, init="bogus"),
        lambda: LeakyReLU(-0.1),
        lambda: LeakyReLU(1.0),
        lambda: Dropout(-0.1),
        lambda: Dropout(1.0),
        lambda: Dropout(1.5),
        lambda: Dropout(float("nan")),
        lambda: Dropout("0.5"),
        lambda: Dropout(True),
    ],
)
def test_invalid_constructor_arguments(make):
    with pytest.raises(ValueError, match="xpnet"):
        make()


def test_dense_error_messages_say_what_was_given():
    with pytest.raises(ValueError, match=r"in_features must be a positive integer, got 0"):
        Dense(0, 3)
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*relu"):
        Dense(3, 3, activation="swish")


def test_dense_width_mismatch_in_sequential():
    with pytest.raises(ValueError, match="expects 7 inputs but the previous layers output 8"):
        xpnet.Sequential([Dense(4, 8), ReLU(), Dense(7, 3)])
    model = xpnet.Sequential([Dense(4, 8), ReLU()])
    with pytest.raises(ValueError, match="expects 5 inputs"):
        model.add(Dense(5, 2))
    assert len(model.layers) == 2


def test_dense_rejects_input_of_the_wrong_width(backend):
    layer = built_dense(backend, 4, 2)
    with pytest.raises(ValueError, match=r"expected input of shape \(n, 4\), got \(3, 5\)"):
        layer.forward(backend.asarray(np.ones((3, 5))))
    with pytest.raises(ValueError, match="expected input of shape"):
        layer.forward(backend.asarray(np.ones(4)))


def test_unbuilt_dense_says_how_to_build_it():
    with pytest.raises(RuntimeError, match="no weights yet"):
        Dense(2, 2).forward(np.ones((1, 2)))


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("ReLU", "relu"), ("leaky-relu", "leaky_relu"), ("LeakyReLU", "leaky_relu"), ("linear", None)],
)
def test_activation_names_are_normalised(given, canonical):
    assert Dense(2, 2, activation=given).activation == canonical


@pytest.mark.parametrize(
    "layer",
    [Dense(3, 4, activation="tanh", init="lecun_uniform"), LeakyReLU(0.2), Dropout(0.25), ReLU()],
    ids=repr,
)
def test_layer_config_round_trip(layer):
    rebuilt = layer_from_config(layer.kind, layer.config())
    assert type(rebuilt) is type(layer)
    assert rebuilt.config() == layer.config()
    assert repr(rebuilt) == repr(layer)
    assert LAYER_TYPES[layer.kind] is type(layer)


def test_unknown_layer_kind():
    with pytest.raises(ValueError, match="unknown layer type 'Conv2D'"):
        layer_from_config("Conv2D", {})


# --------------------------------------------------------------------------- the checker
def test_check_gradient_catches_wrong_gradients(backend, xp, rng):
    # The checker is only worth its passes if it fails on a gradient that is slightly off.
    x = backend.asarray(rng.standard_normal((4, 3)))
    x_host = xpnet.to_numpy(x).copy()
    right = 3.0 * x_host**2

    def f(x_):
        return xp.sum(x_ * x_ * x_)

    check_gradient(f, [x], [right], eps=EPS, rtol=GRAD_RTOL, atol=GRAD_ATOL)
    with pytest.raises(AssertionError, match="gradient check failed in direction 0"):
        check_gradient(f, [x], [right * 1.001], eps=EPS, rtol=GRAD_RTOL, atol=GRAD_ATOL)
    one_off = right.copy()
    one_off[2, 1] += 0.05
    with pytest.raises(AssertionError, match="finite difference"):
        check_gradient(f, [x], [one_off], eps=EPS, rtol=GRAD_RTOL, atol=GRAD_ATOL)
    np.testing.assert_array_equal(xpnet.to_numpy(x), x_host)  # inputs are never modified


def test_numerical_gradient_is_exact_for_a_cubic(backend, xp, rng):
    x = backend.asarray(rng.standard_normal(5))
    num = numerical_gradient(lambda x_: xp.sum(x_ * x_ * x_), x, eps=EPS)
    assert isinstance(num, np.ndarray)
    assert num.dtype == np.float64
    assert_allclose(num, 3.0 * xpnet.to_numpy(x) ** 2, rtol=GRAD_RTOL, atol=GRAD_ATOL)


def test_check_gradient_validates_its_arguments():
    x = np.ones(3)
    with pytest.raises(ValueError, match="one gradient per input, got 2 inputs and 1"):
        check_gradient(lambda a, b: 0.0, [x, x], [x])
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(2,\), its input has \(3,\)"):
        check_gradient(lambda a: 0.0, [x], [np.ones(2)])
    with pytest.raises(ValueError, match="f must return a scalar"):
        check_gradient(lambda a: a, [x], [x])
