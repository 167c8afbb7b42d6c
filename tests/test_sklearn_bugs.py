"""Regression tests for the bugs of issue 16 (each failed before its fix)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning

from xpnet.sklearn import MLPClassifier, MLPRegressor


def test_partial_fit_with_early_stopping_is_refused_clearly():
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0, 1] * 5)
    clf = MLPClassifier(early_stopping=True)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "model_")  # nothing was half-initialised


def test_finite_float64_input_beyond_float32_is_not_called_nan():
    X = np.array([[1e39, 0.0], [1.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reg = MLPRegressor(max_iter=2).fit(X, [1.0, 2.0])
        except ValueError as exc:  # scikit-learn's own message for a diverged network
            assert "NaN or infinite" not in str(exc)
        else:
            assert reg.model_.dtype == "float64"  # the dtype follows the input
            assert np.isfinite(reg.predict(X)).all()
    # A float32 network says that the values do not fit, instead of predicting NaN.
    reg32 = MLPRegressor(max_iter=2, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg32.fit([[1.0, 0.0], [1.0, 2.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="beyond the largest float32"):
        reg32.predict(X[:1])
    clf32 = MLPClassifier(max_iter=2, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf32.fit([[1.0, 0.0], [1.0, 2.0]], [0, 1])
    with pytest.raises(ValueError, match="beyond the largest float32"):
        clf32.predict(X[:1])


def test_a_one_sample_validation_set_is_refused():
    X = np.arange(10, dtype=float).reshape(5, 2)
    y = np.arange(5, dtype=float)
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.2).fit(X, y)


def test_stratified_split_error_names_the_label():
    X = [[1, 2], [2, 3], [3, 4], [4, 5]]
    with pytest.raises(ValueError, match=r"'True' is the label 'b'"):
        MLPClassifier(early_stopping=True).fit(X, ["a", "a", "a", "b"])
    X = np.arange(14, dtype=float).reshape(7, 2)
    with pytest.raises(ValueError, match=r"too few members are: \['c'\]"):
        MLPClassifier(early_stopping=True, validation_fraction=0.3).fit(
            X, ["a", "a", "a", "b", "b", "b", "c"]
        )


def test_sample_weight_two_copies_equal_weight_two():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -1.0, 0.5])
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=50, random_state=0, tol=0.0)
    w = np.ones(40)
    w[:10] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, y, sample_weight=w)
        b = MLPRegressor(**kw).fit(np.vstack([X, X[:10]]), np.concatenate([y, y[:10]]))
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-5, atol=1e-6)


def test_float32_input_stays_float32_with_lbfgs():
    rng = np.random.RandomState(0)
    X = rng.rand(6, 4)
    y = np.array([0, 1, 2, 0, 1, 2])
    clf = MLPClassifier(hidden_layer_sizes=3, solver="lbfgs", max_iter=1, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        assert clf.fit(X.astype(np.float32), y).coefs_[0].dtype == np.float32
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
