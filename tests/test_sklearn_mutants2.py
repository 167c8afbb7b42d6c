"""Fast, direct tests of what the estimators' mutation run found unchecked: each hyperparameter's
exact refusal and its accepted edge, sample weights, weights given before a fit, scikit-learn's
L2 hook against a float64 reference, and the private losses' refusal of mixed backends.

Every test here fits a few rows for a few epochs at most: mutmut runs the tests covering a
mutated function fastest first, so these decide most mutants before the slower comparisons
with scikit-learn run (docs/testing.md).
"""

from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("sklearn")

from xpnet import to_numpy
from xpnet.parameter import Parameter
from xpnet.sklearn import MLPClassifier, MLPRegressor
from xpnet.sklearn._losses import HalfSquaredError, LogisticLoss
from xpnet.sklearn._training import SampleL2, SklearnSGD
from xpnet.validation import InvalidArgumentError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_TINY = dict(hidden_layer_sizes=(2,), max_iter=2, random_state=0)


def _rows(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def _weights(est) -> list[np.ndarray]:
    return est.coefs_ + est.intercepts_


# ---- each hyperparameter refused by its own name, with its own range
@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        ("power_t", -0.5, "a finite number >= 0"),
        ("alpha", -1e-3, "a finite number >= 0"),
        ("momentum", -0.1, "a number in [0, 1]"),
        ("momentum", 1.5, "a number in [0, 1]"),
        ("beta_1", -0.1, "a number in [0, 1)"),
        ("beta_1", 1.0, "a number in [0, 1)"),
        ("beta_1", 1.5, "a number in [0, 1)"),
        ("beta_2", -0.1, "a number in [0, 1)"),
        ("beta_2", 1.0, "a number in [0, 1)"),
        ("beta_2", 1.5, "a number in [0, 1)"),
        ("epsilon", 0.0, "a positive finite number"),
        ("validation_fraction", 0.0, "a number in (0, 1)"),
        ("validation_fraction", -0.5, "a number in (0, 1)"),
        ("max_fun", 0, "an integer >= 1"),
        ("n_iter_no_change", 2.5, "an integer >= 1"),
        ("n_iter_no_change", -math.inf, "an integer >= 1"),
    ],
)
def test_a_bad_hyperparameter_is_refused_by_name_with_its_range(param, value, expected):
    X, y = _rows()
    est = MLPRegressor(**_TINY, **{param: value})
    with pytest.raises(InvalidArgumentError) as info:
        est.fit(X, y)
    message = f"xpnet: {param} must be {expected}, got {value!r}"
    assert str(info.value) == message
    assert (info.value.name, info.value.expected, info.value.value) == (param, expected, value)
    # Refused before anything was built.
    assert "model_" not in vars(est)


@pytest.mark.parametrize("sizes", [3.5, (2, True), (True,), (2.0,), (4, "8"), None])
def test_hidden_layer_sizes_must_be_positive_integers(sizes):
    X, y = _rows()
    with pytest.raises(ValueError, match="hidden_layer_sizes must be a positive integer") as info:
        MLPRegressor(hidden_layer_sizes=sizes, max_iter=1).fit(X, y)
    assert type(info.value) is ValueError
    assert repr(sizes) in str(info.value)


@pytest.mark.parametrize("sizes", [1, (1,), (2, 1)])
def test_one_unit_hidden_layers_and_an_endless_patience_are_accepted(sizes):
    X, y = _rows()
    # tol=10 makes every epoch one without improvement: only an infinite patience goes on.
    est = MLPRegressor(
        hidden_layer_sizes=sizes, n_iter_no_change=math.inf, tol=10.0, max_iter=3, random_state=0
    ).fit(X, y)
    units = [3, *np.atleast_1d(sizes).tolist(), 1]
    assert [c.shape for c in est.coefs_] == list(itertools.pairwise(units))
    assert est.n_iter_ == 3


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("momentum", 0.0),
        ("momentum", 1.0),
        ("beta_1", 0.0),
        ("beta_2", 0.0),
        ("power_t", 0.0),
        ("alpha", 0.0),
        ("validation_fraction", 0.999),
    ],
)
def test_the_edges_of_each_range_are_accepted(param, value):
    X, y = _rows()
    est = MLPRegressor(**_TINY, **{param: value}).fit(X, y)
    assert est.n_iter_ == 2
    assert getattr(est, param) == value


# ---- sample weights
def test_sample_weights_of_any_real_number_type_are_read_as_floats():
    X, y = _rows()
    kw = dict(_TINY, solver="sgd", shuffle=False, batch_size=4, alpha=0.3)
    floats = [0.5, 1.0, 2.0, 0.25, 1.5, 1.0, 0.75, 3.0]
    ref = MLPRegressor(**kw).fit(X, y, sample_weight=np.array(floats))
    for given in ([Fraction(f) for f in floats], [int(4 * f) / 4 for f in floats]):
        est = MLPRegressor(**kw).fit(X, y, sample_weight=given)
        for a, b in zip(_weights(est), _weights(ref), strict=True):
            np.testing.assert_array_equal(a, b)
        assert est.loss_curve_ == ref.loss_curve_


@pytest.mark.parametrize("scalar", [2.0, 3, np.float32(0.5)])
def test_a_scalar_sample_weight_is_that_weight_on_every_row(scalar):
    X, y = _rows()
    kw = dict(_TINY, solver="sgd", shuffle=False, batch_size=3, alpha=0.2)
    ref = MLPRegressor(**kw).fit(X, y, sample_weight=np.full(len(X), float(scalar)))
    est = MLPRegressor(**kw).fit(X, y, sample_weight=scalar)
    for a, b in zip(_weights(est), _weights(ref), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_one_negative_or_non_finite_sample_weight_is_refused(bad):
    X, y = _rows()
    w = np.ones(len(X))
    w[3] = bad
    est = MLPRegressor(**_TINY)
    with pytest.raises(ValueError, match=r"^xpnet: sample_weight must hold finite, non-negative"):
        est.fit(X, y, sample_weight=w)
    assert "model_" not in vars(est)


# ---- weights given before a fit
def _given(est, units):
    rng = np.random.default_rng(2)
    est.coefs_ = [rng.normal(size=(a, b)) for a, b in itertools.pairwise(units)]
    est.intercepts_ = [rng.normal(size=b) for b in units[1:]]


@pytest.mark.parametrize("cls", [MLPRegressor, MLPClassifier])
def test_a_cold_fit_drops_the_weights_given_before_it(cls):
    X, y = _rows()
    if cls is MLPClassifier:
        y = (y > 0).astype(int)
    est = cls(**_TINY)
    _given(est, [3, 5, 1])
    est.fit(X, y)  # not warm_start: a fresh network, the given arrays are forgotten
    assert [c.shape for c in est.coefs_] == [(3, 2), (2, 1)]
    state = est.__getstate__()
    assert "_given_coefs" not in state and "_given_intercepts" not in state


def test_partial_fits_from_given_weights_count_samples_from_zero():
    X, y = _rows()
    est = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", random_state=0)
    _given(est, [3, 4, 1])
    est.partial_fit(X, y)
    assert (est.t_, est.n_iter_) == (len(X), 1)
    est.partial_fit(X[:5], y[:5])
    assert (est.t_, est.n_iter_) == (len(X) + 5, 1)


# ---- scikit-learn's L2 hook against a float64 reference
def test_sample_l2_adds_the_weights_term_and_sums_each_batchs_penalty(backend):
    rng = np.random.default_rng(4)
    shapes = [(3, 3), (3,), (3, 2), (2,)]
    values = [rng.normal(size=s) for s in shapes]
    grads = [rng.normal(size=s) for s in shapes]
    params = []
    for v, g, name in zip(values, grads, ["W", "b", "W", "b"], strict=True):
        p = Parameter(backend.asarray(v.copy(), dtype="float64"), name)
        p.grad = backend.asarray(g.copy(), dtype="float64")
        params.append(p)
    loss = HalfSquaredError(weighted=True)
    hook = SampleL2(1.0, loss)
    expected_sum = 0.0
    for rows, scale in ((4, 1.0), (3, -0.5)):
        w = rng.uniform(0.5, 2.0, size=rows)
        target = np.column_stack([rng.normal(size=rows), w])
        loss.forward(backend.asarray(rng.normal(size=(rows, 1))), backend.asarray(target))
        # The weights move between batches: each batch's penalty is at its own weights.
        for p, v in zip(params, values, strict=True):
            p.data[...] = backend.asarray(scale * v, dtype="float64")
        before = [np.array(to_numpy(p.grad)) for p in params]
        hook(SklearnSGD(), params, None)
        for p, v, g in zip(params, values, before, strict=True):
            want = g + scale * v / w.sum() if v.ndim == 2 else g
            np.testing.assert_allclose(to_numpy(p.grad), want, rtol=1e-13, atol=1e-15)
        squares = sum(float(np.sum((scale * v) ** 2)) for v in values if v.ndim == 2)
        expected_sum += squares * rows / w.sum()
    n = 7
    assert hook.epoch_penalty(n) == pytest.approx(0.5 * expected_sum / n, rel=1e-13)
    assert hook.epoch_penalty(n) == 0.0  # the sum starts again


def test_sample_l2_with_a_zero_rate_changes_nothing():
    loss = HalfSquaredError()
    loss.forward(np.ones((2, 1)), np.zeros((2, 1)))
    p = Parameter(np.ones((2, 2)), "W")
    p.grad = np.full((2, 2), 0.5)
    hook = SampleL2(0.0, loss)
    hook(SklearnSGD(), [p], None)
    np.testing.assert_array_equal(p.grad, np.full((2, 2), 0.5))
    assert hook.epoch_penalty(2) == 0.0


# ---- the private losses: one backend per call
@pytest.mark.parametrize("loss", [HalfSquaredError(), HalfSquaredError(True), LogisticLoss(True)])
def test_a_private_loss_refuses_outputs_and_targets_of_two_backends(loss):
    strict = pytest.importorskip("array_api_strict")
    out = np.zeros((3, 1))
    target = np.column_stack([np.ones(3), np.ones(3)]) if loss.weighted else np.ones((3, 1))
    pattern = re.escape("arrays from different backends in one call")
    with pytest.raises(TypeError, match=pattern):
        loss.forward(out, strict.asarray(target))
    with pytest.raises(TypeError, match=pattern):
        loss.forward(strict.asarray(out), target)
