"""Losses on every backend: values against float64 NumPy references, gradients, stability."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpnet
from xpnet.losses import LOSSES, MeanSquaredError, SoftmaxCrossEntropy, get_loss
from xpnet.testing import assert_allclose, check_gradient, tf32_active, tolerance

# Finite differences in float64 (see test_layers.py for why these tolerances).
EPS = 1e-6
GRAD_RTOL = 1e-6
GRAD_ATOL = 1e-8
# A value computed two ways in float64 (fused kernel vs the reference below).
VALUE_RTOL = 1e-12


def reference_log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax by the log-sum-exp identity, in float64."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))


def reference_cross_entropy(z: np.ndarray, labels: np.ndarray) -> float:
    return float(-reference_log_softmax(z)[np.arange(len(labels)), labels].mean())


def one_hot(labels: np.ndarray, c: int) -> np.ndarray:
    return np.eye(c)[labels]


def _problem(rng, n=6, c=4):
    return rng.standard_normal((n, c)) * 3.0, rng.integers(0, c, n)


# --------------------------------------------------------------------------- cross-entropy
def test_cross_entropy_value_matches_the_reference(backend, rng):
    z, y = _problem(rng)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(backend.asarray(z), backend.asarray(y))
    # A 0-d array on the backend, not a Python float: training loops read it once per epoch.
    assert xpnet.backend.backend_of(value).name == backend.name
    assert tuple(value.shape) == ()
    assert_allclose(value, reference_cross_entropy(z, y), rtol=VALUE_RTOL, atol=0)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n(backend, rng):
    z, y = _problem(rng, n=5, c=3)
    loss = SoftmaxCrossEntropy()
    loss.forward(backend.asarray(z), backend.asarray(y))
    expected = (np.exp(reference_log_softmax(z)) - one_hot(y, 3)) / 5
    assert_allclose(loss.backward(), expected, rtol=VALUE_RTOL, atol=1e-15)
    assert_allclose(loss.probabilities, np.exp(reference_log_softmax(z)), rtol=VALUE_RTOL)


def test_cross_entropy_gradient_by_finite_differences(backend, rng):
    z, y = _problem(rng)
    zb, yb = backend.asarray(z), backend.asarray(y)
    loss = SoftmaxCrossEntropy()
    loss.forward(zb, yb)
    grad = loss.backward()
    check_gradient(
        lambda z_: SoftmaxCrossEntropy().forward(z_, yb),
        [zb],
        [grad],
        eps=EPS,
        rtol=GRAD_RTOL,
        atol=GRAD_ATOL,
        directions=5,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_with_huge_logits_has_no_nan(backend, dtype):
    z = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [1e4, 1e4, 1e4]])
    y = np.array([0, 0, 2])
    loss = SoftmaxCrossEntropy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = float(xpnet.to_numpy(loss.forward(backend.asarray(z, dtype), backend.asarray(y))))
        grad = xpnet.to_numpy(loss.backward())
    # Row 1 pays 0, row 2 pays 2e4 (its label is 2e4 below the max), row 3 pays log 3.
    assert value == pytest.approx((0.0 + 2e4 + np.log(3.0)) / 3, rel=1e-6)
    assert np.all(np.isfinite(grad))
    expected = np.array([[0, 0, 0], [-1, 1, 0], [1 / 3, 1 / 3, -2 / 3]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_cross_entropy_with_onehot_targets_equals_labels(backend, rng):
    z, y = _problem(rng)
    by_label = SoftmaxCrossEntropy()
    by_prob = SoftmaxCrossEntropy()
    a = by_label.forward(backend.asarray(z), backend.asarray(y))
    b = by_prob.forward(backend.asarray(z), backend.asarray(one_hot(y, 4)))
    assert_allclose(a, b)
    assert_allclose(by_label.backward(), by_prob.backward())


def test_cross_entropy_with_probability_targets(backend, rng):
    z, _ = _problem(rng, n=4, c=5)
    t = rng.random((4, 5))
    t /= t.sum(axis=1, keepdims=True)
    zb, tb = backend.asarray(z), backend.asarray(t)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(zb, tb)
    assert_allclose(value, -(t * reference_log_softmax(z)).sum() / 4, rtol=VALUE_RTOL, atol=0)
    grad = loss.backward()
    assert_allclose(grad, (np.exp(reference_log_softmax(z)) - t) / 4, rtol=VALUE_RTOL, atol=1e-15)
    check_gradient(
        lambda z_: SoftmaxCrossEntropy().forward(z_, tb),
        [zb],
        [grad],
        eps=EPS,
        rtol=GRAD_RTOL,
        atol=GRAD_ATOL,
    )


def test_cross_entropy_float32_matches_float64(backend, rng):
    z, y = _problem(rng, n=16, c=10)
    l32, l64 = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    v32 = l32.forward(backend.asarray(z, "float32"), backend.asarray(y))
    v64 = l64.forward(backend.asarray(z, "float64"), backend.asarray(y))
    assert v32.dtype == backend.xp.float32
    rtol, atol = tolerance("float32", tf32=tf32_active(backend))
    assert_allclose(v32, v64, rtol=rtol, atol=atol)
    assert_allclose(l32.backward(), l64.backward(), rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    ("logits_shape", "target", "match"),
    [
        ((6,), np.zeros(6, dtype=np.int64), r"logits of shape \(n, classes\)"),
        ((6, 3), np.zeros(5, dtype=np.int64), "6 rows of logits but 5 targets"),
        ((6, 3), np.zeros((6, 4)), r"probabilities \(6, 3\), got \(6, 4\)"),
        ((6, 3), np.zeros(6), "integer class labels, got floats"),
    ],
)
def test_cross_entropy_bad_shapes(backend, logits_shape, target, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxCrossEntropy().forward(
            backend.asarray(np.zeros(logits_shape)), backend.asarray(target)
        )


# --------------------------------------------------------------------------- MSE
def test_mse_value_and_gradient(backend, rng):
    out, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    ob, tb = backend.asarray(out), backend.asarray(target)
    loss = MeanSquaredError()
    value = loss.forward(ob, tb)
    assert tuple(value.shape) == ()
    assert_allclose(value, np.mean((out - target) ** 2), rtol=VALUE_RTOL, atol=0)
    grad = loss.backward()
    assert_allclose(grad, 2 * (out - target) / out.size, rtol=VALUE_RTOL, atol=1e-15)
    check_gradient(
        lambda o_: MeanSquaredError().forward(o_, tb),
        [ob],
        [grad],
        eps=EPS,
        rtol=GRAD_RTOL,
        atol=GRAD_ATOL,
    )


def test_mse_takes_a_1d_target_for_one_output(backend, rng):
    out, target = rng.standard_normal((7, 1)), rng.standard_normal(7)
    loss = MeanSquaredError()
    value = loss.forward(backend.asarray(out), backend.asarray(target))
    assert_allclose(value, np.mean((out[:, 0] - target) ** 2), rtol=VALUE_RTOL, atol=0)
    assert tuple(loss.backward().shape) == (7, 1)


def test_mse_casts_integer_targets(backend):
    loss = MeanSquaredError()
    value = loss.forward(backend.asarray(np.zeros((2, 2))), backend.asarray(np.ones((2, 2), int)))
    assert float(xpnet.to_numpy(value)) == 1.0


@pytest.mark.parametrize(
    ("out_shape", "target_shape"), [((5, 3), (5, 2)), ((5, 2), (5,)), ((4, 1), (5,))]
)
def test_mse_bad_shapes(backend, out_shape, target_shape):
    with pytest.raises(ValueError, match="MeanSquaredError expected targets of shape"):
        MeanSquaredError().forward(
            backend.asarray(np.zeros(out_shape)), backend.asarray(np.zeros(target_shape))
        )


# --------------------------------------------------------------------------- lookup
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_get_loss_by_name(name):
    assert isinstance(get_loss(name), LOSSES[name])
    assert isinstance(get_loss(name.upper()), LOSSES[name])


def test_get_loss_from_instance_class_or_none():
    mse = MeanSquaredError()
    assert get_loss(mse) is mse
    assert isinstance(get_loss(MeanSquaredError), MeanSquaredError)
    assert isinstance(get_loss(None), SoftmaxCrossEntropy)
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*mse"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss(3)


def test_losses_state_their_targets_and_metrics(backend):
    ce, mse = SoftmaxCrossEntropy(), MeanSquaredError()
    assert ce.categorical and not mse.categorical
    assert ce.target_dtype("float32", 1) == "int64"
    assert ce.target_dtype("float32", 2) == "float32"
    assert mse.target_dtype("float64", 1) == "float64"
    assert ce.metric_names(1) == ("accuracy",) and ce.metric_names(2) == ()
    assert mse.metric_names(1) == () and mse.metric_sums(None, None) == []
    logits = backend.asarray(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), dtype="float64")
    labels = backend.asarray(np.array([0, 0, 0]), dtype="int64")
    (hits,) = ce.metric_sums(logits, labels)
    assert int(xpnet.to_numpy(hits)) == 2  # a device sum of correct rows, read here only
