"""The NumPy in-place kernels' edges: arrays they cannot write in place (another array type,
a broadcast operand) go to the portable reference with its numbers; an ``out`` of the wrong
shape or dtype is left alone; the second scratch array follows the shape; and the clipping
coefficient is clamped to 1 for every norm under ``max_norm``."""

from __future__ import annotations

import array_api_compat.numpy as np_xp
import numpy as np
import pytest

from xpnet.backend import to_numpy
from xpnet.kernels import PortableKernels
from xpnet.kernels.numpy_fast import NumpyKernels

strict = pytest.importorskip("array_api_strict")
StrictArray = type(strict.asarray(0.0))


def _a(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def _velocity_reference(p, g, v, lr, momentum, nesterov):
    # scikit-learn's velocity SGD in float64, written out here.
    v = momentum * v - lr * g
    return p + (momentum * v - lr * g if nesterov else v), v


@pytest.mark.parametrize("nesterov", [False, True])
def test_velocity_sgd_update_of_strict_arrays_takes_the_reference(nesterov):
    p0, g0, v0 = _a((3, 4), 1), _a((3, 4), 2), _a((3, 4), 3)
    want_p, want_v = _velocity_reference(p0, g0, v0, 0.1, 0.8, nesterov)
    p, g, v = (strict.asarray(a.copy()) for a in (p0, g0, v0))
    NumpyKernels().velocity_sgd_update(p, g, v, lr=0.1, momentum=0.8, nesterov=nesterov)
    assert isinstance(p, StrictArray) and isinstance(v, StrictArray)
    np.testing.assert_allclose(to_numpy(v), want_v, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(to_numpy(p), want_p, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_velocity_sgd_update_broadcasts_a_row_of_state_as_the_reference_does(nesterov):
    # One velocity row shared by every row of p: the in-place path cannot write that.
    p, g, v = _a((3, 4), 1), _a((4,), 2), _a((4,), 3)
    want_p, want_v = _velocity_reference(p, g, v, 0.1, 0.8, nesterov)
    NumpyKernels().velocity_sgd_update(p, g, v, lr=0.1, momentum=0.8, nesterov=nesterov)
    np.testing.assert_allclose(v, want_v, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(p, want_p, rtol=1e-14, atol=1e-15)


def test_nesterov_scratch_follows_the_shape_and_dtype():
    k = NumpyKernels()
    for shape, dtype in [((3,), np.float64), ((2, 5), np.float64), ((2, 5), np.float32)]:
        p0, g, v0 = (_a(shape, s).astype(dtype) for s in (4, 5, 6))
        p, v = p0.copy(), v0.copy()
        k.velocity_sgd_update(p, g, v, lr=0.05, momentum=0.9, nesterov=True)
        want_p, want_v = _velocity_reference(
            p0.astype(np.float64), g.astype(np.float64), v0.astype(np.float64), 0.05, 0.9, True
        )
        tol = 1e-6 if dtype == np.float32 else 1e-14
        assert p.dtype == dtype and p.shape == shape
        np.testing.assert_allclose(v, want_v, rtol=tol, atol=tol)
        np.testing.assert_allclose(p, want_p, rtol=tol, atol=tol)


@pytest.mark.parametrize("masked", [False, True])
def test_scaled_add_of_strict_arrays_takes_the_reference(masked):
    t0, s0 = _a((3, 4), 7), _a((3, 4), 8)
    m0 = (_a((3, 4), 9) > 0).astype(np.float64)
    t, s = strict.asarray(t0.copy()), strict.asarray(s0)
    mask = strict.asarray(m0) if masked else None
    NumpyKernels().scaled_add(t, s, -0.25, mask)
    want = t0 - 0.25 * (m0 * s0 if masked else s0)
    assert isinstance(t, StrictArray)
    np.testing.assert_allclose(to_numpy(t), want, rtol=1e-15, atol=1e-15)
    if masked:
        np.testing.assert_array_equal(to_numpy(t)[m0 == 0], t0[m0 == 0])


def test_scaled_add_broadcasts_a_row_as_the_reference_does():
    t0, s = _a((3, 4), 7), _a((4,), 8)
    t = t0.copy()
    NumpyKernels().scaled_add(t, s, 0.5)
    np.testing.assert_allclose(t, t0 + 0.5 * s, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("kind", [NumpyKernels, PortableKernels])
def test_matmul_and_sum_rows_leave_an_unfit_out_alone(kind):
    k = kind(np_xp)
    a, b = _a((3, 4), 10), _a((4, 2), 11)
    for out in (np.zeros((3, 2), np.float32), np.zeros((2, 3)), np.zeros((3, 3))):
        before = out.copy()
        got = k.matmul(a, b, out=out)
        assert got is not out and got.dtype == np.float64 and got.shape == (3, 2)
        np.testing.assert_allclose(got, a @ b, rtol=1e-15)
        np.testing.assert_array_equal(out, before)
    fit = np.zeros((3, 2))
    assert k.matmul(a, b, out=fit) is fit
    np.testing.assert_allclose(fit, a @ b, rtol=1e-15)
    for out in (np.zeros(4, np.float32), np.zeros(3), np.zeros((1, 4))):
        before = out.copy()
        got = k.sum_rows(a, out=out)
        assert got is not out and got.dtype == np.float64 and got.shape == (4,)
        np.testing.assert_allclose(got, a.sum(axis=0), rtol=1e-15)
        np.testing.assert_array_equal(out, before)
    fit = np.zeros(4)
    assert k.sum_rows(a, out=fit) is fit
    np.testing.assert_allclose(fit, a.sum(axis=0), rtol=1e-15)


@pytest.mark.parametrize("ratio", [1.0, 1.25, 1.9, 3.0])
def test_portable_clip_leaves_gradients_under_the_norm_alone(ratio):
    # norm = 5 and max_norm = ratio * 5: the coefficient ratio (>= 1) is clamped to 1.
    grads = [np.array([[3.0, 0.0]]), np.array([4.0])]
    PortableKernels().clip_grad_norm(grads, 5.0 * ratio, 0.0)
    np.testing.assert_array_equal(grads[0], [[3.0, 0.0]])
    np.testing.assert_array_equal(grads[1], [4.0])
    PortableKernels().clip_grad_norm(grads, 2.5, 0.0)  # half the norm: halved
    np.testing.assert_allclose(grads[0], [[1.5, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(grads[1], [2.0], rtol=1e-15)
