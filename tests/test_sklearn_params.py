"""The estimators' xpnet-only parameters (issue 13's features where a parameter fits):
``activation`` "gelu"/"silu", ``norm``, ``clip_norm``, ``label_smoothing``; and the logistic
loss being the public :class:`~xpnet.losses.BinaryCrossEntropy`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from xpnet.layers import GELU, BatchNorm, Dense, LayerNorm, ReLU, SiLU
from xpnet.losses import BinaryCrossEntropy, SoftmaxCrossEntropy
from xpnet.sklearn import MLPClassifier, MLPRegressor
from xpnet.sklearn._losses import LogisticLoss, SoftmaxLogLoss

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _blobs(n: int = 120, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=n, centers=classes, n_features=4, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _expected_failures(estimator):
    if estimator.norm == "batch":
        # Batch statistics see repeated rows as more rows, so a weight of 2 and a row given
        # twice train different networks: the norm itself breaks this equivalence.
        reason = "BatchNorm's batch statistics count repeated rows, not sample weights"
        return {
            "check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason,
        }
    return {}


@parametrize_with_checks(
    [
        MLPClassifier(
            hidden_layer_sizes=(8,),
            max_iter=50,
            learning_rate_init=1e-2,
            activation="gelu",
            norm="batch",
            clip_norm=5.0,
            label_smoothing=0.1,
        ),
        MLPRegressor(
            hidden_layer_sizes=(8,),
            max_iter=50,
            learning_rate_init=1e-2,
            activation="silu",
            norm="layer",
            clip_norm=5.0,
        ),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks_with_the_new_parameters(estimator, check):
    check(estimator)


# ---- the logistic loss is the public binary cross-entropy
def test_logistic_loss_is_the_public_binary_cross_entropy_times_the_outputs():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 3)) * 4
    t = (rng.random((7, 3)) > 0.5).astype(np.float64)
    ours = LogisticLoss()
    assert isinstance(ours, BinaryCrossEntropy)
    public = BinaryCrossEntropy()
    value = float(ours.forward(z, t))
    np.testing.assert_allclose(value, 3 * float(public.forward(z, t)), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(), 3 * public.backward(), rtol=1e-12)
    # scikit-learn's definition: the binary log loss summed over outputs, mean over rows.
    p = 1 / (1 + np.exp(-z))
    expected = -np.mean(np.sum(t * np.log(p) + (1 - t) * np.log(1 - p), axis=1))
    np.testing.assert_allclose(value, expected, rtol=1e-10)


def test_weighted_logistic_loss_weights_rows_of_the_public_gradient():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 2))
    t = (rng.random((6, 2)) > 0.5).astype(np.float64)
    w = rng.random(6) + 0.1
    ours = LogisticLoss(weighted=True)
    value = float(ours.forward(z, np.column_stack([t, w])))
    p = 1 / (1 + np.exp(-z))
    rows = -np.sum(t * np.log(p) + (1 - t) * np.log(1 - p), axis=1)
    np.testing.assert_allclose(value, np.sum(w * rows) / w.sum(), rtol=1e-10)
    np.testing.assert_allclose(ours.backward(), (p - t) * (w / w.sum())[:, None], rtol=1e-10)
    # Integer weights are repeated rows.
    wi = np.array([1, 2, 1, 3, 1, 1], dtype=np.float64)
    rep = np.repeat(np.arange(6), wi.astype(int))
    a = float(LogisticLoss(weighted=True).forward(z, np.column_stack([t, wi])))
    b = float(LogisticLoss().forward(z[rep], t[rep]))
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_softmax_label_smoothing_matches_the_public_softmax_cross_entropy():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(9, 4))
    y = rng.integers(0, 4, size=9)
    ours, public = SoftmaxLogLoss(label_smoothing=0.2), SoftmaxCrossEntropy(label_smoothing=0.2)
    np.testing.assert_allclose(float(ours.forward(z, y)), float(public.forward(z, y)), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(), public.backward(), rtol=1e-12)


# ---- activation
@pytest.mark.parametrize(("name", "layer"), [("gelu", GELU), ("silu", SiLU)])
def test_gelu_and_silu_hidden_activations_train(name, layer):
    X, y = _blobs()
    clf = MLPClassifier(
        hidden_layer_sizes=(16,), activation=name, learning_rate_init=1e-2, random_state=0
    ).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert clf.model_.layers[0].activation == name
    # With a norm the activation becomes its own layer after the norm.
    normed = MLPClassifier(hidden_layer_sizes=(16,), activation=name, norm="layer", max_iter=5)
    normed.fit(X, y)
    kinds = [type(layer_) for layer_ in normed.model_.layers]
    assert kinds == [Dense, LayerNorm, layer, Dense]


# ---- norm
@pytest.mark.parametrize(("norm", "kind"), [("batch", BatchNorm), ("layer", LayerNorm)])
def test_norm_goes_after_each_hidden_dense_and_coefs_stay_dense_weights(norm, kind):
    X, y = _blobs()
    clf = MLPClassifier(
        hidden_layer_sizes=(16, 8), norm=norm, learning_rate_init=1e-2, random_state=0
    )
    clf.fit(X, y)
    kinds = [type(layer) for layer in clf.model_.layers]
    assert kinds == [Dense, kind, ReLU, Dense, kind, ReLU, Dense]
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 8), (8, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (3,)]
    assert clf.score(X, y) > 0.9
    # Same random_state, same scikit-learn initial Dense draws as without a norm.
    a = MLPClassifier(hidden_layer_sizes=(16, 8), norm=norm, max_iter=1, random_state=3)
    b = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=1, random_state=3)
    a._check_hyperparameters()
    b._check_hyperparameters()
    rs_a, rs_b = np.random.RandomState(3), np.random.RandomState(3)
    a._initialize([4, 16, 8, 3], "float64", rs_a, "softmax")
    b._initialize([4, 16, 8, 3], "float64", rs_b, "softmax")
    for ca, cb in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(ca, cb)
    # Assigning coefs_ writes the Dense weights and leaves the norm's alone.
    gamma = [p.data.copy() for p in clf.model_.parameters() if p.name == "weight"]
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    assert all(not c.any() for c in clf.coefs_)
    after = [p.data for p in clf.model_.parameters() if p.name == "weight"]
    for g0, g1 in zip(gamma, after, strict=True):
        np.testing.assert_array_equal(g0, g1)


def test_batch_norm_pickle_round_trip_keeps_running_statistics_and_predictions():
    X, y = _blobs()
    clf = MLPClassifier(
        hidden_layer_sizes=(16,), norm="batch", learning_rate_init=1e-2, random_state=0
    ).fit(X, y)
    bn = clf.model_.layers[1]
    assert isinstance(bn, BatchNorm)
    mean = np.asarray(bn.running_mean).copy()
    assert np.abs(mean).max() > 0  # trained statistics, not the initial zeros
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(np.asarray(back.model_.layers[1].running_mean), mean)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    # Training continues from the restored state like the original.
    a = clf.partial_fit(X, y)
    b = back.partial_fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-12)


def test_batch_norm_refuses_one_row_batches_clearly():
    X, y = _blobs(n=41)
    with pytest.raises(ValueError, match="leaves a last batch of one of the 41"):
        MLPClassifier(norm="batch", batch_size=20).fit(X, y)
    with pytest.raises(ValueError, match="n_samples=1"):
        MLPRegressor(norm="batch").fit(X[:1], y[:1])
    assert MLPClassifier(norm="batch", batch_size=16, max_iter=2).fit(X, y).n_iter_ == 2
    assert MLPClassifier(norm="layer", batch_size=20, max_iter=2).fit(X, y).n_iter_ == 2


def test_batch_norm_with_lbfgs_is_refused_and_layer_norm_trains_with_it():
    X, y = _blobs()
    with pytest.raises(ValueError, match="norm='batch' cannot be used with solver='lbfgs'"):
        MLPClassifier(norm="batch", solver="lbfgs").fit(X, y)
    clf = MLPClassifier(hidden_layer_sizes=(8,), norm="layer", solver="lbfgs", random_state=0)
    assert clf.fit(X, y).score(X, y) > 0.9
    reg = MLPRegressor(hidden_layer_sizes=(8,), norm="layer", solver="lbfgs", random_state=0)
    assert reg.fit(X, X[:, 0] - X[:, 1]).score(X, X[:, 0] - X[:, 1]) > 0.9


# ---- clip_norm
@pytest.mark.parametrize("solver", ["adam", "sgd", "adamw", "rmsprop"])
def test_clip_norm_reaches_the_optimizer_and_survives_pickling(solver):
    X, y = _blobs(n=40)
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, clip_norm=0.5, max_iter=3)
    clf.fit(X, y)
    assert clf._optimizer is not None and clf._optimizer.clip_norm == 0.5
    assert pickle.loads(pickle.dumps(clf))._optimizer.clip_norm == 0.5
    assert MLPClassifier(solver=solver, max_iter=1).fit(X, y)._optimizer.clip_norm is None


def test_clip_norm_bounds_the_first_sgd_step():
    X, y = _blobs(n=60)
    lr, clip = 0.5, 1e-3
    kwargs = dict(
        hidden_layer_sizes=(8,), solver="sgd", momentum=0.0, learning_rate_init=lr,
        batch_size=60, alpha=0.0, random_state=0, shuffle=False,
    )  # fmt: skip
    clipped = MLPClassifier(clip_norm=clip, **kwargs)
    free = MLPClassifier(**kwargs)
    for est in (clipped, free):
        est.partial_fit(X, y, classes=np.unique(y))
    start = MLPClassifier(max_iter=1, **kwargs)
    start._check_hyperparameters()
    start._initialize([4, 8, 3], "float64", np.random.RandomState(0), "softmax")
    w0 = np.concatenate([w.ravel() for w in start.model_.get_weights()])

    def step(est):
        return np.linalg.norm(np.concatenate([w.ravel() for w in est.model_.get_weights()]) - w0)

    assert step(clipped) == pytest.approx(lr * clip, rel=1e-6)
    assert step(free) > 10 * lr * clip


# ---- label_smoothing
def test_label_smoothing_trains_the_softmax_output_softer():
    X, y = _blobs()
    kwargs = dict(hidden_layer_sizes=(16,), learning_rate_init=1e-2, random_state=0)
    hard = MLPClassifier(**kwargs).fit(X, y)
    soft = MLPClassifier(label_smoothing=0.3, **kwargs).fit(X, y)
    assert soft.score(X, y) > 0.9
    # Smoothed targets cap the confidence the loss asks for.
    assert soft.predict_proba(X).max() < hard.predict_proba(X).max()
    assert soft.predict_proba(X).max(axis=1).mean() < 0.9


def test_label_smoothing_of_logistic_outputs_is_two_class_smoothing():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(8, 2))
    t = (rng.random((8, 2)) > 0.5).astype(np.float64)
    ours = LogisticLoss(label_smoothing=0.2)
    public = BinaryCrossEntropy()
    smoothed = 0.8 * t + 0.1
    np.testing.assert_allclose(
        float(ours.forward(z, t)), 2 * float(public.forward(z, smoothed)), rtol=1e-12
    )
    np.testing.assert_allclose(ours.backward(), 2 * public.backward(), rtol=1e-12)
    w = rng.random(8) + 0.5
    weighted = LogisticLoss(weighted=True, label_smoothing=0.2)
    weighted.forward(z, np.column_stack([t, w]))
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(
        weighted.backward(), (p - smoothed) * (w / w.sum())[:, None], rtol=1e-10
    )
    # A binary classifier trained with smoothing is less confident.
    X, y = _blobs(classes=2)
    kwargs = dict(hidden_layer_sizes=(16,), learning_rate_init=1e-2, random_state=0)
    hard = MLPClassifier(**kwargs).fit(X, y)
    soft = MLPClassifier(label_smoothing=0.3, **kwargs).fit(X, y)
    assert soft.score(X, y) > 0.9
    assert soft.predict_proba(X).max() < hard.predict_proba(X).max()
    assert soft.predict_proba(X).max() < 0.95


def test_regressor_has_no_label_smoothing():
    assert "label_smoothing" not in MLPRegressor().get_params()
    assert MLPClassifier().get_params()["label_smoothing"] == 0.0


# ---- parameter handling
@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("activation", "swish", "activation must be one of"),
        ("norm", "group", "norm must be one of"),
        ("clip_norm", 0.0, "clip_norm must be"),
        ("clip_norm", "big", "clip_norm must be"),
        ("label_smoothing", 1.0, "label_smoothing must be"),
        ("label_smoothing", -0.1, "label_smoothing must be"),
    ],
)
def test_bad_new_parameters_fail_in_fit_with_a_clear_message(param, value, message):
    X, y = _blobs(n=30)
    clf = MLPClassifier(**{param: value})
    assert clf.get_params()[param] == value
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)


def test_new_parameters_go_through_get_set_params_and_clone():
    defaults = MLPClassifier().get_params()
    assert (defaults["norm"], defaults["clip_norm"], defaults["label_smoothing"]) == (
        "none",
        None,
        0.0,
    )
    assert MLPRegressor().get_params()["norm"] == "none"
    clf = MLPClassifier().set_params(
        activation="silu", norm="batch", clip_norm=2.0, label_smoothing=0.05
    )
    twin = clone(clf)
    for key in ("activation", "norm", "clip_norm", "label_smoothing"):
        assert twin.get_params()[key] == clf.get_params()[key]
    reg = clone(MLPRegressor(norm="layer", clip_norm=1.5))
    assert (reg.norm, reg.clip_norm) == ("layer", 1.5)
