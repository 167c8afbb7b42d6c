"""The compiled optimizer updates flush subnormals to zero (x86's DAZ and FTZ bits, set for
the loop's duration only): every update kernel, against the reference on the normal
entries, and the caller's floating-point mode given back afterwards, in NumPy and in
numba's worker threads."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from xpnet.kernels import PortableKernels
from xpnet.kernels.numba_cpu import NumbaKernels
from xpnet.kernels.numba_fpenv import FLUSHES_SUBNORMALS
from xpnet.testing import assert_allclose

needs_x86 = pytest.mark.skipif(not FLUSHES_SUBNORMALS, reason="DAZ/FTZ are set on x86-64 only")

N = 64
DTYPES = [np.float32, np.float64]
ADAM = dict(beta1=0.9, beta2=0.999, step_size=1e-3, root_bc2=0.5, eps=1e-8, step=3)
SEGMENTS = [(0, 40), (48, 60)]


def _subnormals(a):
    """``a`` with its odd entries replaced by subnormal values of both signs."""
    a = a.copy()
    tiny = np.finfo(a.dtype).tiny
    k = np.arange(N // 2, dtype=a.dtype)
    a[1::2] = tiny * (0.25 + k / (2 * N)) * np.where(k % 2 == 0, 1, -1).astype(a.dtype)
    return a


def _state(dtype, positive=False, seed=1):
    """A normal state array (moments, velocity, a gradient) with subnormal odd entries,
    as dead units leave them."""
    a = np.random.default_rng(seed).standard_normal(N).astype(dtype) * dtype(0.01)
    a = _subnormals(np.abs(a) if positive else a)
    return np.abs(a) if positive else a


def _subnormal(a):
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


def _updates(dtype):
    """(name, call(kernels, arrays), arrays): every compiled update with its inputs."""
    g = _state(dtype, seed=3)
    p = np.random.default_rng(2).standard_normal(N).astype(dtype)  # the weights: normal
    coef = dtype(1e-4)
    return [
        (
            "adam",
            lambda k, a: k.adam_update(a[0], g, a[1], a[2], **ADAM),
            [p, _state(dtype), _state(dtype, True)],
        ),
        (
            "l2_adam",
            lambda k, a: k.l2_adam_update(a[0], g, a[1], a[2], SEGMENTS, coef=coef, **ADAM),
            [p, _state(dtype), _state(dtype, True)],
        ),
        (
            "sgd_momentum",
            lambda k, a: k.sgd_momentum_update(
                a[0], g, a[1], lr=0.05, momentum=0.9, dampening=0.0, nesterov=True
            ),
            [p, _state(dtype)],
        ),
        (
            "velocity_sgd",
            lambda k, a: k.velocity_sgd_update(a[0], g, a[1], lr=0.05, momentum=0.9, nesterov=True),
            [p, _state(dtype)],
        ),
        (
            "l2_velocity_sgd",
            lambda k, a: k.l2_velocity_sgd_update(
                a[0], g, a[1], SEGMENTS, coef=coef, lr=0.05, momentum=0.9, nesterov=False
            ),
            [p, _state(dtype)],
        ),
        (
            "rmsprop",
            lambda k, a: k.rmsprop_update(
                a[0], g, a[1], None, None, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0
            ),
            [p, _state(dtype, True)],
        ),
        ("scaled_add", lambda k, a: k.scaled_add(a[0], g, 1e-3), [_state(dtype)]),
        (
            "scaled_add_masked",
            lambda k, a: k.scaled_add(a[0], g, 1e-3, (np.arange(N) % 3 > 0).astype(dtype)),
            [_state(dtype)],
        ),
    ]


CASES = [name for name, _, _ in _updates(np.float32)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_centered_rmsprop_keeps_ieee_arithmetic(momentum, dtype):
    # Its root is of s - a*a, which a flush lowering s could turn negative: no flush there.
    g = _state(dtype, seed=3)
    p = np.random.default_rng(2).standard_normal(N).astype(dtype)
    arrays = [p, _state(dtype, True), _state(dtype) * dtype(1e-3), _state(dtype)]
    fast, ref = [a.copy() for a in arrays], [a.copy() for a in arrays]
    kwargs = dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=momentum)
    with np.errstate(all="ignore"):
        NumbaKernels().rmsprop_update(fast[0], g, fast[1], fast[2], fast[3], **kwargs)
        PortableKernels().rmsprop_update(ref[0], g, ref[1], ref[2], ref[3], **kwargs)
    assert any(_subnormal(a).any() for a in ref[1:3])
    rtol = 8 * float(np.finfo(dtype).eps)
    for i, (a, d) in enumerate(zip(fast, ref, strict=True)):
        assert_allclose(a, d, rtol=rtol, atol=0, err_msg=f"array {i}")  # subnormals and all


@pytest.mark.parametrize("dtype", DTYPES)
def test_centered_rmsprop_gives_no_nan_where_the_reference_gives_none(dtype):
    # Found by a review: flushed, s = alpha*sq + c*g*g fell below a*a and the root was NaN.
    tiny = float(np.finfo(dtype).tiny)
    p, g = np.array([0.5], dtype), np.array([np.sqrt(60 * tiny)], dtype)
    sq, ga = np.array([0.909 * tiny], dtype), np.array([0.999 * np.sqrt(0.909 * tiny)], dtype)
    kwargs = dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0)
    want = [a.copy() for a in (p, sq, ga)]
    with np.errstate(all="ignore"):
        NumbaKernels().rmsprop_update(p, g, sq, ga, None, **kwargs)
        PortableKernels().rmsprop_update(want[0], g, want[1], want[2], None, **kwargs)
    assert np.isfinite(want[0]).all()
    assert_allclose(p, want[0], rtol=8 * float(np.finfo(dtype).eps), atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("case", CASES)
def test_an_update_writes_no_subnormal_and_matches_the_reference_elsewhere(case, parallel, dtype):
    name, call, arrays = next(u for u in _updates(dtype) if u[0] == case)
    fast = [a.copy() for a in arrays]
    ref = [a.copy() for a in arrays]
    with np.errstate(under="ignore"):
        call(NumbaKernels(parallel=parallel), fast)
        call(PortableKernels(), ref)
    assert any(_subnormal(a).any() for a in ref), "the reference keeps some subnormals"
    tiny, rtol = float(np.finfo(dtype).tiny), 8 * float(np.finfo(dtype).eps)
    normal = np.arange(N) % 2 == 0  # the entries whose inputs are all normal
    for i, (a, d) in enumerate(zip(fast, ref, strict=True)):
        if FLUSHES_SUBNORMALS:
            assert not _subnormal(a).any(), f"{name}: array {i} holds subnormals"
        # Where every input is normal the bits are the compiled loop's as always.
        assert_allclose(a[normal], d[normal], rtol=rtol, atol=tiny, err_msg=f"{name} {i}")
        # Where some input is subnormal it counts as zero: the result is the reference's
        # or zero (a moment over a denominator near eps can be a normal 1e-31 there).
        odd, want = a[~normal], d[~normal]
        agree = (odd == 0) | np.isclose(odd, want, rtol=rtol, atol=tiny)
        assert agree.all(), f"{name} {i}: {odd[~agree]} against {want[~agree]}"


@needs_x86
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_subnormal_input_is_read_as_zero(dtype):
    # DAZ: a subnormal moment with a zero gradient becomes exactly zero at once, on a step
    # that is not a flush step of the NumPy kernels.
    tiny = np.finfo(dtype).tiny
    p, g = np.ones(N, dtype), np.zeros(N, dtype)
    m, v = np.full(N, tiny / 4, dtype), np.full(N, tiny / 8, dtype)
    NumbaKernels().adam_update(p, g, m, v, **ADAM)
    assert np.all(m == 0) and np.all(v == 0) and np.all(p == 1)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_numpy_keeps_ieee_subnormals_after_an_update(parallel):
    _, call, arrays = _updates(np.float32)[0]
    call(NumbaKernels(parallel=parallel), arrays)
    tiny = np.finfo(np.float32).tiny
    with np.errstate(under="ignore"):
        assert np.float32(tiny) / np.float32(4) != 0  # FTZ given back
        assert np.array([tiny / 4], np.float32) * np.float32(1) != 0  # DAZ given back


def test_numba_workers_keep_ieee_subnormals_after_a_parallel_update():
    from numba import njit, prange

    @njit(parallel=True)
    def quarter(x):  # each worker thread divides (with the mode it was left in)
        out = np.empty_like(x)
        for i in prange(x.size):
            out[i] = x[i] / np.float32(4)
        return out

    _, call, arrays = _updates(np.float32)[0]
    call(NumbaKernels(parallel=True), arrays)
    tiny = np.full(4096, np.finfo(np.float32).tiny, np.float32)
    assert np.all(quarter(tiny) != 0)


@needs_x86
def test_daz_reads_a_subnormal_input_as_zero():
    # Only DAZ can zero this: the product of a subnormal and 2**30 is a normal number.
    tiny = np.finfo(np.float32).tiny
    target = np.zeros(8, np.float32)
    NumbaKernels().scaled_add(target, np.full(8, tiny / 4, np.float32), 2.0**30)
    assert np.all(target == 0)
    with np.errstate(under="ignore"):
        assert np.all(np.float32(tiny / 4) * np.float32(2.0**30) > 0)  # IEEE: tiny * 2**28


@needs_x86
def test_ftz_writes_a_subnormal_result_as_zero():
    # Only FTZ can zero this: every input is normal, the last operation's result is not.
    tiny = np.finfo(np.float32).tiny
    target = np.full(8, 1.5 * tiny, np.float32)
    NumbaKernels().scaled_add(target, np.full(8, -2.5 * tiny, np.float32), 0.5)
    assert np.all(target == 0)
    with np.errstate(under="ignore"):
        assert np.float32(1.5 * tiny) + np.float32(0.5) * np.float32(-2.5 * tiny) != 0


TINY_EPS = {np.float32: 1e-30, np.float64: 1e-150}  # within 2**25 (2**54) of sqrt(tiny)


def _ieee_cases(dtype):
    """The loops that divide by ``sqrt(s) + eps``, with an eps too small for the flush."""
    eps = TINY_EPS[dtype]
    g = _state(dtype, seed=3)
    p = np.random.default_rng(2).standard_normal(N).astype(dtype)
    adam = {**ADAM, "eps": eps}
    return {
        "adam": lambda k, a, step: k.adam_update(a[0], g, a[1], a[2], **{**adam, "step": step}),
        "l2_adam": lambda k, a, step: k.l2_adam_update(
            a[0], g, a[1], a[2], SEGMENTS, coef=dtype(1e-4), **{**adam, "step": step}
        ),
        # Not centered: centered RMSProp keeps IEEE arithmetic whatever eps is.
        "rmsprop": lambda k, a, step: k.rmsprop_update(
            a[0], g, a[1], None, a[3], lr=0.01, alpha=0.99, eps=eps, momentum=0.9
        ),
    }, [p, _state(dtype), _state(dtype, True), _state(dtype, seed=4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("case", ["adam", "l2_adam", "rmsprop"])
def test_a_tiny_eps_keeps_ieee_arithmetic_and_the_every_few_steps_flush(case, parallel, dtype):
    from xpnet.kernels.numba_fpenv import flush_is_invisible
    from xpnet.kernels.numpy_fast import _FLUSH_EVERY

    assert not flush_is_invisible(TINY_EPS[dtype], dtype)
    assert flush_is_invisible(1e-8, dtype) is FLUSHES_SUBNORMALS
    calls, arrays = _ieee_cases(dtype)
    odd = np.arange(N) % 2 == 1
    for step in (_FLUSH_EVERY - 1, _FLUSH_EVERY):
        fast, ref = [a.copy() for a in arrays], [a.copy() for a in arrays]
        with np.errstate(all="ignore"):
            calls[case](NumbaKernels(parallel=parallel), fast, step)
            calls[case](PortableKernels(), ref, step)
        rtol = 8 * float(np.finfo(dtype).eps)
        # The weights: as the reference's, subnormal moments and all (no DAZ, no FTZ).
        assert_allclose(fast[0], ref[0], rtol=rtol, atol=0, err_msg=f"{case} p, step {step}")
        if case == "rmsprop":  # RMSProp has no flush step: its state stays IEEE throughout
            for i in (1, 2, 3):
                assert_allclose(fast[i], ref[i], rtol=rtol, atol=0, err_msg=f"{case} {i}")
            continue
        for i, name in ((1, "m"), (2, "v")):
            assert _subnormal(ref[i][odd]).any(), "the reference keeps its subnormals"
            if step % _FLUSH_EVERY == 0:  # the loop's own flush of the moments
                assert not _subnormal(fast[i]).any(), f"{case} {name} not flushed"
            else:
                assert_allclose(fast[i], ref[i], rtol=rtol, atol=0, err_msg=f"{case} {name}")


@needs_x86
def test_a_caller_s_own_ftz_and_daz_stay_set():
    from numba import njit

    from xpnet.kernels.numba_fpenv import subnormals_flushed_begin, subnormals_flushed_end

    @njit
    def set_bits():
        return subnormals_flushed_begin(True)

    @njit
    def word_then_restore(previous):
        current = subnormals_flushed_begin(True)  # the word as it was before this call
        subnormals_flushed_end(previous)
        return current

    target, source = np.zeros(8, np.float32), np.ones(8, np.float32)
    NumbaKernels().scaled_add(target, source, 0.5)  # compiled before the bits are set
    original = set_bits()
    try:
        NumbaKernels().scaled_add(target, source, 0.5)
    finally:
        after = word_then_restore(original)
    assert after & 0x8040 == 0x8040, "the update cleared the caller's FTZ/DAZ"
    assert original & 0x8040 == 0
    with np.errstate(under="ignore"):
        assert np.float32(np.finfo(np.float32).tiny) / np.float32(4) != 0


def test_the_updates_run_with_numba_s_jit_disabled():
    # NUMBA_DISABLE_JIT=1 runs the loops as Python: the floating-point calls must be plain
    # functions then (an intrinsic cannot run outside compiled code).
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from xpnet.kernels.numba_cpu import NumbaKernels\n"
        "f = np.float32\n"
        "p, g = np.ones(5, f), np.full(5, 0.1, f)\n"
        "m, v = np.zeros(5, f), np.zeros(5, f)\n"
        "for parallel in (False, True):\n"
        "    NumbaKernels(parallel=parallel).adam_update(p, g, m, v, beta1=0.9, beta2=0.999,\n"
        "        step_size=1e-3, root_bc2=0.5, eps=1e-8, step=1)\n"
        "NumbaKernels().scaled_add(p, g, 0.5)\n"
        "NumbaKernels().rmsprop_update(p, g, v, None, None, lr=0.01, alpha=0.9, eps=1e-8,\n"
        "    momentum=0.0)\n"
        "print(float(p[0]))\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert 0.9 < float(out.stdout) < 1.1


@needs_x86
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_flush_threshold_is_sqrt_tiny_times_a_quarter_ulp(dtype):
    from xpnet.kernels.numba_fpenv import flush_is_invisible

    info = np.finfo(dtype)
    threshold = float(np.sqrt(info.tiny)) * 2.0 ** (info.nmant + 2)
    assert flush_is_invisible(threshold * 1.001, dtype)
    assert not flush_is_invisible(threshold * 0.999, dtype)


@needs_x86
@pytest.mark.parametrize("case", ["adam", "l2_adam"])
def test_adam_decides_on_eps_times_the_corrected_root(case):
    # xpnet's Adam adds eps to sqrt(v) / root_bc2: what the flush moves beside eps is
    # sqrt(tiny) / root_bc2, so the threshold applies to eps * root_bc2. An eps above it with
    # eps * root_bc2 below keeps IEEE arithmetic: a subnormal moment (zero gradient) survives
    # a step that is not a flush step.
    from xpnet.kernels.numba_fpenv import flush_is_invisible

    dtype = np.float32
    info = np.finfo(dtype)
    threshold = float(np.sqrt(info.tiny)) * 2.0 ** (info.nmant + 2)
    eps, root_bc2 = 1.5 * threshold, 0.5
    assert flush_is_invisible(eps, dtype) and not flush_is_invisible(eps * root_bc2, dtype)
    tiny = info.tiny
    p, g = np.ones(N, dtype), np.zeros(N, dtype)
    m, v = np.full(N, tiny / 4, dtype), np.full(N, tiny / 8, dtype)
    hyper = {**ADAM, "eps": eps, "root_bc2": root_bc2, "step": 3}
    if case == "adam":
        NumbaKernels().adam_update(p, g, m, v, **hyper)
    else:
        NumbaKernels().l2_adam_update(p, g, m, v, SEGMENTS, coef=dtype(0), **hyper)
    assert _subnormal(m).all() and _subnormal(v).all()
