"""Label smoothing and BinaryCrossEntropy: PyTorch agreement, multi-label training through
fit / evaluate / predict_proba / predict, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.layers import Dense
from xpnet.losses import BinaryCrossEntropy, SoftmaxCrossEntropy, get_loss


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 0.99])
@pytest.mark.parametrize("probabilities", [False, True])
def test_label_smoothing_matches_torch(smoothing, probabilities):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(9, 4)) * 4
    labels = rng.integers(0, 4, 9)
    target = np.eye(4)[labels] * 0.7 + 0.075 if probabilities else labels
    loss = SoftmaxCrossEntropy(label_smoothing=smoothing)
    value = float(loss.forward(z, target))
    grad = loss.backward()
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(target), label_smoothing=smoothing)
    tl.backward()
    assert value == pytest.approx(float(tl.detach()), rel=1e-12)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_label_smoothing_range(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxCrossEntropy(label_smoothing=bad)


def test_bce_matches_torch_including_large_logits():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 3)) * 5
    z[0] = [800.0, -800.0, 40.0]
    y = rng.uniform(size=(8, 3))
    y[1] = [0.0, 1.0, 0.5]
    loss = BinaryCrossEntropy()
    value = float(loss.forward(z, y))
    grad = loss.backward()
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.binary_cross_entropy_with_logits(tz, torch.tensor(y))
    tl.backward()
    assert np.isfinite(value)
    assert value == pytest.approx(float(tl.detach()), rel=1e-12)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-12, atol=1e-16)


def test_bce_on_array_api_strict_agrees(other_backend):
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(5, 2)), rng.integers(0, 2, (5, 2)).astype(float)
    want = float(BinaryCrossEntropy().forward(z, y))
    b = other_backend
    got = BinaryCrossEntropy().forward(b.asarray(z), b.asarray(y))
    assert float(got) == pytest.approx(want, rel=1e-12)


def _multilabel(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < -0.5], axis=1).astype(float)
    return X, Y


def test_multilabel_through_fit_evaluate_predict(backend):
    X, Y = _multilabel()
    m = xpnet.Sequential([Dense(4, 16, activation="relu"), Dense(16, 3)], dtype="float64", seed=0)
    hist = m.fit(
        X,
        Y,
        epochs=30,
        batch_size=32,
        loss="binary_cross_entropy",
        optimizer=xpnet.optimizers.Adam(lr=0.02),
        validation_data=(X, Y),
    )
    assert "accuracy" in hist.history and "val_accuracy" in hist.history
    scores = m.evaluate(X, Y)
    proba = m.predict_proba(X)
    assert proba.shape == (300, 3) and np.all((proba >= 0) & (proba <= 1))
    assert not np.allclose(proba.sum(axis=1), 1.0)  # sigmoids, not a softmax
    pred = m.predict(X)
    assert pred.shape == (300, 3) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(np.int64))
    # The recorded accuracy is element-wise at 0.5.
    assert scores["accuracy"] == pytest.approx(float(np.mean(pred == Y)), abs=1e-12)
    assert scores["accuracy"] > 0.9
    assert hist.history["val_accuracy"][-1] == pytest.approx(scores["accuracy"], abs=1e-12)


def test_binary_with_one_output_takes_1d_targets():
    X, Y = _multilabel()
    m = xpnet.Sequential([Dense(4, 1)], dtype="float64", seed=0)
    m.fit(
        X,
        Y[:, 0],
        epochs=20,
        batch_size=32,
        loss=BinaryCrossEntropy(),
        optimizer=xpnet.optimizers.Adam(lr=0.05),
    )
    assert m.evaluate(X, Y[:, 0])["accuracy"] > 0.9
    assert m.predict(X).shape == (300, 1)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (lambda Y: Y * 2.0, r"must lie in \[0, 1\], got values from 0 to 2"),
        (lambda Y: Y - 0.5, r"must lie in \[0, 1\]"),
        (lambda Y: Y[:, :2], r"outputs' shape \(n_samples, 3\)"),
        (lambda Y: Y[:, 0], r"outputs' shape"),
        (lambda Y: np.where(Y > 0, np.nan, 0.0), "NaN"),
    ],
)
def test_bce_bad_targets_are_refused_where_data_enters(targets, match):
    X, Y = _multilabel(40)
    m = xpnet.Sequential([Dense(4, 3)], dtype="float64", seed=0)
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(ValueError, match=match):
        m.fit(X, targets(Y), epochs=1, loss="bce")
    for a, b in zip(before, m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # nothing trained
    m.loss = BinaryCrossEntropy()
    with pytest.raises(ValueError, match=match):
        m.evaluate(X, targets(Y))


def test_bce_forward_refuses_another_shape():
    with pytest.raises(ValueError, match=r"logits' shape \(4, 2\), got \(4, 3\)"):
        BinaryCrossEntropy().forward(np.zeros((4, 2)), np.zeros((4, 3)))


def test_names_and_repr():
    assert isinstance(get_loss("bce"), BinaryCrossEntropy)
    assert isinstance(get_loss("binary_cross_entropy"), BinaryCrossEntropy)
    assert (
        repr(SoftmaxCrossEntropy(label_smoothing=0.1)) == "SoftmaxCrossEntropy(label_smoothing=0.1)"
    )
    assert repr(SoftmaxCrossEntropy()) == "SoftmaxCrossEntropy()"
