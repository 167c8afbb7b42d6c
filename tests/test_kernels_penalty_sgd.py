"""scikit-learn's velocity-form SGD and the in-place weight penalty, held to the reference.

Both kernels do the reference's operations in the reference's order (no fused multiply-add:
numba's algebraic flags leave out ``contract``), so the NumPy in-place and the compiled
versions must give the reference's bits exactly, NaN and infinity included.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from xpnet.kernels import PortableKernels
from xpnet.kernels.numpy_fast import NumpyKernels

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
DTYPES = ["float32", "float64"]
SIZES = [1, 7, 1000]


def _fast_kernels():
    kinds = [pytest.param(NumpyKernels, id="numpy")]
    if HAVE_NUMBA:
        from xpnet.kernels.numba_cpu import NumbaKernels

        kinds.append(pytest.param(NumbaKernels, id="numba"))
    return kinds


@pytest.fixture(params=_fast_kernels())
def fast(request):
    return request.param()


def _arrays(rng, n, dtype, k):
    out = [(rng.standard_normal(n) * 2).astype(dtype) for _ in range(k)]
    if n >= 7:
        out[1][:3] = [np.nan, np.inf, -np.inf]
    return out


def _sgd_reference(p, g, v, lr, momentum, nesterov):
    # scikit-learn's SGDOptimizer._get_updates followed by ``param += update``, in float64
    # where the inputs are, so the expected values come from outside xpnet's kernels.
    v_new = momentum * v - lr * g
    update = momentum * v_new - lr * g if nesterov else v_new
    return p + update, v_new


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_velocity_sgd_update_gives_the_reference_bits(fast, rng, dtype, n, nesterov):
    p, g, v = _arrays(rng, n, dtype, 3)
    ref = [p.copy(), v.copy()]
    got = [p.copy(), v.copy()]
    hyper = {"lr": 0.05, "momentum": 0.9, "nesterov": nesterov}
    with np.errstate(all="ignore"):
        for _ in range(3):
            PortableKernels().velocity_sgd_update(ref[0], g, ref[1], **hyper)
            fast.velocity_sgd_update(got[0], g, got[1], **hyper)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert got[0].dtype == np.dtype(dtype) and got[1].dtype == np.dtype(dtype)


@pytest.mark.parametrize("nesterov", [False, True])
def test_velocity_sgd_update_is_scikit_learns_rule(nesterov):
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.25, 1.0, -4.0])
    v = np.array([0.1, 0.0, -0.3])
    want_p, want_v = _sgd_reference(p, g, v, 0.1, 0.8, nesterov)
    PortableKernels().velocity_sgd_update(p, g, v, lr=0.1, momentum=0.8, nesterov=nesterov)
    np.testing.assert_allclose(v, want_v, rtol=1e-15)
    np.testing.assert_allclose(p, want_p, rtol=1e-15)
    # Nesterov looks one velocity ahead: the two rules move the parameters differently.
    other_p, _ = _sgd_reference(
        np.array([1.0, -2.0, 0.5]), g, np.array([0.1, 0.0, -0.3]), 0.1, 0.8, not nesterov
    )
    assert not np.allclose(p, other_p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("masked", [False, True])
def test_scaled_add_gives_the_reference_bits(fast, rng, dtype, n, masked):
    t, s = _arrays(rng, n, dtype, 2)
    mask = (rng.random(n) < 0.5).astype(dtype) if masked else None
    ref, got = t.copy(), t.copy()
    with np.errstate(all="ignore"):
        PortableKernels().scaled_add(ref, s, 1e-4 / 3, mask)
        fast.scaled_add(got, s, 1e-4 / 3, mask)
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == np.dtype(dtype)


def test_scaled_add_leaves_masked_out_entries_alone():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    s = np.array([10.0, 20.0, 30.0, 40.0])
    mask = np.array([1.0, 0.0, 1.0, 0.0])
    PortableKernels().scaled_add(t, s, 0.5, mask)
    np.testing.assert_array_equal(t, [6.0, 2.0, 18.0, 4.0])
    PortableKernels().scaled_add(t, s, 0.5)
    np.testing.assert_array_equal(t, [11.0, 12.0, 33.0, 24.0])


def test_fast_kernels_fall_back_on_layouts_they_do_not_take(fast, rng):
    # A strided target cannot be written through a flat view: the reference path runs.
    wide = rng.standard_normal(20)
    t = wide[::2]
    s = rng.standard_normal(10)
    want = t + 0.25 * s
    fast.scaled_add(t, s, 0.25)
    np.testing.assert_allclose(t, want, rtol=1e-15)
    p, g, v = wide[1::2].copy(), s.copy(), np.zeros(10)[::1]
    p32 = p.astype(np.float32)  # mixed dtypes: parameters float32, gradient float64
    want_p = p32 + (-0.1 * g.astype(np.float32))
    fast.velocity_sgd_update(p32, g, v.astype(np.float32), lr=0.1, momentum=0.9, nesterov=False)
    np.testing.assert_allclose(p32, want_p, rtol=1e-6)
