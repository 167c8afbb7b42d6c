"""The kernels' contracts the agreement tests do not reach: a namespace-free PortableKernels
refuses arrays of two backends (before touching any in-place state), the in-place NumPy
kernels that the compiled ones override by default hold to the portable reference, default
slopes, the scratch buffers of several shapes, and the subnormal flush of Adam's moments."""

from __future__ import annotations

import array_api_compat.numpy as np_xp
import numpy as np
import pytest

from xpnet.kernels import PortableKernels
from xpnet.kernels.numpy_fast import _FLUSH_EVERY, NumpyKernels

strict = pytest.importorskip("array_api_strict")

RNG = np.random.default_rng(0)


def _a(shape=(3, 4), seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def _adam(k, p, g, m, v, step=1):
    k.adam_update(
        p, g, m, v, beta1=0.9, beta2=0.99, step_size=0.01, root_bc2=0.5, eps=1e-8, step=step
    )


def _rmsprop(k, p, g, sq):
    k.rmsprop_update(p, g, sq, None, None, lr=0.1, alpha=0.9, eps=1e-8, momentum=0.0)


# Each method with the number of array arguments the namespace is taken from.
MIXED_CASES = {
    "relu_backward": (2, lambda k, *a: k.relu_backward(*a)),
    "leaky_relu_backward": (2, lambda k, *a: k.leaky_relu_backward(*a, 0.1)),
    "softmax_backward": (2, lambda k, *a: k.softmax_backward(*a)),
    "gelu_backward": (2, lambda k, *a: k.gelu_backward(*a)),
    "gelu_tanh_backward": (2, lambda k, *a: k.gelu_tanh_backward(*a)),
    "normalize": (3, lambda k, *a: k.normalize(*a, 1e-5)),
    "layer_norm_backward": (4, lambda k, *a: k.layer_norm_backward(*a)),
    "adam_update": (4, _adam),
    "rmsprop_update": (3, _rmsprop),
}


@pytest.mark.parametrize("method", sorted(MIXED_CASES))
def test_mixed_backends_are_a_type_error_and_change_nothing(method):
    count, call = MIXED_CASES[method]
    k = PortableKernels()  # no namespace: each call looks it up from its arrays
    for odd in range(count):
        host = [np.abs(_a(seed=i)) + 0.5 for i in range(count)]
        args = [strict.asarray(a) if i == odd else a.copy() for i, a in enumerate(host)]
        with pytest.raises(TypeError, match="Multiple namespaces"):
            call(k, *args)
        for i, a in enumerate(args):
            if i != odd:
                np.testing.assert_array_equal(a, host[i])  # in-place state untouched


def test_numpy_kernels_take_the_namespace_they_are_given():
    assert NumpyKernels().xp is np_xp
    assert NumpyKernels(np_xp).xp is np_xp
    assert NumpyKernels(np).xp is np  # whatever namespace it is handed
    assert PortableKernels().xp is None


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_sgd_momentum_update_matches_the_portable_one(nesterov, dtype):
    fast, ref = NumpyKernels(), PortableKernels(np_xp)
    p0, g, b0 = (_a(seed=s).astype(dtype) for s in (1, 2, 3))
    args = dict(lr=0.3, momentum=0.7, dampening=0.2, nesterov=nesterov)
    states = []
    for k in (fast, ref):
        p, buf = p0.copy(), b0.copy()
        for _ in range(2):
            k.sgd_momentum_update(p, g, buf, **args)
        states.append((p, buf))
    (p, buf), (p_ref, buf_ref) = states
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(buf, buf_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(p, p_ref, rtol=tol, atol=tol)
    # And the portable one is the textbook step.
    b = 0.7 * (0.7 * b0 + 0.8 * g) + 0.8 * g
    p1 = p0 - 0.3 * ((g + 0.7 * (0.7 * b0 + 0.8 * g)) if nesterov else 0.7 * b0 + 0.8 * g)
    p2 = p1 - 0.3 * ((g + 0.7 * b) if nesterov else b)
    np.testing.assert_allclose(buf_ref, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(p_ref, p2, rtol=tol, atol=tol)


def test_numpy_relu_backward_matches_the_portable_one():
    y = np.array([[0.0, 0.5, 2.0, 0.0], [1.0, 0.25, 0.0, 3.0]])
    g = _a((2, 4), seed=4)
    got = NumpyKernels().relu_backward(g, y)
    np.testing.assert_array_equal(got, PortableKernels().relu_backward(g, y))
    np.testing.assert_array_equal(got, np.where(y > 0, g, 0.0))
    assert got.dtype == g.dtype and got is not g


def test_default_slope_of_the_dispatchers_is_zero():
    x, b = _a((3, 4), seed=5), _a((4,), seed=6)
    relu = np.maximum(x + b, 0.0)
    for k in (PortableKernels(), NumpyKernels()):
        np.testing.assert_array_equal(k.activation(x + b, "leaky_relu"), relu)
        g = _a((3, 4), seed=7)
        np.testing.assert_array_equal(
            k.activation_backward(g, relu, "leaky_relu"), np.where(relu > 0, g, 0.0)
        )
        np.testing.assert_array_equal(k.bias_activation(x.copy(), b, "leaky_relu"), relu)
        np.testing.assert_array_equal(k.bias_activation(x.copy(), b, "relu"), relu)


def test_scratch_buffers_follow_the_shape_and_dtype():
    fast, ref = NumpyKernels(), PortableKernels(np_xp)
    for shape, dtype in [((5,), np.float64), ((3, 2), np.float32), ((5,), np.float32)]:
        p, g, m, v = (_a(shape, seed=s).astype(dtype) for s in range(4))
        v = np.abs(v)
        want = [a.copy() for a in (p, g, m, v)]
        _adam(fast, p, g, m, v)
        _adam(ref, *want)
        tol = 1e-6 if dtype == np.float32 else 1e-14
        for a, b in zip((p, m, v), (want[0], want[2], want[3]), strict=True):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_adam_flushes_subnormal_moments_and_keeps_the_smallest_normal():
    tiny = np.finfo(np.float64).tiny
    m = np.array([tiny, tiny / 4, 1e-3])
    v = np.array([tiny, tiny / 8, 1e-3])
    p, g = np.zeros(3), np.zeros(3)
    # beta = 1 keeps the moments exactly as given; only the flush can change them.
    NumpyKernels().adam_update(
        p, g, m, v, beta1=1.0, beta2=1.0, step_size=0.1, root_bc2=1.0, eps=1e-8,
        step=_FLUSH_EVERY,
    )  # fmt: skip
    np.testing.assert_array_equal(m, [tiny, 0.0, 1e-3])
    np.testing.assert_array_equal(v, [tiny, 0.0, 1e-3])
