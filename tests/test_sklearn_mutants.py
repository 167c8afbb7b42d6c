"""The estimators against scikit-learn's own MLP, by value, on tiny problems.

xpnet's estimators draw scikit-learn's initial weights for a ``random_state`` and, without
shuffling, visit the batches in scikit-learn's order, so on float64 data the two libraries'
weights, loss curves, validation scores, iteration counts and learning rates agree to
rounding: each test here fits both and compares (the L-BFGS objective and the private losses
are in test_sklearn_lbfgs_mutants.py). These tests are in-process (unlike
``test_sklearn_upstream.py``), so mutation testing sees them (docs/testing.md).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: F401
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn_mutants_helpers import (
    _BASE,
    _assert_same_training,
    _data,
    _fit_both,
    _numbers,
    _targets,
)

from xpnet.sklearn import MLPClassifier, MLPRegressor

_STOCHASTIC_CASES = {
    "sgd-nesterov-invscaling-l2": (
        MLPRegressor,
        "regression",
        dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, power_t=0.4),
        dict(alpha=0.3),
    ),
    "sgd-momentum-weighted-l2": (
        MLPRegressor,
        "regression",
        dict(solver="sgd", nesterovs_momentum=False, momentum=0.5, learning_rate_init=0.05),
        dict(alpha=0.2, sample_weight=True),
    ),
    "sgd-no-momentum": (
        MLPRegressor,
        "regression",
        dict(solver="sgd", momentum=0.0, learning_rate_init=0.05, batch_size=30),
        {},
    ),
    "adam-betas-eps-l2": (
        MLPRegressor,
        "regression",
        dict(solver="adam", learning_rate_init=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
        dict(alpha=0.1),
    ),
    "sgd-adaptive": (
        MLPRegressor,
        "regression",
        dict(
            solver="sgd",
            learning_rate="adaptive",
            learning_rate_init=0.5,
            n_iter_no_change=2,
            tol=0.1,
            max_iter=40,
        ),
        {},
    ),
    "adam-tol-converges": (
        MLPRegressor,
        "regression",
        dict(solver="adam", learning_rate_init=0.05, tol=0.05, n_iter_no_change=1, max_iter=60),
        {},
    ),
    "poisson-adam": (
        MLPRegressor,
        "count",
        dict(solver="adam", learning_rate_init=0.02, loss="poisson"),
        dict(alpha=0.05),
    ),
    "binary-sgd-weighted": (
        MLPClassifier,
        "binary",
        dict(solver="sgd", learning_rate_init=0.1, activation="logistic"),
        dict(alpha=0.1, sample_weight=True),
    ),
    "multiclass-adam-tanh": (
        MLPClassifier,
        "multiclass",
        dict(solver="adam", learning_rate_init=0.1, activation="tanh"),
        dict(alpha=0.1),
    ),
    "multilabel-adam-weighted": (
        MLPClassifier,
        "multilabel",
        dict(solver="adam", learning_rate_init=0.1, activation="identity"),
        dict(sample_weight=True),
    ),
    "early-stopping-regressor-weighted": (
        MLPRegressor,
        "regression",
        dict(
            solver="adam",
            learning_rate_init=0.1,
            early_stopping=True,
            validation_fraction=0.3,
            n_iter_no_change=3,
            max_iter=30,
        ),
        dict(alpha=0.01, sample_weight=True),
    ),
    "early-stopping-multilabel": (
        MLPClassifier,
        "multilabel",
        dict(solver="adam", learning_rate_init=0.1, early_stopping=True, validation_fraction=0.3),
        {},
    ),
    "early-stopping-poisson-weighted": (
        MLPRegressor,
        "count",
        dict(
            solver="adam",
            loss="poisson",
            learning_rate_init=0.05,
            early_stopping=True,
            validation_fraction=0.3,
        ),
        dict(sample_weight=True),
    ),
    "early-stopping-binary": (
        MLPClassifier,
        "binary",
        dict(
            solver="adam",
            learning_rate_init=0.1,
            early_stopping=True,
            validation_fraction=0.3,
            n_iter_no_change=3,
            max_iter=30,
        ),
        {},
    ),
    "early-stopping-binary-weighted-sgd": (
        MLPClassifier,
        "binary",
        dict(
            solver="sgd",
            learning_rate_init=0.3,
            early_stopping=True,
            validation_fraction=0.4,
            n_iter_no_change=2,
            tol=0.05,
            max_iter=30,
        ),
        dict(sample_weight=True),
    ),
}


@pytest.mark.parametrize("case", sorted(_STOCHASTIC_CASES))
def test_stochastic_training_matches_scikit_learn(case):
    cls, kind, kw, extra = _STOCHASTIC_CASES[case]
    X, y = _data()
    y = _targets(kind, X, y)
    kw = dict(_BASE, **kw, alpha=extra.get("alpha", 0.0), verbose=True)
    fit_kw = {"sample_weight": np.linspace(0.5, 2.0, len(X))} if extra.get("sample_weight") else {}
    (theirs, their_out, their_warn), (ours, our_out, our_warn) = _fit_both(cls, kw, X, y, **fit_kw)
    _assert_same_training(theirs, ours)
    assert our_warn == their_warn
    # The verbose lines (loss per epoch, validation score, the stopping message) agree too.
    np.testing.assert_allclose(_numbers(our_out), _numbers(their_out), rtol=1e-6, atol=1e-7)
    assert [w for w in our_out.split() if w.isalpha()] == [
        w for w in their_out.split() if w.isalpha()
    ]
    assert ours._no_improvement_count == theirs._no_improvement_count
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    if kw.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-12)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
        assert ours.best_loss_ is None and theirs.best_loss_ is None
    else:
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-11)
    if cls is MLPClassifier:
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-10)
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(
                ours.predict_log_proba(X), theirs.predict_log_proba(X), atol=1e-8
            )
    sw = np.linspace(2.0, 0.1, len(X))
    assert ours.score(X, y, sample_weight=sw) == pytest.approx(
        theirs.score(X, y, sample_weight=sw), rel=1e-9
    )
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_partial_fit_matches_scikit_learn_call_by_call():
    X, y = _data()
    kw = dict(_BASE, solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, alpha=0.1)
    theirs, ours = sk.MLPRegressor(**kw), MLPRegressor(**kw)
    for _ in range(3):
        theirs.partial_fit(X, y)
        ours.partial_fit(X, y)
    _assert_same_training(theirs, ours)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    yc = _targets("multiclass", X, y)
    kw = dict(_BASE, solver="adam", learning_rate_init=0.1)
    theirs, ours = sk.MLPClassifier(**kw), MLPClassifier(**kw)
    for _ in range(2):
        theirs.partial_fit(X, yc, classes=[0, 1, 2, 3])
        ours.partial_fit(X, yc, classes=[0, 1, 2, 3])
    _assert_same_training(theirs, ours)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)


def test_warm_start_fit_matches_scikit_learn():
    X, y = _data()
    kw = dict(_BASE, solver="sgd", learning_rate_init=0.05, warm_start=True, max_iter=4)
    theirs, ours = sk.MLPRegressor(**kw), MLPRegressor(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(2):
            theirs.fit(X, y)
            ours.fit(X, y)
    _assert_same_training(theirs, ours)
    assert len(ours.loss_curve_) == 8


@pytest.mark.parametrize("start", [5e-6, 1e-6])
def test_adaptive_rate_divides_by_five_until_it_is_at_most_1e_6(start):
    # No epoch improves by tol: each trigger divides the rate by 5 until it is <= 1e-6.
    X, y = _data()
    kw = dict(
        _BASE,
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=start,
        n_iter_no_change=1,
        tol=100.0,
        max_iter=50,
        verbose=True,
    )
    (theirs, their_out, _), (ours, our_out, _) = _fit_both(MLPRegressor, kw, X, y)
    _assert_same_training(theirs, ours)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    assert our_out.count("Learning rate too small") == 1
    assert our_out.count("Setting learning rate to") == their_out.count("Setting learning rate to")


def test_constant_rate_stops_at_the_first_trigger_without_changing_the_rate():
    X, y = _data()
    kw = dict(_BASE, solver="sgd", learning_rate_init=0.01, n_iter_no_change=1, tol=100.0)
    (theirs, _, _), (ours, _, _) = _fit_both(MLPRegressor, kw, X, y)
    _assert_same_training(theirs, ours)
    assert ours.n_iter_ == 3  # the first epoch improves on inf, two more do not
    assert ours._optimizer.learning_rate == 0.01


@pytest.mark.parametrize(
    ("cls", "kind", "kw"),
    [
        (MLPRegressor, "regression", dict(alpha=0.1, max_iter=30)),
        (MLPRegressor, "regression", dict(alpha=0.0, max_iter=15)),
        (MLPRegressor, "count", dict(alpha=0.1, max_iter=20, loss="poisson")),
        (MLPClassifier, "binary", dict(alpha=0.1, activation="logistic", max_iter=25)),
        (MLPClassifier, "multiclass", dict(alpha=0.1, max_iter=25, hidden_layer_sizes=(3, 4))),
        (MLPClassifier, "multilabel", dict(alpha=0.1, max_iter=15, max_fun=20)),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_matches_scikit_learn(cls, kind, kw, weighted):
    X, y = _data()
    y = _targets(kind, X, y)
    kw = dict(_BASE, solver="lbfgs", **kw)
    fit_kw = {"sample_weight": np.linspace(0.5, 2.0, len(X))} if weighted else {}
    (theirs, _, their_warn), (ours, _, our_warn) = _fit_both(cls, kw, X, y, **fit_kw)
    _assert_same_training(theirs, ours, curve=False)
    assert our_warn == their_warn
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    assert isinstance(ours.loss_, float) and isinstance(ours.n_iter_, int)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8, atol=1e-10)


def test_lbfgs_warns_exactly_when_it_did_not_converge():
    X, y = _data()
    kw = dict(_BASE, solver="lbfgs", alpha=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLPRegressor(**dict(kw, max_iter=500)).fit(X, y)
    for limit, why in (
        (dict(max_iter=3), "ITERATIONS REACHED LIMIT"),
        (dict(max_fun=4), "EVALUATIONS EXCEEDS LIMIT"),
    ):
        with pytest.warns(
            ConvergenceWarning, match=r"lbfgs failed to converge after \d+ iter"
        ) as rec:
            est = MLPRegressor(**dict(kw, **limit)).fit(X, y)
        assert why in str(rec[0].message)  # SciPy's own reason, passed on
        assert est.n_iter_ <= 4


def test_lbfgs_overflow_at_trial_points_is_silent():
    # Poisson's exp overflows at far trial points of the line search; that is SciPy's to
    # handle, and the fit stays quiet about it, as scikit-learn's does.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2)) * 30
    y = np.round(np.exp(rng.normal(size=40) * 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(
            hidden_layer_sizes=(5,), solver="lbfgs", loss="poisson", max_iter=30, random_state=0
        ).fit(X, y)


# ---- coefs_ and intercepts_ given before any fit
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_given_weights_before_a_fit_are_the_starting_point(dtype):
    X, y = _data(20)
    X = X.astype(dtype)
    rng = np.random.default_rng(0)
    coefs = [rng.normal(size=(3, 5)), rng.normal(size=(5, 2)), rng.normal(size=(2, 1))]
    intercepts = [rng.normal(size=(1, 5)), rng.normal(size=2), rng.normal(size=1)]
    est = MLPRegressor(hidden_layer_sizes=(5, 2), solver="sgd", learning_rate_init=1e-12)
    est.coefs_ = coefs
    est.intercepts_ = intercepts
    assert est.coefs_ is coefs and est.intercepts_ is intercepts
    est.partial_fit(X, y)
    assert "_given_coefs" not in est.__dict__ and "_given_intercepts" not in est.__dict__
    assert est.n_layers_ == 4
    assert est.model_.dtype == np.dtype(dtype).name
    for mine, given in zip(est.coefs_ + est.intercepts_, coefs + intercepts, strict=True):
        np.testing.assert_allclose(mine, np.reshape(given, mine.shape), rtol=1e-6)
    h = np.maximum(X @ coefs[0] + intercepts[0], 0)
    h = np.maximum(h @ coefs[1] + intercepts[1], 0)
    np.testing.assert_allclose(est.predict(X), (h @ coefs[2] + intercepts[2])[:, 0], rtol=1e-5)


def test_given_intercepts_alone_are_kept_apart_from_coefs():
    est = MLPRegressor()
    est.intercepts_ = [np.zeros(3)]
    assert "_given_coefs" not in est.__dict__
    assert len(est.intercepts_) == 1
    with pytest.raises(AttributeError, match="coefs_"):
        _ = est.coefs_
    est = MLPRegressor()
    est.coefs_ = [np.zeros((2, 3))]
    with pytest.raises(AttributeError, match="intercepts_"):
        _ = est.intercepts_


def test_setting_the_wrong_number_of_arrays_is_refused():
    X, y = _data(12)
    est = MLPRegressor(hidden_layer_sizes=(4, 3), max_iter=2, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    with pytest.raises(ValueError, match="expected 3 arrays, one per layer, got 2"):
        est.intercepts_ = est.intercepts_[:2]
    est.intercepts_ = [b + 1.0 for b in est.intercepts_]
    assert est.intercepts_[2][0] == pytest.approx(est.model_.get_weights()[5][0])


# ---- pickling
def _xpnet_objects(value) -> list[str]:
    if isinstance(value, dict):
        return [name for v in value.values() for name in _xpnet_objects(v)]
    if isinstance(value, (list, tuple)):
        return [name for v in value for name in _xpnet_objects(v)]
    module = type(value).__module__
    return [type(value).__name__] if module.startswith("xpnet") else []


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_pickled_state_holds_plain_values_only_and_round_trips(cls):
    X, y = _data(20)
    y = _targets("multiclass", X, y) if cls is MLPClassifier else y
    est = cls(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    state = est.__getstate__()
    assert "model_" not in state and "_optimizer" not in state
    assert _xpnet_objects(state) == []
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back._optimizer is back.model_.optimizer
    assert back._optimizer is not None
    # An unfitted estimator pickles and unpickles too (no model to carry).
    fresh = pickle.loads(pickle.dumps(cls(hidden_layer_sizes=(3,))))
    assert fresh.hidden_layer_sizes == (3,) and "model_" not in fresh.__dict__


@pytest.mark.parametrize(("cls", "out"), [(MLPClassifier, "softmax"), (MLPRegressor, "identity")])
def test_state_pickled_before_output_units_gets_them_from_the_network(cls, out):
    X, y = _data(20)
    y = _targets("multiclass", X, y) if cls is MLPClassifier else y
    est = cls(hidden_layer_sizes=(4, 5), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    state = est.__getstate__()
    for name in ("out_activation_", "n_outputs_", "n_layers_"):
        state.pop(name)
    old = cls.__new__(cls)
    old.__setstate__(state)
    assert old.out_activation_ == out
    assert old.n_outputs_ == est.n_outputs_ == est.model_.n_outputs
    assert old.n_layers_ == 4 and type(old.n_layers_) is int


# ---- the rest of the estimators' bookkeeping
def test_warm_start_into_early_stopping_starts_the_validation_record():
    X, y = _data(40)
    est = MLPRegressor(**dict(_BASE, max_iter=3, warm_start=True, learning_rate_init=0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
        assert est.validation_scores_ is None and est.best_validation_score_ is None
        est.set_params(early_stopping=True, max_iter=4, n_iter_no_change=50)
        est.fit(X, y)
    assert len(est.validation_scores_) == est.n_iter_ == 4
    assert est.best_validation_score_ == max(est.validation_scores_)


def test_early_stopping_count_follows_tol_on_the_validation_score():
    X, y = _data(40)
    y = _targets("binary", X, y)
    kw = dict(_BASE, early_stopping=True, validation_fraction=0.25, n_iter_no_change=2, tol=0.0)
    kw.update(max_iter=40, learning_rate_init=0.2)
    (theirs, _, _), (ours, _, _) = _fit_both(MLPClassifier, kw, X, y)
    _assert_same_training(theirs, ours)
    np.testing.assert_array_equal(ours.validation_scores_, theirs.validation_scores_)
    assert ours._no_improvement_count == theirs._no_improvement_count


def test_a_diverged_network_scores_nan_on_validation():
    X, y = _data(40)
    est = MLPRegressor(
        hidden_layer_sizes=(4,),
        activation="identity",
        solver="sgd",
        learning_rate_init=1e6,
        early_stopping=True,
        max_iter=5,
        n_iter_no_change=50,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X * 10, y * 10)  # the first epoch's weights are kept: finite
    assert np.isnan(est.validation_scores_[-1])
    assert est.best_validation_score_ == est.validation_scores_[0]


def test_validation_split_is_the_random_states_and_carries_the_weights():
    X, y = _data(30)
    sw = np.linspace(0.1, 3.0, 30)
    kw = dict(_BASE, early_stopping=True, validation_fraction=0.3, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, y, sample_weight=sw)
        b = MLPRegressor(**kw).fit(X, y, sample_weight=sw)
        c = MLPRegressor(**kw).fit(X, y)
    assert a.validation_scores_ == b.validation_scores_
    assert a.validation_scores_ != c.validation_scores_
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(**dict(kw, validation_fraction=0.02)).fit(X, y)
    # Two validation rows are enough.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(**dict(kw, validation_fraction=2 / 30)).fit(X, y)


def test_poisson_needs_non_negative_targets_and_accepts_zeros():
    X, y = _data(12)
    counts = np.abs(np.round(y))
    counts[0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(3,), loss="poisson", max_iter=2).fit(X, counts)
    assert est.out_activation_ == "exp"
    assert np.all(est.predict(X) > 0)
    with pytest.raises(ValueError, match=r"needs non-negative targets, got a minimum of -1\.0"):
        MLPRegressor(loss="poisson").fit(X, np.r_[-1.0, counts[1:]])
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="absolute").fit(X, y)


def test_regressor_targets_are_float64_columns():
    X, y = _data(12)
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, np.round(y).astype(np.int64))
    Y, act = est._encode_targets(np.array([1, 2, 3]), False, None)
    assert Y.dtype == np.float64 and Y.shape == (3, 1) and act == "identity"


def test_estimator_tags():
    assert MLPClassifier().__sklearn_tags__().classifier_tags.multi_label is True
    assert MLPRegressor().__sklearn_tags__().target_tags.multi_output is True
    assert MLPClassifier().__sklearn_tags__().input_tags.sparse is True
    assert MLPRegressor().__sklearn_tags__().input_tags.sparse is True


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_constructor_keeps_every_parameter(cls):
    # Every parameter a non-default value: each must reach the estimator as given.
    params = dict(
        hidden_layer_sizes=(7, 3),
        activation="tanh",
        solver="sgd",
        learning_rate_init=0.02,
        batch_size=11,
        max_iter=17,
        alpha=0.3,
        random_state=5,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=4,
        tol=0.01,
        verbose=True,
        warm_start=True,
        backend="array_api_strict",
        dtype="float32",
        learning_rate="adaptive",
        power_t=0.3,
        shuffle=False,
        momentum=0.4,
        nesterovs_momentum=False,
        beta_1=0.7,
        beta_2=0.9,
        epsilon=1e-5,
        max_fun=99,
        norm="layer",
        clip_norm=2.0,
    )
    params.update({"label_smoothing": 0.1} if cls is MLPClassifier else {"loss": "poisson"})
    assert cls(**params).get_params() == params


def test_partial_fit_classes_must_stay_the_same():
    X, y = _data(20)
    y = _targets("multiclass", X, y)
    est = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2, 3])
    est.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        est.partial_fit(X, y, classes=[0, 1, 2])
    # A binarizer left from a pickle without classes_ is not taken as a previous call.
    fresh = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    fresh.classes_ = np.array([0, 1])
    fresh.partial_fit(X, y, classes=[0, 1, 2, 3])
    np.testing.assert_array_equal(fresh.classes_, [0, 1, 2, 3])


def test_partial_fit_of_multilabel_targets_learns_the_labels_from_y():
    X, y = _data(20)
    Y = _targets("multilabel", X, y)
    est = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    est.partial_fit(X, Y, classes=[0, 1])
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 2
    assert est.predict(X).shape == (20, 2)


def test_binary_decode_and_score_use_the_weights():
    X, y = _data(30)
    yb = np.where(_targets("binary", X, y) == 1, "yes", "no")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0).fit(X, yb)
    raw = est._raw(X)
    expected = np.where(raw[:, 0] > 0, "yes", "no")
    np.testing.assert_array_equal(est.predict(X), expected)
    sw = (est.predict(X) == yb).astype(float) + 1e-3
    assert est._score_outputs(raw, yb, sw) == pytest.approx(
        float(np.sum(sw * (expected == yb)) / np.sum(sw))
    )


# ---- scikit-learn's optimizers
def test_sklearn_sgd_defaults_hooks_and_restored_rate():
    from xpnet.optimizers import L2Penalty
    from xpnet.sklearn._training import SklearnSGD

    assert SklearnSGD().hyperparameters() == {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "lr_schedule": "constant",
        "power_t": 0.5,
        "learning_rate": 0.1,
    }
    hook = L2Penalty(0.1)
    assert list(SklearnSGD(hooks=[hook]).hooks) == [hook]
    restored = SklearnSGD(lr=0.1, learning_rate=0.02)
    assert restored.learning_rate == 0.02 and restored.base_lr == 0.1


def test_adaptive_rate_survives_pickling_and_the_velocity_is_saved():
    X, y = _data()
    kw = dict(_BASE, solver="sgd", learning_rate="adaptive", learning_rate_init=0.5)
    kw.update(n_iter_no_change=1, tol=100.0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**kw).fit(X, y)
    assert est._optimizer.learning_rate == pytest.approx(0.5 / 5)
    back = pickle.loads(pickle.dumps(est))
    assert back._optimizer.learning_rate == pytest.approx(0.5 / 5)
    # The velocity travels with the pickle: training on from a copy is training on.
    kw = dict(_BASE, solver="sgd", learning_rate_init=0.05, momentum=0.8)
    a, b = MLPRegressor(**kw), MLPRegressor(**kw)
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    b = pickle.loads(pickle.dumps(b))
    assert all("velocity" in s for s in b.__getstate__()["_model_plain"]["optimizer"]["state"])
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_pickling_keeps_the_backend_and_a_missing_optimizer(solver):
    X, y = _data(20)
    est = MLPRegressor(
        hidden_layer_sizes=(3,), solver=solver, max_iter=3, backend="array_api_strict"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    back = pickle.loads(pickle.dumps(est))
    assert back.model_.backend.name == "array_api_strict"
    assert (back.model_.optimizer is None) is (solver == "lbfgs")
    np.testing.assert_array_equal(back.predict(X), est.predict(X))


def test_predictions_of_more_rows_than_one_forward_chunk():
    X, y = _data(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
    big = np.random.default_rng(1).normal(size=(1500, 3))  # two forward chunks
    pred = est.predict(big)
    assert pred.shape == (1500,)
    np.testing.assert_allclose(pred[1000:1100], est.predict(big[1000:1100]), rtol=1e-12)


def test_predict_log_proba_of_a_certain_class_is_quiet():
    X, y = _data(30)
    yb = _targets("binary", X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, yb)
    est.coefs_ = [c * 1e4 for c in est.coefs_]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logp = est.predict_log_proba(X * 100)
    assert np.isneginf(logp).any()


def test_batch_norm_trains_on_two_rows():
    X, y = _data(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(3,), norm="batch", max_iter=2).fit(X, y)
    assert est.n_iter_ == 2


def test_loss_name_is_checked_by_name():
    from xpnet.validation import InvalidArgumentError

    X, y = _data(12)
    with pytest.raises(InvalidArgumentError, match=r"^xpnet: loss must be one of") as info:
        MLPRegressor(loss="absolute").fit(X, y)
    assert info.value.name == "loss"


def test_an_unrelated_split_error_is_passed_on_unchanged():
    X, _ = _data(4)
    with pytest.raises(ValueError, match="the resulting train set will be empty") as info:
        MLPClassifier(early_stopping=True, validation_fraction=0.9).fit(X, [0, 1, 1, 1])
    assert "is the label" not in str(info.value)


def test_lbfgs_refuses_float64_input_beyond_a_float32_network():
    X, y = _data(12)
    X[0, 0] = 1e39
    with pytest.raises(ValueError, match="float32"):
        MLPRegressor(solver="lbfgs", dtype="float32", max_iter=2).fit(X, y)


def test_given_weights_need_one_intercept_per_coef():
    X, y = _data(12)
    est = MLPRegressor(hidden_layer_sizes=(3,), solver="sgd")
    est.coefs_ = [np.zeros((3, 3)), np.zeros((3, 1))]
    est.intercepts_ = [np.zeros(3), np.zeros(1), np.zeros(1)]
    with pytest.raises(ValueError, match="zip"):
        est.partial_fit(X, y)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_fitted_attributes_alone_do_not_make_a_fitted_estimator(cls):
    X, y = _data(12)
    est = cls()
    est.loss_curve_ = []
    with pytest.raises(NotFittedError):
        est._raw(X)
    with pytest.raises(NotFittedError):
        est._loss_grad_lbfgs(np.zeros(3), X, y, None, [], [], [], [])


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_float32_network_casts_float64_input_once(solver):
    X, y = _data(30)
    kw = dict(_BASE, solver=solver, dtype="float32", max_iter=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, y)
        b = MLPRegressor(**kw).fit(X.astype(np.float32), y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)
    pred = a.predict(X)
    assert pred.dtype == np.float32
    np.testing.assert_array_equal(pred, a.predict(X.astype(np.float32)))


def test_early_stopping_then_not_starts_the_loss_record():
    X, y = _data(40)
    est = MLPRegressor(**dict(_BASE, max_iter=3, warm_start=True, learning_rate_init=0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_params(early_stopping=True)
        est.fit(X, y)
        assert est.best_loss_ is None
        est.set_params(early_stopping=False)
        est.fit(X, y)
    assert est.best_loss_ == min(est.loss_curve_[3:])


def test_an_unchanged_loss_is_no_improvement_only_when_tol_says_so():
    # A rate too small to move the weights: every epoch's loss equals the best one.
    X, y = _data()
    kw = dict(_BASE, solver="sgd", learning_rate_init=1e-300, tol=0.0, n_iter_no_change=2)
    (theirs, _, _), (ours, _, _) = _fit_both(MLPRegressor, kw, X, y)
    _assert_same_training(theirs, ours)
    assert ours.n_iter_ == 12


def test_validation_of_a_float32_network_is_scored_in_float32():
    from sklearn.model_selection import train_test_split

    X, y = _data(30)
    kw = dict(_BASE, dtype="float32", early_stopping=True, validation_fraction=0.3, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**kw).fit(X, y)
    # The split the estimator made: its random state after the initial weights' draws.
    rs = np.random.RandomState(0)
    for shape in [(3, 4), 4, (4, 1), 1]:
        rs.uniform(-1, 1, shape)
    _, X_val, _, y_val = train_test_split(X, y.reshape(-1, 1), random_state=rs, test_size=0.3)
    assert est.validation_scores_[0] == est.score(X_val.astype(np.float32), y_val)


@pytest.mark.parametrize(("solver", "kind"), [("adamw", "AdamW"), ("rmsprop", "RMSProp")])
def test_xpnets_own_solvers_train_with_the_initial_rate(solver, kind):
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**dict(_BASE, solver=solver, learning_rate_init=0.02, max_iter=2))
        est.fit(X, y)
    assert type(est._optimizer).__name__ == kind
    assert est._optimizer.base_lr == 0.02


def test_sigmoid_is_logistic_with_its_initial_draws():
    X, y = _data()
    kw = dict(_BASE, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(activation="sigmoid", **kw).fit(X, y)
        b = MLPRegressor(activation="logistic", **kw).fit(X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)


def test_auto_batches_hold_at_most_200_rows_and_a_full_batch_is_quiet():
    X, y = _data(201)
    kw = dict(_BASE, batch_size="auto", max_iter=2, solver="sgd", learning_rate_init=0.05)
    (theirs, _, _), (ours, _, _) = _fit_both(MLPRegressor, kw, X, y)
    _assert_same_training(theirs, ours)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(**dict(kw, batch_size=201)).fit(X, y)


def test_a_scalar_sample_weight_weights_every_row_alike():
    X, y = _data()
    kw = dict(_BASE, max_iter=2, solver="sgd", learning_rate_init=0.05, alpha=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, y, sample_weight=2.5)
        b = MLPRegressor(**kw).fit(X, y, sample_weight=np.full(len(X), 2.5))
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)


def test_shuffling_follows_the_random_state():
    X, y = _data()
    kw = dict(_BASE, shuffle=True, max_iter=3, solver="sgd", learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, y)
        b = MLPRegressor(**kw).fit(X, y)
        c = MLPRegressor(**dict(kw, shuffle=False)).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_the_shuffle_seed_comes_from_the_random_state():
    # The same starting weights, two random states: only the shuffles differ.
    X, y = _data()
    start = MLPRegressor(**dict(_BASE, max_iter=1, solver="sgd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start.fit(X, y)
        fits = []
        for seed in (0, 1):
            est = MLPRegressor(**dict(_BASE, shuffle=True, solver="sgd", random_state=seed))
            est.set_params(warm_start=True, max_iter=2, learning_rate_init=0.05)
            est.coefs_ = start.coefs_
            est.intercepts_ = start.intercepts_
            fits.append(est.fit(X, y).coefs_[0])
    assert not np.array_equal(fits[0], fits[1])


def test_an_optimizer_without_schedules_stops_at_the_first_trigger():
    X, y = _data()
    kw = dict(_BASE, solver="adamw", learning_rate_init=0.01, n_iter_no_change=1, tol=100.0)
    est = MLPRegressor(**kw).fit(X, y)
    assert est.n_iter_ == 3  # the first epoch improves on inf, two more do not
