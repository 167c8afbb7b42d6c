"""The scikit-learn estimators: the estimator contract, pipelines, and sklearn-like training."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from xpnet import Sequential
from xpnet.sklearn import MLPClassifier, MLPRegressor


def _blobs(n: int = 120, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=n, centers=classes, n_features=4, random_state=seed)
    return StandardScaler().fit_transform(X), y


# Small networks and a livelier learning rate keep the ~50 checks to a few seconds; the
# public defaults stay scikit-learn's.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=1e-2),
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=1e-2),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_digits_pipeline_reaches_sensible_accuracy():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0, stratify=y)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), random_state=0))
    pipe.fit(X_tr, y_tr)
    assert pipe.score(X_te, y_te) >= 0.95
    clf = pipe[-1]
    assert isinstance(clf.model_, Sequential)
    assert clf.n_features_in_ == 64
    assert list(clf.classes_) == list(range(10))
    assert len(clf.loss_curve_) == clf.n_iter_ < 200  # converged through tol
    assert clf.best_loss_ == pytest.approx(min(clf.loss_curve_))


def test_grid_search_over_a_pipeline_with_clone():
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, random_state=0))
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)], "mlpclassifier__alpha": [1e-4, 1e-1]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__alpha"}
    assert grid.score(X, y) > 0.9
    fresh = clone(grid.best_estimator_[-1])
    assert not hasattr(fresh, "model_")
    assert fresh.get_params() == grid.best_estimator_[-1].get_params()


def test_string_and_noncontiguous_labels_come_back_as_given():
    X, y = _blobs()
    names = np.array(["cat", "dog", "emu"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    clf.fit(X, names)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    assert clf.score(X, names) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))

    sparse_labels = np.array([-5, 10, 42])[y]
    clf.fit(X, sparse_labels)
    assert list(clf.classes_) == [-5, 10, 42]
    assert set(np.unique(clf.predict(X))) <= {-5, 10, 42}


def test_partial_fit_needs_classes_first_then_trains_one_epoch_per_call():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:60], y[:60], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1
    for _ in range(30):
        clf.partial_fit(X, y)
    # As in scikit-learn, n_iter_ counts the epochs of the last call; loss_curve_ all of them.
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 31 and clf.t_ == 60 + 30 * len(X)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="has classes not in"):
        clf.partial_fit(X[:3], np.array([0, 1, 7]))
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])


def test_max_iter_without_convergence_warns_and_tol_stops_early():
    X, y = _blobs()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3

    # A tolerance nothing can meet: the first epoch counts as progress (from an infinite best
    # loss), then n_iter_no_change + 1 epochs without it stop training, as in scikit-learn.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(
            hidden_layer_sizes=(8,), max_iter=100, tol=10.0, n_iter_no_change=4, random_state=0
        ).fit(X, y)
    assert clf.n_iter_ == 6


def test_early_stopping_keeps_validation_scores_and_the_best_weights():
    X, y = _blobs(n=300)
    clf = MLPClassifier(
        hidden_layer_sizes=(16,),
        learning_rate_init=0.01,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=5,
        max_iter=200,
        random_state=0,
    ).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_validation_score_ > 0.9


def test_warm_start_continues_and_fit_restarts():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        first = clf.loss_curve_[-1]
        clf.fit(X, y)  # no warm start: starts afresh with the same seed
        assert clf.loss_curve_[-1] == pytest.approx(first)
        clf.set_params(warm_start=True)
        clf.fit(X, y)
    # scikit-learn's count: n_iter_ is this call's epochs; loss_curve_ goes on.
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 10 and clf.loss_curve_[-1] < first
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])


def test_alpha_adds_sklearns_l2_gradient_to_weights_only():
    X, y = _blobs(n=50)
    lr, alpha, n = 0.1, 5.0, len(X)
    kwargs = dict(
        hidden_layer_sizes=(6,),
        solver="sgd",
        learning_rate_init=lr,
        batch_size=n,
        random_state=3,
        dtype="float64",
    )
    plain = MLPClassifier(alpha=0.0, **kwargs).partial_fit(X, y, classes=[0, 1, 2])
    ridge = MLPClassifier(alpha=alpha, **kwargs).partial_fit(X, y, classes=[0, 1, 2])
    # The estimator's initial network: scikit-learn's Glorot-uniform draws from random_state.
    rs = np.random.RandomState(3)
    W0 = []
    for fan_in, fan_out in [(4, 6), (6, 3)]:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        W0 += [rs.uniform(-bound, bound, (fan_in, fan_out)), rs.uniform(-bound, bound, fan_out)]
    # One full-batch SGD step with Nesterov momentum 0.9 moves by lr * 1.9 * grad, so the two
    # runs differ by exactly lr * 1.9 * alpha * W0 / n on the weights and not at all on biases.
    for k in range(2):
        delta = ridge.coefs_[k] - plain.coefs_[k]
        np.testing.assert_allclose(delta, -lr * 1.9 * alpha * W0[2 * k] / n, atol=1e-12)
        np.testing.assert_allclose(ridge.intercepts_[k], plain.intercepts_[k], atol=1e-12)
    # loss_curve_ includes the penalty alpha * ||W||^2 / (2 n_batch), as scikit-learn's does.
    penalty = 0.5 * alpha * sum(float(np.sum(w * w)) for w in ridge.coefs_) / n
    assert ridge.loss_curve_[0] - penalty == pytest.approx(plain.loss_curve_[0], rel=0.2)


def test_deepcopy_of_a_fitted_estimator_keeps_weights_and_optimizer_state():
    X, y = _blobs()
    clf = MLPClassifier(
        hidden_layer_sizes=(8,), batch_size=len(X), random_state=0, dtype="float64"
    ).partial_fit(X, y, classes=[0, 1, 2])
    twin = copy.deepcopy(clf)
    assert twin.model_ is not clf.model_
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    # Full-batch steps do not depend on the shuffle, so equal Adam moments give equal steps.
    for est in (clf, twin):
        est.partial_fit(X, y)
    np.testing.assert_allclose(twin.predict_proba(X), clf.predict_proba(X), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_output_shapes_follow_y():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)
    reg.fit(X, y)
    assert reg.predict(X).shape == (150,)
    assert reg.score(X, y) > 0.95
    assert reg.n_outputs_ == 1

    Y = np.column_stack([y, -y])
    reg.fit(X, Y)
    assert reg.predict(X).shape == (150, 2)
    assert reg.n_outputs_ == 2
    assert reg.score(X, Y) > 0.95


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("hidden_layer_sizes", (8, 0), "hidden_layer_sizes must be"),
        ("activation", "softplus", "activation must be one of"),
        ("solver", "newton", "solver must be one of"),
        ("learning_rate", "cyclic", "learning_rate must be one of"),
        ("n_iter_no_change", 0, "n_iter_no_change must be"),
        ("learning_rate_init", 0.0, "learning_rate_init must be"),
        ("batch_size", 0, "batch_size must be"),
        ("validation_fraction", 1.0, "validation_fraction must be"),
        ("backend", "torch", "backend must be one of"),
        ("dtype", "float16", "dtype must be"),
    ],
)
def test_bad_hyperparameters_fail_in_fit_not_in_init(param, value, message):
    X, y = _blobs(n=30)
    clf = MLPClassifier(**{param: value})  # stored as given, per scikit-learn's rules
    assert clf.get_params()[param] == value
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)


def test_verbose_prints_the_loss_per_epoch(capsys):
    X, y = _blobs(n=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_array_api_strict_backend_agrees_with_numpy():
    pytest.importorskip("array_api_strict")
    X, y = _blobs(n=60)
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = MLPClassifier(backend="numpy", **kwargs).fit(X, y)
        strict = MLPClassifier(backend="array_api_strict", **kwargs).fit(X, y)
    assert strict.model_.backend.name == "array_api_strict"
    np.testing.assert_allclose(strict.predict_proba(X), ref.predict_proba(X), rtol=1e-9)
    np.testing.assert_allclose(strict.loss_curve_, ref.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_estimators_train_only_through_sequential_fit(monkeypatch, early_stopping):
    """Every training forward, backward and optimizer step happens inside Sequential.fit,
    and alpha reaches the optimizer as a gradient hook that is gone afterwards."""
    from xpnet.optimizers import L2Penalty, Optimizer

    inside = {"fit": 0}
    outside: list[str] = []
    real_fit, real_step, real_backward = Sequential.fit, Optimizer.step, Sequential.backward
    real_forward = Sequential.forward
    hooks_seen: list[list] = []

    def fit(self, *args, **kwargs):
        inside["fit"] += 1
        try:
            return real_fit(self, *args, **kwargs)
        finally:
            inside["fit"] -= 1

    def step(self, params):
        hooks_seen.append(list(self.hooks))
        if not inside["fit"]:
            outside.append("step")
        return real_step(self, params)

    def backward(self, *args, **kwargs):
        if not inside["fit"]:
            outside.append("backward")
        return real_backward(self, *args, **kwargs)

    def forward(self, X, training=False):
        if training and not inside["fit"]:
            outside.append("forward")
        return real_forward(self, X, training)

    monkeypatch.setattr(Sequential, "fit", fit)
    monkeypatch.setattr(Optimizer, "step", step)
    monkeypatch.setattr(Sequential, "backward", backward)
    monkeypatch.setattr(Sequential, "forward", forward)
    X, y = make_blobs(n_samples=80, centers=3, n_features=4, random_state=0)
    clf = MLPClassifier(
        hidden_layer_sizes=(8,),
        max_iter=5,
        alpha=0.1,
        early_stopping=early_stopping,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert outside == [] and hooks_seen
    assert all(len(h) == 1 and isinstance(h[0], L2Penalty) for h in hooks_seen)
    assert clf.model_.optimizer.hooks == []


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_cupy_backend_agrees_with_numpy(solver):
    """Every solver, the logistic/multi-label outputs, sample weights and the Poisson loss
    on a GPU give what NumPy gives (float64, so only summation order differs)."""
    from xpnet.backend import unavailable_reason

    reason = unavailable_reason("cupy")
    if reason is not None:
        pytest.skip(f"cupy backend unavailable: {reason}")
    from sklearn.datasets import make_multilabel_classification

    X, y = _blobs(n=90)
    Xm, Ym = make_multilabel_classification(n_samples=60, n_features=5, random_state=0)
    w = np.linspace(0.5, 2.0, len(X))
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, solver=solver)
    cases = [
        (MLPClassifier, X, y, None),
        (MLPClassifier, X, (y == 1).astype(int), w),
        (MLPClassifier, Xm.astype(float), Ym, None),
        (MLPRegressor, X, np.abs(X[:, 0]), w),
    ]
    for Est, A, b, sw in cases:
        ref = Est(backend="numpy", **kw).fit(A, b, sample_weight=sw)
        gpu = Est(backend="cupy", **kw).fit(A, b, sample_weight=sw)
        assert gpu.model_.backend.name == "cupy"
        np.testing.assert_allclose(gpu.predict(A), ref.predict(A), rtol=1e-6, atol=1e-8)
    ref = MLPRegressor(loss="poisson", backend="numpy", **kw).fit(X, np.abs(X[:, 1]))
    gpu = MLPRegressor(loss="poisson", backend="cupy", **kw).fit(X, np.abs(X[:, 1]))
    np.testing.assert_allclose(gpu.predict(X), ref.predict(X), rtol=1e-6)


def test_multilabel_poisson_sparse_and_sample_weights_on_numpy():
    from scipy.sparse import csr_matrix
    from sklearn.datasets import make_multilabel_classification

    X, Y = make_multilabel_classification(n_samples=60, n_features=5, random_state=0)
    kw = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200, random_state=0)
    clf = MLPClassifier(**kw).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == Y.shape[1]
    assert clf.predict(X).shape == Y.shape and np.mean(clf.predict(X) == Y) > 0.8
    np.testing.assert_array_equal(clf.predict(csr_matrix(X)), clf.predict(X))
    Xb, yb = _blobs(n=60, classes=2)
    binary = MLPClassifier(**kw).fit(Xb, yb)
    assert binary.n_outputs_ == 1 and binary.coefs_[-1].shape == (16, 1)
    assert binary.predict_proba(Xb).shape == (60, 2)
    # Zero weights drop samples: the fit equals the fit without them.
    w = np.ones(60)
    w[:10] = 0.0
    a = MLPClassifier(**kw).fit(Xb, yb, sample_weight=w)
    b = MLPClassifier(**kw).fit(Xb[10:], yb[10:])
    np.testing.assert_allclose(a.predict_proba(Xb), b.predict_proba(Xb), rtol=1e-4, atol=1e-6)
    reg = MLPRegressor(loss="poisson", **kw).fit(Xb, np.exp(Xb[:, 0]))
    assert reg.out_activation_ == "exp" and (reg.predict(Xb) > 0).all()
    with pytest.raises(ValueError, match="non-negative targets"):
        MLPRegressor(loss="poisson").fit(Xb, -np.ones(60))
