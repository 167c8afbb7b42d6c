"""The L-BFGS objective and the private losses by value: against scikit-learn's
``_loss_grad_lbfgs``, finite differences, SciPy run directly, and the losses' formulas."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn_mutants_helpers import _BASE, _data, _targets

from xpnet import Sequential
from xpnet.layers import Dense
from xpnet.sklearn import MLPClassifier, MLPRegressor
from xpnet.sklearn._helpers import output_activation
from xpnet.sklearn._lbfgs import LbfgsObjective
from xpnet.sklearn._losses import HalfSquaredError, LogisticLoss, PoissonLoss, SoftmaxLogLoss


# ---- the L-BFGS objective in scikit-learn's packing
def _sklearn_grad_args(est, X):
    units = [X.shape[1], *est.hidden_layer_sizes, est.n_outputs_]
    activations = [X] + [None] * (len(units) - 1)
    deltas = [None] * (len(activations) - 1)
    coef_grads = [np.empty((a, b)) for a, b in itertools.pairwise(units)]
    intercept_grads = [np.empty(b) for b in units[1:]]
    return activations, deltas, coef_grads, intercept_grads


def _pack(est) -> np.ndarray:
    return np.concatenate([c.ravel() for c in est.coefs_] + [b.ravel() for b in est.intercepts_])


@pytest.mark.parametrize(
    ("cls", "kind", "weighted", "sparse"),
    [
        (MLPRegressor, "regression", False, False),
        (MLPRegressor, "regression", True, True),
        (MLPClassifier, "multiclass", True, False),
        (MLPClassifier, "binary", False, True),
        (MLPRegressor, "two-outputs", True, False),
    ],
)
def test_loss_grad_lbfgs_matches_scikit_learns_and_finite_differences(cls, kind, weighted, sparse):
    X, y = _data(12)
    y = _targets(kind, X, y)
    kw = dict(hidden_layer_sizes=(3, 4), solver="lbfgs", max_iter=3, alpha=0.7, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = getattr(sk, cls.__name__)(**kw).fit(X, y)
        ours = cls(**kw).fit(X, y)
    rng = np.random.default_rng(3)
    packed = _pack(theirs) + 0.3 * rng.normal(size=_pack(theirs).size)
    sw = np.linspace(0.2, 3.0, len(X)) if weighted else None
    Y = theirs._label_binarizer.transform(y) if cls is MLPClassifier else y.reshape(len(X), -1)
    Xin = sp.csr_matrix(X) if sparse else X
    their_args = _sklearn_grad_args(theirs, X)
    their_value, their_grad = theirs._loss_grad_lbfgs(packed, X, Y, sw, *their_args)
    our_args = _sklearn_grad_args(ours, X)
    y_in = Y if cls is MLPClassifier else y  # 1-D targets are taken as one output
    value, grad = ours._loss_grad_lbfgs(packed, Xin, y_in, sw, *our_args)
    assert isinstance(value, float)
    if kind != "two-outputs":
        # scikit-learn reports the squared error averaged over the outputs but follows the
        # gradient of their sum; xpnet's value is the sum (consistent with the gradient).
        assert value == pytest.approx(their_value, rel=1e-10)
    np.testing.assert_allclose(grad, their_grad, rtol=1e-9, atol=1e-12)
    for mine, ref in zip(our_args[2] + our_args[3], their_args[2] + their_args[3], strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-12)
    eps = 1e-6
    for i in range(0, packed.size, 5):
        step = np.zeros_like(packed)
        step[i] = eps
        up, _ = ours._loss_grad_lbfgs(packed + step, X, y_in, sw, *our_args)
        down, _ = ours._loss_grad_lbfgs(packed - step, X, y_in, sw, *our_args)
        assert (up - down) / (2 * eps) == pytest.approx(grad[i], rel=1e-5, abs=1e-8)


def test_loss_grad_lbfgs_refuses_an_unfitted_estimator_and_norm_layers():
    X, y = _data(12)
    with pytest.raises(NotFittedError):
        MLPRegressor()._loss_grad_lbfgs(np.zeros(3), X, y, None, [], [], [], [])
    est = MLPRegressor(hidden_layer_sizes=(4,), norm="layer", max_iter=2, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    with pytest.raises(ValueError, match="packs scikit-learn's Dense weights only"):
        est._loss_grad_lbfgs(np.zeros(21), X, y, None, [], [], [], [])


def _model(backend: str, dtype: str = "float64") -> Sequential:
    layers = [Dense(3, 4, activation="tanh"), Dense(4, 4, activation="tanh"), Dense(4, 2)]
    return Sequential(layers, dtype=dtype, seed=0, backend=backend)


def _objective(backend, loss, alpha, rebind: bool, dtype: str = "float64"):
    model = _model(backend, dtype)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 3))
    t = rng.normal(size=(9, 2))
    if isinstance(loss, SoftmaxLogLoss):
        t = rng.integers(0, 2, size=9)
    if loss.weighted:
        t = np.column_stack([t, rng.uniform(0.5, 2.0, size=9)])
    Xd = model.backend.asarray(X, dtype=dtype)
    yd = model.backend.asarray(t, dtype=loss.target_dtype(dtype, t.ndim))
    if rebind:
        # Parameters rebound off the flat buffer (as a user's assignment leaves them): the
        # objective then reads and writes them one by one.
        xp = model.backend.xp
        for p in model.parameters():
            p.data = xp.asarray(p.data, copy=True)
            p.grad = xp.zeros_like(p.data)
    return LbfgsObjective(model, loss, Xd, yd, alpha), model


@pytest.mark.parametrize(
    "loss",
    [HalfSquaredError(), HalfSquaredError(weighted=True), SoftmaxLogLoss(), PoissonLoss(True)],
    ids=repr,
)
@pytest.mark.parametrize("rebind", [False, True])
def test_lbfgs_objective_value_and_gradient(backend, loss, rebind):
    objective, model = _objective(backend, loss, 0.4, rebind)
    assert objective.buffer.holds(model.parameters()) is not rebind
    theta0 = np.asarray(objective.flat(), dtype=np.float64)
    assert theta0.shape == (sum(p.size for p in model.parameters()),)
    theta = theta0 + np.linspace(-0.2, 0.3, theta0.size)
    value, grad = objective(theta)
    assert isinstance(value, float) and grad.dtype == np.float64
    np.testing.assert_allclose(np.asarray(objective.flat()), theta, rtol=0, atol=0)
    for p, (a, b) in zip(model.parameters(), objective.buffer.slices, strict=True):
        np.testing.assert_array_equal(np.asarray(p.data).reshape(-1), theta[a:b])
    # The same objective on a model whose parameters stay in the buffer: the same numbers.
    ref, _ = _objective(backend, type(loss)(loss.weighted), 0.4, False)
    ref_value, ref_grad = ref(theta)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14)
    # The L2 term is alpha ||W||^2 / (2 sum(w)) on the weights only, never the biases.
    plain, _ = _objective(backend, type(loss)(loss.weighted), 0.0, rebind)
    plain_value, plain_grad = plain(theta)
    inv = float(np.asarray(plain.loss.inverse_weight_sum))
    mask = np.concatenate([np.full(p.size, float(len(p.shape) >= 2)) for p in model.parameters()])
    w = mask * theta
    assert value - plain_value == pytest.approx(0.5 * 0.4 * inv * float(w @ w), rel=1e-10)
    np.testing.assert_allclose(grad - plain_grad, 0.4 * inv * w, rtol=1e-9, atol=1e-13)
    eps = 1e-6
    for i in range(0, theta.size, 4):
        step = np.zeros_like(theta)
        step[i] = eps
        up, _ = objective(theta + step)
        down, _ = objective(theta - step)
        assert (up - down) / (2 * eps) == pytest.approx(grad[i], rel=1e-5, abs=1e-8)
    assert objective.calls == 1 + 2 * len(range(0, theta.size, 4))


def test_lbfgs_objective_mask_follows_the_buffer(backend):
    objective, model = _objective(backend, HalfSquaredError(), 0.1, False, dtype="float32")
    data = objective.buffer.data
    assert objective.mask.dtype == data.dtype
    assert objective.mask.device == data.device
    assert objective.calls == 0
    assert objective.alpha == 0.1 and isinstance(objective.alpha, float)
    value, grad = objective(np.asarray(objective.flat(), dtype=np.float64))
    assert np.isfinite(value) and isinstance(value, float)
    assert grad.dtype == np.float64  # SciPy gets float64 from a float32 network too
    assert model.parameters()[0].data.dtype == data.dtype


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rebind", [False, True])
def test_lbfgs_objective_on_a_second_device(rebind, dtype):
    """Every array the objective makes follows the buffer's device (strict refuses a mix)."""
    xps = pytest.importorskip("array_api_strict")
    import dataclasses

    from xpnet.backend import resolve_backend

    backend = dataclasses.replace(resolve_backend("array_api_strict"), device=xps.Device("device1"))
    # strict also refuses to write float64 into a float32 network's parameters.
    ref, _ = _objective("numpy", HalfSquaredError(True), 0.3, False, dtype)
    objective, model = _objective(backend, HalfSquaredError(True), 0.3, rebind, dtype)
    assert model.parameters()[0].data.device == xps.Device("device1")
    theta = np.linspace(-1.0, 1.0, sum(p.size for p in model.parameters()))
    value, grad = objective(theta)
    ref_value, ref_grad = ref(theta)
    assert value == pytest.approx(ref_value, rel=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-7)
    assert model.parameters()[0].data.dtype == getattr(xps, dtype)


def test_softmax_log_loss_follows_the_labels_device_and_dtype():
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    z = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    expected = np.mean(np.log(np.exp(z).sum(axis=1)) - z[[0, 1], [2, 0]])
    logits = xps.asarray(z, device=device)
    value = SoftmaxLogLoss().forward(logits, xps.asarray([2, 0], dtype=xps.uint64, device=device))
    assert value.device == device
    assert float(value) == pytest.approx(expected)
    weighted = SoftmaxLogLoss(weighted=True)
    target = xps.asarray([[2.0, 1.0], [0.0, 3.0]], device=device)
    value = weighted.forward(logits, target)
    per_row = np.log(np.exp(z).sum(axis=1)) - z[[0, 1], [2, 0]]
    assert float(value) == pytest.approx(float(per_row @ [0.25, 0.75]))
    assert weighted.target_dtype("float32") == "float32"
    assert SoftmaxLogLoss().target_dtype("float32", 2) == "int64"


# ---- the private losses, by value against their formulas
def _loss_case(weighted: bool):
    rng = np.random.default_rng(7)
    z = rng.normal(size=(6, 2)) * 2
    t = np.array([[0.0, 0.5], [1.0, 2.0], [3.0, 0.0], [0.25, 1.0], [2.0, 4.0], [0.0, 0.0]])
    w = np.array([0.5, 1.0, 2.0, 0.25, 1.5, 1.0]) if weighted else np.ones(6)
    return z, t, w


@pytest.mark.parametrize("weighted", [False, True])
def test_half_squared_error_and_poisson_values_and_gradients(weighted):
    z, t, w = _loss_case(weighted)
    target = np.column_stack([t, w]) if weighted else t
    scale = (w / w.sum())[:, None]
    loss = HalfSquaredError(weighted)
    value = float(loss.forward(z, target))
    assert value == pytest.approx(float(np.sum(0.5 * (z - t) ** 2 * scale)), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (z - t) * scale, rtol=1e-12)
    loss = PoissonLoss(weighted)
    ylogy = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
    expected = np.sum((ylogy - t * z - t + np.exp(z)) * scale)
    assert float(loss.forward(z, target)) == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (np.exp(z) - t) * scale, rtol=1e-12)
    assert loss.batch_rows == 6
    assert float(np.asarray(loss.inverse_weight_sum)) == pytest.approx(1.0 / w.sum())


@pytest.mark.parametrize("cls", [HalfSquaredError, PoissonLoss, LogisticLoss, SoftmaxLogLoss])
def test_losses_keep_a_float32_networks_dtype(cls):
    z = np.linspace(-1.0, 1.0, 8, dtype=np.float32).reshape(4, 2)
    if cls is SoftmaxLogLoss:
        t = np.array([0, 1, 1, 0])
    else:
        t = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    loss = cls()
    assert loss.forward(z, t).dtype == np.float32
    assert loss.backward().dtype == np.float32
    smoothed = cls() if cls in (HalfSquaredError, PoissonLoss) else cls(label_smoothing=0.2)
    assert smoothed.forward(z, t).dtype == np.float32


def test_loss_reprs_name_the_weighting_and_the_smoothing():
    assert repr(HalfSquaredError()) == "HalfSquaredError(weighted=False)"
    assert repr(PoissonLoss(True)) == "PoissonLoss(weighted=True)"
    assert repr(LogisticLoss()) == "LogisticLoss(weighted=False)"
    assert repr(SoftmaxLogLoss(True, label_smoothing=0.25)) == (
        "SoftmaxLogLoss(weighted=True, label_smoothing=0.25)"
    )


def test_output_activations_on_host_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-2000.0, -2001.0, -2002.0]])
    p = output_activation("softmax", z)
    e = np.exp([0.0, -1.0, -2.0])
    np.testing.assert_allclose(p[1], e / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=0)
    np.testing.assert_allclose(output_activation("logistic", z[:, :1]), [[1.0], [0.0]])
    np.testing.assert_allclose(output_activation("exp", np.array([[0.5]])), [[np.exp(0.5)]])
    np.testing.assert_array_equal(output_activation("identity", z), z)


def test_lbfgs_overflow_inside_the_objective_is_silent():
    from xpnet.sklearn._lbfgs import fit_lbfgs

    model = _model("numpy")
    rng = np.random.default_rng(0)
    weights = model.get_weights()
    weights[4] = weights[4] * 0 + 1000.0  # exp(1000 * sum(h)) overflows at the start
    weights[2] = weights[2] * 0 + 1.0  # (all h of one sign)
    model.set_weights(weights)
    Xd = model.backend.asarray(rng.normal(size=(5, 3)))
    yd = model.backend.asarray(np.ones((5, 2)))
    objective = LbfgsObjective(model, PoissonLoss(), Xd, yd, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit_lbfgs(objective, max_iter=3, max_fun=10, tol=1e-4)


def test_loss_grad_lbfgs_of_a_float32_network_works_in_float32():
    X, y = _data(12)
    kw = dict(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=2, alpha=0.5, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**kw).fit(X, y)
    packed = np.concatenate([c.ravel() for c in est.coefs_] + [b for b in est.intercepts_])
    packed = packed.astype(np.float64) + 0.01
    args = _sklearn_grad_args(est, X)
    value, grad = est._loss_grad_lbfgs(packed, X, y, None, *args)
    # The same objective built by hand from float32 device arrays.
    model = est.model_
    Xd = model.backend.asarray(X, dtype="float32")
    yd = model.backend.asarray(y.reshape(-1, 1), dtype="float32")
    ref = LbfgsObjective(model, HalfSquaredError(), Xd, yd, 0.5)
    ref_value, ref_grad = ref.sklearn_packed(packed, *_sklearn_grad_args(est, X)[2:])
    assert value == ref_value
    np.testing.assert_array_equal(grad, ref_grad)


def test_lbfgs_of_a_float32_network_is_scipys_float64_run():
    import scipy.optimize

    X, y = _data(30)
    X = X.astype(np.float32)
    kw = dict(_BASE, solver="lbfgs", dtype="float32", alpha=0.1, max_iter=25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(**kw).fit(X, y)
    # scikit-learn's initial draws for random_state=0, then SciPy's L-BFGS-B from float64.
    rs = np.random.RandomState(0)
    start = []
    for fan_in, fan_out in [(3, 4), (4, 1)]:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        start += [rs.uniform(-bound, bound, (fan_in, fan_out)), rs.uniform(-bound, bound, fan_out)]
    final_weights = est.model_.get_weights()
    model = est.model_
    model.set_weights(start)
    Xd = model.backend.asarray(X, dtype="float32")
    yd = model.backend.asarray(y.reshape(-1, 1), dtype="float32")
    objective = LbfgsObjective(model, HalfSquaredError(), Xd, yd, 0.1)
    theta0 = np.concatenate([w.ravel() for w in model.get_weights()]).astype(np.float64)
    options = {"maxfun": 15000, "maxiter": 25, "gtol": 1e-4}
    res = scipy.optimize.minimize(objective, theta0, method="L-BFGS-B", jac=True, options=options)
    final = np.concatenate([w.ravel() for w in final_weights])
    np.testing.assert_array_equal(final, res.x.astype(np.float32))
    assert est.n_iter_ == res.nit


def test_a_fresh_loss_has_no_gradient_and_is_unweighted():
    loss = HalfSquaredError()
    assert loss.backward() is None
    assert loss.weighted is False
