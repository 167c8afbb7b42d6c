"""The losses' contracts the PyTorch agreement tests do not reach without PyTorch: binary
cross-entropy against a float64 NumPy reference, its target checks (host and device arrays,
empty ones, the exact messages), the dtypes kept, the decision thresholds at their edges,
mixed backends, and the defaults of the metadata methods."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.losses import (
    BinaryCrossEntropy,
    Loss,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    get_loss,
)


def _z(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape) * 2.0


def test_binary_cross_entropy_matches_a_numpy_reference(backend):
    z = _z((5, 3))
    y = (np.random.default_rng(1).random((5, 3)) > 0.5).astype(np.float64)
    y[0, 0] = 0.25
    loss = BinaryCrossEntropy()
    got = float(loss(backend.asarray(z), backend.asarray(y)))
    p = 1.0 / (1.0 + np.exp(-z))
    want = -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(loss.backward()), (p - y) / y.size, rtol=1e-12)


def test_binary_cross_entropy_keeps_float32(backend):
    xp = backend.xp
    z = backend.asarray(_z((4, 1)), dtype=xp.float32)
    y = backend.asarray(np.array([0, 1, 1, 0]))  # integer labels of a one-output model
    loss = BinaryCrossEntropy()
    value = loss(z, y)
    assert value.dtype == xp.float32
    assert loss.backward().dtype == xp.float32
    (hits,) = loss.metric_sums(z, y)
    assert hits.dtype == xp.float32


def test_binary_accuracy_thresholds_at_their_edges(backend):
    # A logit of exactly 0 is probability 0.5: predicted 0, right for a target of 0.
    z, y = backend.asarray(np.zeros((3, 2))), backend.asarray(np.zeros((3, 2)))
    (hits,) = BinaryCrossEntropy().metric_sums(z, y)
    assert float(hits) == 3.0
    # A target of exactly 0.5 counts as 0: right for a negative logit.
    z, y = backend.asarray(-np.ones((3, 2))), backend.asarray(np.full((3, 2), 0.5))
    (hits,) = BinaryCrossEntropy().metric_sums(z, y)
    assert float(hits) == 3.0


def test_binary_targets_of_another_shape_are_refused_by_name(backend):
    loss = BinaryCrossEntropy()
    z = backend.asarray(_z((3, 1)))
    with pytest.raises(ValueError, match=r"logits' shape \(3, 1\), got \(1, 3\)"):
        loss(z, backend.asarray(np.zeros((1, 3))))
    z2 = backend.asarray(_z((3, 2)))
    with pytest.raises(ValueError, match=r"logits' shape \(3, 2\), got \(3,\)$"):
        loss(z2, backend.asarray(np.zeros(3)))
    with pytest.raises(ValueError, match=r"logits' shape \(3, 2\), got \(3,\)$"):
        loss.metric_sums(z2, backend.asarray(np.zeros(3)))


def test_binary_check_targets_messages_and_ranges():
    loss = BinaryCrossEntropy()
    with pytest.raises(ValueError, match=r"outputs' shape \(n_samples,\) or \(n_samples, 1\), "):
        loss.check_targets(np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match=r"outputs' shape \(n_samples, 3\), got \(3, 2\)"):
        loss.check_targets(np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match=r"outputs' shape \(n_samples, 2\), got \(3,\)"):
        loss.check_targets(np.zeros(3), 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got values from -0\.5 to 2"):
        loss.check_targets(np.array([[-0.5], [2.0]]), 1)
    with pytest.raises(ValueError, match="must be numeric"):
        loss.check_targets(np.array([["a"], ["b"]]), 1)
    for y in (np.array([[0.0], [1.0]]), np.array([0, 1], dtype=np.int8), np.array([True])):
        assert loss.check_targets(y, 1) is y
    empty = np.zeros((0, 2))
    assert loss.check_targets(empty, 2) is empty


def test_binary_check_targets_on_device_arrays():
    strict = pytest.importorskip("array_api_strict")
    loss = BinaryCrossEntropy()
    with pytest.raises(ValueError, match=r"got values from -0\.5 to 2"):
        loss.check_targets(strict.asarray([[-0.5], [2.0]]), 1)
    with pytest.raises(ValueError, match="got values from 0 to 3"):
        loss.check_targets(strict.asarray([[0.0], [3.0]]), 1)
    with pytest.raises(ValueError, match=r"got values from -1 to 0\.5"):
        loss.check_targets(strict.asarray([[-1.0], [0.5]]), 1)
    ok = strict.asarray([[0.0], [1.0]])
    assert loss.check_targets(ok, 1) is ok
    empty = strict.zeros((0, 2))
    assert loss.check_targets(empty, 2) is empty


@pytest.mark.parametrize(
    "call",
    [
        lambda z, y: BinaryCrossEntropy()(z, y),
        lambda z, y: BinaryCrossEntropy().metric_sums(z, y),
        lambda z, y: MeanSquaredError()(z, y),
        lambda z, y: SoftmaxCrossEntropy().metric_sums(z, y[:, 0]),
    ],
    ids=["bce", "bce-metrics", "mse", "sce-metrics"],
)
def test_mixed_backends_are_a_type_error(call):
    pytest.importorskip("array_api_strict")
    strict = xpnet.backend.resolve_backend("array_api_strict")
    z, y = _z((3, 2)), np.array([[0, 1], [1, 0], [1, 1]])
    for a, b in ((strict.asarray(z), y), (z, strict.asarray(y))):
        with pytest.raises(TypeError, match="different backends"):
            call(a, b)


def test_metadata_defaults():
    sce, bce, base = SoftmaxCrossEntropy(), BinaryCrossEntropy(), Loss()
    assert sce.target_dtype("float32") == "int64"
    assert sce.target_dtype("float32", 2) == "float32"
    assert sce.metric_names() == ("accuracy",)
    assert sce.metric_names(2) == ()
    assert bce.metric_names() == ("accuracy",)
    assert base.target_dtype("float32") == "float32"
    assert base.metric_names() == ()


def test_label_smoothing_error_names_the_argument():
    with pytest.raises(ValueError, match=r"^xpnet: SoftmaxCrossEntropy label_smoothing must be"):
        SoftmaxCrossEntropy(label_smoothing=1.0)


def test_get_loss_takes_a_loss_class():
    loss = get_loss(BinaryCrossEntropy)
    assert type(loss) is BinaryCrossEntropy
    assert type(get_loss("mse")) is MeanSquaredError
    assert type(get_loss(None)) is SoftmaxCrossEntropy
