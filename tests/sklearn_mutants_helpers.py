"""Shared by the estimators' mutation tests: tiny data and a fit of both libraries."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning

_BASE = dict(hidden_layer_sizes=(4,), random_state=0, shuffle=False, batch_size=8, max_iter=12)


def _data(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def _targets(kind: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind == "binary":
        return (X[:, 0] + X[:, 1] > 0).astype(int)
    if kind == "multiclass":
        return (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    if kind == "multilabel":
        return np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0]).astype(int)
    if kind == "two-outputs":
        return np.column_stack([y, X[:, 1] - X[:, 2]])
    if kind == "count":
        return np.round(np.exp(0.5 * X[:, 0]))
    return y


def _fit_both(ours_cls, kw, X, y, **fit_kw):
    theirs_cls = getattr(sk, ours_cls.__name__)
    out = []
    for cls in (theirs_cls, ours_cls):
        buf = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf):
            warnings.simplefilter("always")
            est = cls(**kw).fit(X, y, **fit_kw)
        kinds = sorted({w.category.__name__ for w in caught if w.category is ConvergenceWarning})
        out.append((est, buf.getvalue(), kinds))
    return out


def _numbers(text: str) -> list[float]:
    return [float(tok.strip(",.")) for tok in text.split() if tok.strip(",.")[:1].isdigit()]


def _assert_same_training(theirs, ours, *, curve: bool = True) -> None:
    theirs_w, ours_w = theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_
    for a, b in zip(theirs_w, ours_w, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.n_layers_ == theirs.n_layers_
    assert ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    if curve:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9, atol=1e-12)
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9, abs=1e-12)
