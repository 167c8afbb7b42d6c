"""The compiled GELU, SiLU, dropout and clipping kernels against the portable reference.

Tolerances, in units in the last place (ulps) of the dtype:

* 0 (bit for bit) for GELU (both forms) and SiLU, forward, bias + forward and backward: their
  compiled passes carry no fastmath flag, perform the reference's operations in its order and
  dtype, and call NumPy's own ``exp``/``tanh`` (``xpnet/kernels/numba_activations.py``). The
  forwards must be exact, as every forward is (predictions may not depend on the kernel set);
  the backwards are exact because nothing in them needed to differ.
* 0 for dropout: the keep decisions are integer hashes (the same bits as
  :func:`xpnet.random.hash_bits_reference`) and ``x * mask`` is one rounding either way.
* 8 ulps for gradient clipping's scaled gradients: the compiled sum of squares is accumulated
  in float64 (within a rounding of the exact norm for float32 gradients; NumPy's float32
  pairwise sum is within a few roundings), so the coefficient may differ by the reference's
  own rounding error, halved by the square root; a float64 sum in another order differs by a
  few ulps likewise. The compiled coefficient itself is checked against the exact one.

NaN and infinity land where the reference puts them. Everything skips without numba.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from xpnet.kernels import PortableKernels
from xpnet.random import hash_bits_reference, keep_threshold

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba is not installed"
)

DTYPES = ["float32", "float64"]
INPUT_ACTS = ["gelu", "gelu_tanh", "silu"]
SHAPES = [(0, 5), (1, 1), (7, 1), (33, 10), (128, 257), (4, 3, 5)]
SQRT2 = math.sqrt(2.0)
# Inputs at and around every branch point of Cody's erfc, at the GELU argument -x / sqrt 2.
EDGES = [
    v * s * SQRT2
    for v in (0.0, 0.46875, 4.0, 26.543, 5.9, 40.0)
    for s in (1.0, -1.0, 1.0 + 1e-7, 1.0 - 1e-7, -1.0 - 1e-7, -1.0 + 1e-7)
]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 100.0, -100.0]


@pytest.fixture(autouse=True)
def _quiet():
    # The reference warns on the NaN and infinity inputs (inf * 0); the values are the point.
    with np.errstate(all="ignore"):
        yield


@pytest.fixture
def nk():
    from xpnet.kernels.numba_cpu import NumbaKernels

    return NumbaKernels()


def _sample(rng, shape, dtype, scale=3.0):
    x = rng.standard_normal(shape) * scale
    flat = x.reshape(-1)
    if flat.size:
        values = SPECIAL + EDGES
        k = min(flat.size, len(values))
        flat[rng.choice(flat.size, size=k, replace=False)] = values[:k]
    return x.astype(dtype)


def _layouts(x):
    """C-contiguous, Fortran order and a strided view with the same values."""
    if x.ndim != 2:
        return {"c": x, "fortran": np.asfortranarray(x)}
    wide = np.empty((x.shape[0], 2 * x.shape[1]), x.dtype)
    wide[:, ::2] = x
    return {"c": x, "fortran": np.asfortranarray(x), "strided": wide[:, ::2]}


def _same_bits(actual, desired, dtype, what):
    assert isinstance(actual, np.ndarray) and actual.dtype == np.dtype(dtype), what
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    # Equal values, NaN where the reference has NaN, and the same sign of every zero.
    np.testing.assert_array_equal(actual, desired, err_msg=what)
    number = ~np.isnan(desired)  # a NaN's sign bit is no result
    np.testing.assert_array_equal(
        np.signbit(actual[number]), np.signbit(desired[number]), err_msg=what
    )


# ----------------------------------------------------------------------------- GELU, SiLU


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", INPUT_ACTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_input_activation_forward_is_the_reference_bit_for_bit(nk, rng, dtype, act, shape):
    x0 = _sample(rng, shape, dtype)
    for layout, x in _layouts(x0).items():
        before = x.copy()
        want = getattr(PortableKernels(), act)(x)
        got = getattr(nk, act)(x)
        np.testing.assert_array_equal(x, before, err_msg=f"{act} modified its input")
        _same_bits(got, want, dtype, f"{act} forward ({layout})")
        np.testing.assert_array_equal(nk.activation(x, act), got, err_msg="generic dispatch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", INPUT_ACTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_input_activation_backward_is_the_reference_bit_for_bit(nk, rng, dtype, act, shape):
    x0 = _sample(rng, shape, dtype)
    g0 = _sample(rng, shape, dtype, scale=1.0)
    want = getattr(PortableKernels(), f"{act}_backward")(g0, x0)
    for (layout, g), x in zip(_layouts(g0).items(), _layouts(x0).values(), strict=True):
        got = getattr(nk, f"{act}_backward")(g, x)
        _same_bits(got, want, dtype, f"{act} backward ({layout})")
        generic = nk.activation_backward(g, x, act)
        np.testing.assert_array_equal(generic, got, err_msg="generic dispatch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", INPUT_ACTS)
def test_every_erfc_branch_and_its_edges(nk, dtype, act):
    # A dense sweep through all three branches of erfc and the zero tail, and each boundary
    # one ulp either side, so a branch taken on the wrong side of a cut would show.
    t = np.dtype(dtype).type
    edges = np.array(EDGES, dtype=dtype)
    around = np.concatenate([np.nextafter(edges, t(np.inf)), np.nextafter(edges, t(-np.inf))])
    x = np.concatenate([np.linspace(-45, 45, 20001).astype(dtype), edges, around])
    g = np.linspace(-2, 2, x.size).astype(dtype)
    ref = PortableKernels()
    _same_bits(getattr(nk, act)(x), getattr(ref, act)(x), dtype, f"{act} sweep")
    want = getattr(ref, f"{act}_backward")(g, x)
    _same_bits(getattr(nk, f"{act}_backward")(g, x), want, dtype, f"{act}' sweep")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", INPUT_ACTS)
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (9, 1), (64, 33)], ids=str)
def test_bias_plus_input_activation_is_the_reference_bit_for_bit(nk, rng, dtype, act, shape):
    z0 = _sample(rng, shape, dtype)
    b = _sample(rng, shape[1:], dtype, scale=1.0)
    want = PortableKernels().bias_activation(z0.copy(), b, act)
    _same_bits(nk.bias_activation(z0.copy(), b, act), want, dtype, f"bias + {act}")
    # A non-contiguous product (never made by Dense, but allowed) takes the NumPy path.
    want_f = PortableKernels().bias_activation(np.asfortranarray(z0), b, act)
    _same_bits(nk.bias_activation(np.asfortranarray(z0), b, act), want_f, dtype, "Fortran")


@pytest.mark.parametrize("act", INPUT_ACTS)
def test_nan_survives_and_float16_takes_the_numpy_path(nk, rng, act):
    x = np.array([[np.nan, 1.0, -1.0]], dtype=np.float32)
    assert np.isnan(getattr(nk, act)(x)[0, 0])
    g = np.array([[1.0, np.nan, 1.0]], dtype=np.float32)
    assert np.isnan(getattr(nk, f"{act}_backward")(g, x)).tolist() == [[True, True, False]]
    h = rng.standard_normal((5, 4)).astype(np.float16)
    got, want = getattr(nk, act)(h), getattr(PortableKernels(), act)(h)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, want, rtol=4e-3, atol=4e-3)


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(0, 3), (5, 0), (1,), (17,), (8, 1), (64, 33), (6, 4, 5)], ids=str
)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_dropout_is_the_reference_bit_for_bit(nk, rng, dtype, shape, p):
    x = _sample(rng, shape, dtype)
    for seed, step, row_offset in ((0, 0, 0), (2**64 - 1, 2**32 - 1, 7), (123456789, 3, 1000)):
        y, mask = nk.dropout(x, p, seed, step, row_offset)
        want_y, want_mask = PortableKernels().dropout(x, p, seed, step, row_offset)
        _same_bits(mask, want_mask, dtype, f"mask {seed, step, row_offset}")
        _same_bits(y, want_y, dtype, f"x * mask {seed, step, row_offset}")
        g = _sample(rng, shape, dtype, scale=1.0)
        _same_bits(nk.dropout_backward(g, mask), g * want_mask, dtype, "backward")


def test_dropout_keeps_exactly_the_units_the_pure_python_hash_keeps(nk):
    x = np.ones((6, 7), np.float32)
    p, seed, step, offset = 0.3, 99, 5, 2**32 - 6  # the last global rows there are
    _, mask = nk.dropout(x, p, seed, step, offset)
    want = [
        [hash_bits_reference(seed, step, offset + r, c) >= keep_threshold(p) for c in range(7)]
        for r in range(6)
    ]
    np.testing.assert_array_equal(mask != 0, np.array(want))
    np.testing.assert_array_equal(mask[mask != 0], np.float32(1 / (1 - p)))


def test_dropout_of_non_contiguous_or_other_dtypes_takes_the_reference(nk, rng):
    x = rng.standard_normal((16, 10)).astype(np.float32)
    for layout, v in _layouts(x).items():
        y, mask = nk.dropout(v, 0.25, 4, 2, 3)
        want_y, want_mask = PortableKernels().dropout(v, 0.25, 4, 2, 3)
        _same_bits(y, want_y, "float32", layout)
        _same_bits(mask, want_mask, "float32", layout)
    h = x.astype(np.float16)
    y, mask = nk.dropout(h, 0.25, 4, 2)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(mask, PortableKernels().dropout(h, 0.25, 4, 2)[1])
    scalar = np.full((), 2.0, np.float32)
    want = PortableKernels().dropout(scalar, 0.5, 1, 1)[1]
    np.testing.assert_array_equal(nk.dropout(scalar, 0.5, 1, 1)[1], want)


@pytest.mark.parametrize(
    "args",
    [
        (1.0, 0, 0, 0),  # p out of range
        (-0.1, 0, 0, 0),
        (0.5, -1, 0, 0),  # seed
        (0.5, 2**64, 0, 0),
        (0.5, 1.5, 0, 0),
        (0.5, 0, 2**32, 0),  # step
        (0.5, 0, 0, -1),  # row offset
        (0.5, 0, 0, 2**32 - 3),  # rows past 2**32
        (0.5, 0, 0, 2.0),
    ],
    ids=str,
)
def test_dropout_rejects_what_the_reference_rejects_with_its_message(nk, args):
    x = np.ones((4, 3), np.float32)
    with pytest.raises((TypeError, ValueError)) as want:
        PortableKernels().dropout(x, *args)
    with pytest.raises(want.type) as got:
        nk.dropout(x, *args)
    assert str(got.value) == str(want.value)


# ----------------------------------------------------------------------------- clipping

CLIP_ULPS = 8


def _grads(rng, dtype, scale=10.0):
    return [
        (rng.standard_normal(244_522) * scale).astype(dtype),
        (rng.standard_normal((33, 7)) * scale).astype(dtype),
        np.zeros((0, 4), dtype),
        np.asfortranarray(rng.standard_normal((5, 6))).astype(dtype),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.0, 1e-3, 1.0, 100.0])
def test_clip_grad_norm_matches_the_reference(nk, rng, dtype, max_norm):
    for grads in (_grads(rng, dtype), _grads(rng, dtype)[:1]):  # per parameter, flat
        fast, ref = [g.copy() for g in grads], [g.copy() for g in grads]
        nk.clip_grad_norm(fast, max_norm, 1e-6)
        PortableKernels().clip_grad_norm(ref, max_norm, 1e-6)
        eps = float(np.finfo(dtype).eps)
        for a, d in zip(fast, ref, strict=True):
            assert a.dtype == d.dtype and a.flags.f_contiguous == d.flags.f_contiguous
            np.testing.assert_allclose(a, d, rtol=CLIP_ULPS * eps, atol=0)
        # The coefficient against the exact one (math.fsum of the float64 squares): float32
        # gradients get it within 2 ulps (a rounding of the sum, the sqrt, the add, the
        # division); float64 ones within the vector partial sums' few roundings.
        squares = [(g.astype(np.float64) ** 2).ravel().tolist() for g in grads]
        exact_norm = math.sqrt(math.fsum(v for sq in squares for v in sq))
        coef = min(1.0, max_norm / (exact_norm + 1e-6))
        if grads[0].size and coef < 1.0:
            got = float(fast[0][0]) / float(grads[0][0])
            assert abs(got - coef) <= (2 if dtype == "float32" else CLIP_ULPS) * eps * coef


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_within_the_limit_leaves_every_bit(nk, rng, dtype):
    grads = _grads(rng, dtype, scale=1e-3)
    fast = [g.copy() for g in grads]
    nk.clip_grad_norm(fast, 1e9, 1e-6)
    for a, g in zip(fast, grads, strict=True):
        np.testing.assert_array_equal(a, g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_of_non_finite_gradients_is_the_reference(nk, rng, dtype, bad):
    grads = _grads(rng, dtype)
    grads[1][3, 2] = bad
    fast, ref = [g.copy() for g in grads], [g.copy() for g in grads]
    nk.clip_grad_norm(fast, 1.0, 1e-6)
    PortableKernels().clip_grad_norm(ref, 1.0, 1e-6)
    for a, d in zip(fast, ref, strict=True):
        # NaN norm: coefficient 1, nothing changes; infinite norm: coefficient 0 (inf * 0 = NaN).
        np.testing.assert_array_equal(a, d)


def test_clip_of_mixed_dtypes_or_nothing_takes_the_reference(nk, rng):
    grads = [rng.standard_normal(50).astype(np.float32), rng.standard_normal(9)]
    fast, ref = [g.copy() for g in grads], [g.copy() for g in grads]
    nk.clip_grad_norm(fast, 0.5, 1e-6)
    PortableKernels().clip_grad_norm(ref, 0.5, 1e-6)
    for a, d in zip(fast, ref, strict=True):
        np.testing.assert_array_equal(a, d)
    nk.clip_grad_norm([], 0.5, 1e-6)  # no gradients: nothing to do, no error
