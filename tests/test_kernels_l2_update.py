"""scikit-learn's L2 term fused into its SGD and Adam steps (``l2_velocity_sgd_update``,
``l2_adam_update``): the reference against the two-pass path it replaces, the compiled loops
against it, and the estimators' results unchanged by the fusion."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from update_helpers import BatchLoss, params_with_gradients

from xpnet.kernels import PortableKernels, get_kernels
from xpnet.kernels.numpy_fast import NumpyKernels

numba_cpu = pytest.importorskip("xpnet.kernels.numba_cpu")
NumbaKernels = numba_cpu.NumbaKernels
FLUSHES_SUBNORMALS = pytest.importorskip("xpnet.kernels.numba_fpenv").FLUSHES_SUBNORMALS

SEGMENTS = [(0, 12), (15, 27), (27, 30), (31, 31), (33, 40)]  # adjacent, empty, up to the end
N = 40
SGD = {"coef": 0.01, "lr": 0.05, "momentum": 0.9}
ADAM = {
    "coef": 0.01,
    "beta1": 0.9,
    "beta2": 0.999,
    "step_size": 0.003,
    "root_bc2": 0.05,
    "eps": 1e-7,
}


def _arrays(dtype, n=N, seed=0):
    rng = np.random.default_rng(seed)
    p, g, v = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    return p, g, v, np.abs(rng.standard_normal(n)).astype(dtype)


def _two_pass(kernels, p, g, segments, coef):
    # What SampleL2 did before the fusion: the term added to each weight's gradient, and
    # the squares of each weight, one segment at a time.
    g = g.copy()
    squares = 0.0
    for a, b in segments:
        squares = squares + np.vecdot(p[a:b], p[a:b])
        kernels.scaled_add(g[a:b], p[a:b], coef)
    return g, squares


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nesterov", [True, False])
def test_the_sgd_reference_is_the_term_then_the_step(dtype, nesterov):
    k = PortableKernels()
    p, g, v, _ = _arrays(dtype)
    g0 = g.copy()
    p2, v2 = p.copy(), v.copy()
    grad, squares = _two_pass(k, p, g, SEGMENTS, SGD["coef"])
    k.velocity_sgd_update(p2, grad, v2, lr=0.05, momentum=0.9, nesterov=nesterov)
    got = k.l2_velocity_sgd_update(p, g, v, SEGMENTS, **SGD, nesterov=nesterov)
    assert np.array_equal(p, p2) and np.array_equal(v, v2)
    assert np.array_equal(g, g0)  # the gradient is left as it was
    assert got.shape == () and got.dtype == dtype
    np.testing.assert_allclose(float(got), float(squares), rtol=1e-6)
    # Elements outside the segments took the plain step: no penalty there.
    p3, v3 = _arrays(dtype)[0].copy(), _arrays(dtype)[2].copy()
    k.velocity_sgd_update(p3, g0, v3, lr=0.05, momentum=0.9, nesterov=nesterov)
    assert np.array_equal(p[12:15], p3[12:15]) and not np.array_equal(p[:12], p3[:12])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_adam_reference_is_the_term_then_the_step(dtype):
    k = PortableKernels()
    p, g, m, v = _arrays(dtype)
    g0 = g.copy()
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    grad, squares = _two_pass(k, p, g, SEGMENTS, ADAM["coef"])
    hyper = {key: val for key, val in ADAM.items() if key != "coef"}
    k.adam_update(p2, grad, m2, v2, **hyper, step=5)
    got = k.l2_adam_update(p, g, m, v, SEGMENTS, **ADAM, step=5)
    assert np.array_equal(p, p2) and np.array_equal(m, m2) and np.array_equal(v, v2)
    assert np.array_equal(g, g0)
    np.testing.assert_allclose(float(got), float(squares), rtol=1e-6)


def test_the_reference_runs_on_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    p, g, v, _ = _arrays(np.float64)
    ref = [a.copy() for a in (p, g, v)]
    want = sum(float(np.sum(p[a:b] ** 2)) for a, b in SEGMENTS)
    P, G, V = (xps.asarray(a, copy=True) for a in (p, g, v))
    squares = PortableKernels().l2_velocity_sgd_update(P, G, V, SEGMENTS, **SGD, nesterov=True)
    PortableKernels().l2_velocity_sgd_update(*ref, SEGMENTS, **SGD, nesterov=True)
    assert np.array_equal(np.asarray(P), ref[0]) and np.array_equal(np.asarray(V), ref[2])
    assert float(squares) == pytest.approx(want)


@pytest.mark.parametrize("kernels", [NumpyKernels, NumbaKernels])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nesterov", [True, False])
def test_the_fast_sgd_gives_the_reference_bits(kernels, dtype, nesterov):
    p, g, v, _ = _arrays(dtype, n=5000, seed=1)
    segs = [(0, 3000), (3010, 4000), (4990, 5000)]
    ref = [a.copy() for a in (p, g, v)]
    want = PortableKernels().l2_velocity_sgd_update(*ref, segs, **SGD, nesterov=nesterov)
    got = kernels(np).l2_velocity_sgd_update(p, g, v, segs, **SGD, nesterov=nesterov)
    for a, b in zip((p, g, v), ref, strict=True):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [5, 16])  # 16: the step that flushes subnormal moments
def test_the_compiled_adam_gives_the_compiled_two_pass_bits(dtype, step):
    # The compiled Adam is held to the reference within ulps (tests/test_kernels_numba.py);
    # fused with the term it must give exactly the compiled Adam of the penalised gradient.
    k = NumbaKernels(np)
    p, g, m, v = _arrays(dtype, n=5000, seed=2)
    m[:50] = np.finfo(dtype).tiny / 4  # subnormal moments, flushed on step 16...
    g[:50] = 0.0  # ...when nothing moves them
    p[:50] = 0.0
    segs = [(0, 3000), (3010, 4000), (4990, 5000)]
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    grad, squares = _two_pass(k, p, g, segs, ADAM["coef"])
    hyper = {key: val for key, val in ADAM.items() if key != "coef"}
    k.adam_update(p2, grad, m2, v2, **hyper, step=step)
    got = k.l2_adam_update(p, g, m, v, segs, **ADAM, step=step)
    assert np.array_equal(p, p2) and np.array_equal(m, m2) and np.array_equal(v, v2)
    np.testing.assert_allclose(
        float(got), float(squares), rtol=1e-6 if dtype == np.float32 else 1e-12
    )
    want = [a.copy() for a in _arrays(dtype, n=5000, seed=2)]
    want[2][:50] = np.finfo(dtype).tiny / 4
    want[1][:50] = want[0][:50] = 0.0
    # Flushed on the flush steps, and on x86-64 on every step (the loops set DAZ and FTZ).
    assert (m[:50] == 0).all() == (FLUSHES_SUBNORMALS or step % 16 == 0)
    PortableKernels().l2_adam_update(*want, segs, **ADAM, step=step)
    # The reference writes subnormal weights there; flushed, they are zero.
    atol = np.finfo(dtype).tiny if FLUSHES_SUBNORMALS else 0
    np.testing.assert_allclose(p, want[0], rtol=8 * np.finfo(dtype).eps, atol=atol)


def test_no_segments_is_the_plain_step_and_no_squares():
    k = NumbaKernels(np)
    p, g, v, _ = _arrays(np.float32)
    p2, v2 = p.copy(), v.copy()
    k.velocity_sgd_update(p2, g, v2, lr=0.05, momentum=0.9, nesterov=True)
    assert float(k.l2_velocity_sgd_update(p, g, v, [], **SGD, nesterov=True)) == 0.0
    assert np.array_equal(p, p2) and np.array_equal(v, v2)


@pytest.mark.parametrize("kernels", [PortableKernels, NumbaKernels])
@pytest.mark.parametrize("segments", [[(5, 3)], [(0, 10), (5, 20)], [(30, N + 1)], [(-1, 4)]])
def test_bad_segments_are_refused_before_anything_changes(kernels, segments):
    p, g, v, _ = _arrays(np.float32)
    before = [a.copy() for a in (p, g, v)]
    with pytest.raises(ValueError, match="ordered, disjoint"):
        kernels(np).l2_velocity_sgd_update(p, g, v, segments, **SGD, nesterov=True)
    for a, b in zip((p, g, v), before, strict=True):
        assert np.array_equal(a, b)


def test_a_strided_buffer_takes_the_reference_path():
    k = NumbaKernels(np)
    p, g, v, _ = _arrays(np.float32, n=2 * N)
    ref = [a[::2].copy() for a in (p, g, v)]
    want = PortableKernels().l2_velocity_sgd_update(*ref, SEGMENTS, **SGD, nesterov=True)
    views = [a[::2] for a in (p, g, v)]
    got = k.l2_velocity_sgd_update(*views, SEGMENTS, **SGD, nesterov=True)
    assert np.array_equal(views[0], ref[0]) and np.array_equal(views[2], ref[2])
    assert float(got) == float(want)


# ----------------------------------------------------------------------------- estimators
@pytest.mark.parametrize(
    ("solver", "momentum", "compiled"),
    [("sgd", 0.9, True), ("adam", 0.9, True), ("sgd", 0.0, True), ("adam", 0.9, False)],
)
def test_the_fused_penalty_trains_as_the_hook_did(solver, momentum, compiled, monkeypatch):
    from xpnet.sklearn import MLPClassifier, _training

    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)

    def fit():
        est = MLPClassifier(
            hidden_layer_sizes=(7, 5), solver=solver, alpha=0.3, batch_size=32, max_iter=4,
            random_state=0, tol=0.0, n_iter_no_change=99, learning_rate_init=0.05,
            momentum=momentum,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.fit(X, y)

    calls = []
    real = _training._FusedL2.fuse_l2

    def counting(self, *args):
        calls.append(real(self, *args))
        return calls[-1]

    monkeypatch.setattr(_training._FusedL2, "fuse_l2", counting)
    # Kernels whose l2_* are the reference's two passes keep the hook.
    monkeypatch.setattr(NumbaKernels, "fused_l2", compiled)
    fused = fit()
    # Every step took the fused path, but plain SGD's (its update is one NumPy expression).
    expect = momentum > 0 and get_kernels(np).fused_l2  # False under XPNET_KERNELS=numpy
    assert len(calls) == 12 and all(calls) == expect
    assert any(calls) == all(calls)
    monkeypatch.setattr(_training._FusedL2, "_fuses", lambda self: False)
    hooked = fit()
    for a, b in zip(
        fused.coefs_ + fused.intercepts_, hooked.coefs_ + hooked.intercepts_, strict=True
    ):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(fused.loss_curve_, hooked.loss_curve_, rtol=1e-6)
    # The penalty is really in there: without it the weights differ.
    monkeypatch.setattr(_training.SampleL2, "__call__", lambda *a: None)
    assert not np.array_equal(fit().coefs_[0], fused.coefs_[0])


# ----------------------------------------------------------------------------- dispatch
def _spy(monkeypatch):
    """Which path the compiled kernels' L2 methods took: ("loop", name) when their compiled
    loop ran, ("reference", name) when they fell back."""
    seen = []
    for name in ("_l2_velocity_sgd", "_l2_adam"):
        real = getattr(numba_cpu, name)

        def loop(*args, _real=real, _name=name):
            seen.append(("loop", _name))
            return _real(*args)

        monkeypatch.setattr(numba_cpu, name, loop)
    for name in ("l2_velocity_sgd_update", "l2_adam_update"):
        real = getattr(PortableKernels, name)

        def ref(self, *args, _real=real, _name=name, **kwargs):
            seen.append(("reference", _name))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(PortableKernels, name, ref)
    return seen


def _call(kernels, which, arrays):
    p, g, v, m = arrays
    if which == "sgd":
        return kernels.l2_velocity_sgd_update(p, g, v, SEGMENTS, **SGD, nesterov=True)
    return kernels.l2_adam_update(p, g, v, m, SEGMENTS, **ADAM, step=3)  # m >= 0: 2nd moment


@pytest.mark.parametrize("which", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_buffers_of_one_dtype_take_the_compiled_loop(which, dtype, monkeypatch):
    seen = _spy(monkeypatch)
    arrays = _arrays(dtype)
    # A strided 1-D state is fine for the loop: it writes in place through the view.
    strided = [a if i != 2 else np.repeat(a, 2)[::2] for i, a in enumerate(arrays)]
    for case in (arrays, strided):
        seen.clear()
        _call(NumbaKernels(np), which, case)
        assert [kind for kind, _ in seen] == ["loop"]


@pytest.mark.parametrize("which", ["sgd", "adam"])
@pytest.mark.parametrize(
    "bad",
    ["2-d", "mixed p", "mixed g", "mixed state", "mixed first moment", "mixed second", "float16"],
)
def test_other_arrays_take_the_reference(which, bad, monkeypatch):
    if which == "sgd" and bad == "mixed second":
        pytest.skip("SGD has no second moment")
    p, g, v, m = _arrays(np.float32)
    arrays = {
        "2-d": (p.reshape(4, 10), g.reshape(4, 10), v.reshape(4, 10), m.reshape(4, 10)),
        "mixed p": (p.astype(np.float64), g, v, m),
        "mixed g": (p, g.astype(np.float64), v, m),
        "mixed state": (p, g, v.astype(np.float64), m.astype(np.float64)),
        "mixed first moment": (p, g, v.astype(np.float64), m),  # Adam's m, SGD's velocity
        "mixed second": (p, g, v, m.astype(np.float64)),  # Adam's v
        "float16": tuple(a.astype(np.float16) for a in (p, g, v, m)),
    }[bad]
    seen = _spy(monkeypatch)
    ref = [a.copy() for a in arrays]
    if bad == "2-d":  # the reference indexes the flat buffer's segments: it refuses a matrix
        with pytest.raises(ValueError, match="within"):
            _call(NumbaKernels(np), which, arrays)
    else:
        got = _call(NumbaKernels(np), which, arrays)
        want = _call(PortableKernels(), which, ref)
        # ...and got every argument (mixed dtypes round in another order: a tolerance).
        for a, b in zip(arrays, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert [kind for kind, _ in seen][:1] == ["reference"]


@pytest.mark.parametrize("step", [3, 16])
def test_the_numpy_adam_with_the_term_is_its_two_pass_self(step):
    k = NumpyKernels(np)
    p, g, m, v = _arrays(np.float32, n=400, seed=4)
    m[:20] = np.finfo(np.float32).tiny / 8
    segs = [(0, 150), (200, 400)]
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    grad, _ = _two_pass(k, p, g, segs, ADAM["coef"])
    hyper = {key: val for key, val in ADAM.items() if key != "coef"}
    k.adam_update(p2, grad, m2, v2, **hyper, step=step)
    k.l2_adam_update(p, g, m, v, segs, **ADAM, step=step)
    assert np.array_equal(p, p2) and np.array_equal(m, m2) and np.array_equal(v, v2)


def test_mixed_namespaces_are_a_type_error():
    xps = pytest.importorskip("array_api_strict")
    p, g, v, _ = _arrays(np.float64)
    for args in ((p, xps.asarray(g), v), (xps.asarray(p), g, xps.asarray(v))):
        with pytest.raises(TypeError):
            PortableKernels().l2_velocity_sgd_update(*args, SEGMENTS, **SGD, nesterov=True)


def test_the_squares_stay_on_the_buffers_device():
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    p, g, v, _ = (xps.asarray(a, device=device) for a in _arrays(np.float64))
    squares = PortableKernels().l2_velocity_sgd_update(p, g, v, SEGMENTS, **SGD, nesterov=True)
    assert squares.device == device and p.device == device


# ----------------------------------------------------------------------------- the hook
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_parameters_at_different_step_counts_keep_the_hook(optimizer):
    # A parameter stepped alone first leaves the flat buffer's parameters at different step
    # counts: that step goes parameter by parameter, and the term must still be added once.
    from xpnet.sklearn._training import SampleL2, SklearnAdam, SklearnSGD

    results = []
    for fuses in (True, False):
        params = params_with_gradients(5)
        make = SklearnSGD if optimizer == "sgd" else SklearnAdam
        opt = make(lr=0.1)
        opt._fuses = lambda fuses=fuses: fuses
        opt.step([params[1]])
        pen = SampleL2(0.5, BatchLoss(8))
        opt.add_hook(pen)
        opt.step(params)
        opt.step(params)
        results.append(([np.asarray(p.data).copy() for p in params], float(pen.epoch_penalty(8))))
    (fused, pen_f), (hooked, pen_h) = results
    for a, b in zip(fused, hooked, strict=True):
        assert np.array_equal(a, b)
    assert pen_f == pytest.approx(pen_h, rel=1e-6) and pen_f > 0


def test_alpha_one_is_a_penalty_like_any_other():
    from xpnet.sklearn import MLPRegressor

    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 3))
    y = X @ np.array([1.0, -2.0, 0.5])

    def fit(alpha):
        est = MLPRegressor(
            hidden_layer_sizes=(6,), alpha=alpha, max_iter=3, batch_size=20, random_state=0,
            tol=0.0, n_iter_no_change=99, solver="adam",
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.fit(X, y)

    near, one = fit(1.0 - 1e-9), fit(1.0)
    np.testing.assert_allclose(one.coefs_[0], near.coefs_[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(one.loss_curve_, near.loss_curve_, rtol=1e-6)
    assert one.loss_curve_[0] > fit(0.0).loss_curve_[0] + 0.1  # the term is in the loss


def test_one_penalty_follows_the_buffer_it_is_given():
    from xpnet.sklearn._training import SampleL2, SklearnSGD

    pen = SampleL2(0.5, BatchLoss(4))
    small, large = params_with_gradients(1), params_with_gradients(2)
    for params in (small, large):  # two buffers of the same layout...
        SklearnSGD(lr=0.1).step(params)  # (no hook: just builds the flat state)
    from xpnet import Sequential
    from xpnet.layers import Dense

    other = Sequential([Dense(3, 7), Dense(7, 2, activation="relu")], seed=0)
    for params in (small, other.parameters()):
        buf = params[0].buffer
        want = [s for p, s in zip(buf.params, buf.slices, strict=True) if len(p.shape) == 2]
        assert pen._segments(params, buf) == want


@pytest.mark.parametrize("fuses", [True, False])
def test_a_buffer_of_one_weight_takes_the_term(fuses):
    from xpnet.parameter import Parameter, ParameterBuffer
    from xpnet.sklearn._training import SampleL2, SklearnSGD

    w = Parameter(np.arange(6.0, dtype=np.float32).reshape(2, 3), "W")
    ParameterBuffer([w])
    w.grad[...] = 1.0
    opt = SklearnSGD(lr=0.5, momentum=0.5, hooks=[SampleL2(0.25, BatchLoss(2))])
    opt._fuses = lambda: fuses
    before = np.asarray(w.data).copy()
    opt.step([w])
    # v = -lr (g + rate / rows * w); p += momentum v - lr (g + ...) (Nesterov)
    g = 1.0 + 0.25 / 2 * before
    np.testing.assert_allclose(w.data, before - 0.5 * 0.5 * g - 0.5 * g, rtol=1e-6)
