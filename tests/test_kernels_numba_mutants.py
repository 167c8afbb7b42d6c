"""Which path NumbaKernels' dispatch methods take: the compiled loop for the arrays it is
meant for (C-contiguous float32/float64 of one shape, given 2-D so a missing flatten
shows), the NumPy kernels otherwise (other dtypes, mixed dtypes, non-contiguous state).

Both paths agree within ulps, so values alone cannot tell them apart: a subclass whose
NumPy-parent methods record each call, and the module's loops wrapped to record theirs
(each wrapper calls the real compiled loop), say which one ran.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

pytest.importorskip("numba")

from xpnet.kernels import numba_cpu
from xpnet.kernels.numba_cpu import NumbaKernels
from xpnet.kernels.numba_fpenv import FLUSHES_SUBNORMALS
from xpnet.kernels.numpy_fast import _FLUSH_EVERY, NumpyKernels

_PARENT_METHODS = (
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid",
    "sigmoid_backward", "tanh", "tanh_backward", "softmax", "softmax_backward",
    "bias_activation", "log_softmax_with_probs", "adam_update", "sgd_momentum_update",
    "velocity_sgd_update", "scaled_add", "rmsprop_update",
)  # fmt: skip

_LOOPS = (
    "_forward_flat", "_sigmoid_from_exp", "_backward_flat", "_bias_forward",
    "_softmax_backward_rows", "_log_softmax_rows", "_adam_serial", "_adam_parallel",
    "_sgd_momentum", "_velocity_sgd", "_scaled_add", "_scaled_add_masked", "_rmsprop",
    "_l2_adam",
)  # fmt: skip


class _RecordingNumpy(NumpyKernels):
    """NumpyKernels whose methods named above note their name in ``self.fallbacks``."""

    fallbacks: list[str]


def _recording(name):
    def method(self, *args, **kwargs):
        self.fallbacks.append(name)
        return getattr(NumpyKernels, name)(self, *args, **kwargs)

    method.__name__ = name
    return method


for _name in _PARENT_METHODS:
    setattr(_RecordingNumpy, _name, _recording(_name))


class _Spy(NumbaKernels, _RecordingNumpy):
    """NumbaKernels with _RecordingNumpy between it and NumpyKernels in the MRO, so every
    ``super()`` fall-back of NumbaKernels lands in a recording method."""

    def __init__(self, parallel: bool = False) -> None:
        super().__init__(parallel=parallel)
        self.fallbacks = []


def test_spy_mro_puts_the_recorder_under_numba_kernels():
    mro = _Spy.__mro__
    assert mro.index(NumbaKernels) < mro.index(_RecordingNumpy) < mro.index(NumpyKernels)


@pytest.fixture
def loops(monkeypatch):
    """Wrap the module's compiled loops; returns the list of (loop name, args) called."""
    calls: list[tuple[str, tuple]] = []
    for name in _LOOPS:
        real = getattr(numba_cpu, name)

        def wrapper(*args, _real=real, _name=name):
            calls.append((_name, args))
            return _real(*args)

        monkeypatch.setattr(numba_cpu, name, wrapper)
    return calls


@pytest.fixture(autouse=True)
def _quiet():
    with np.errstate(all="ignore"):
        yield


def _data(shape, dtype, seed=0, positive=False):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return np.abs(x) + dtype(0.1) if positive else x


def _tol(dtype):
    return 64 * float(np.finfo(dtype).eps)


def _names(calls):
    return [c[0] for c in calls]


def _check_flat_args(call, dtype):
    """Every array given to a flat loop is 1-D and C-contiguous; every float scalar is of the
    arrays' dtype (a Python float would make float32 loops float64 ones)."""
    for a in call[1]:
        if isinstance(a, np.ndarray):
            assert a.ndim == 1 and a.flags.c_contiguous and a.dtype == dtype
        elif isinstance(a, np.floating):
            assert a.dtype == dtype


# ----------------------------------------------------------------------------- construction


def test_constructor_defaults_and_flags():
    assert NumbaKernels().parallel is False
    assert NumbaKernels(parallel=1).parallel is True  # type: ignore[arg-type]
    assert NumbaKernels(parallel=0).parallel is False  # type: ignore[arg-type]
    # The default namespace is array_api_compat's numpy: plain numpy shows the xp is kept.
    assert NumbaKernels(np).xp is np


# ----------------------------------------------------------------------------- activations

_FORWARD = [("relu", ()), ("leaky_relu", (0.3,))]
_BACKWARD = [
    ("relu", ()),
    ("leaky_relu", (0.3,)),
    ("sigmoid", ()),
    ("tanh", ()),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act,extra", _FORWARD)
def test_forward_compiled(loops, act, extra, dtype):
    k = _Spy()
    x = _data((5, 7), dtype)
    out = getattr(k, act)(x, *extra)
    assert k.fallbacks == [] and _names(loops) == ["_forward_flat"]
    _check_flat_args(loops[0], dtype)
    want = getattr(NumpyKernels(), act)(x, *extra)
    assert out.dtype == dtype and out.shape == x.shape
    assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act,extra", _BACKWARD)
def test_backward_compiled(loops, act, extra, dtype):
    k = _Spy()
    g = _data((5, 7), dtype, 1)
    y = _data((5, 7), dtype, 2)
    if act == "sigmoid":
        y = np.abs(y) / (np.abs(y) + dtype(1))
    out = getattr(k, f"{act}_backward")(g, y, *extra)
    assert k.fallbacks == [] and _names(loops) == ["_backward_flat"]
    _check_flat_args(loops[0], dtype)
    want = getattr(NumpyKernels(), f"{act}_backward")(g, y, *extra)
    assert out.dtype == dtype and out.shape == g.shape
    assert_allclose(out, want, rtol=_tol(dtype), atol=_tol(dtype))


def _fallback_inputs(shape):
    # float16 (not compiled) and a float32/float64 mix.
    return [
        (_data(shape, np.float16, 1), _data(shape, np.float16, 2)),
        (_data(shape, np.float32, 1), _data(shape, np.float64, 2)),
    ]


@pytest.mark.parametrize("act,extra", [*_FORWARD, ("sigmoid", ()), ("tanh", ())])
def test_forward_falls_back_for_other_dtypes(loops, act, extra):
    k = _Spy()
    x = _data((4, 6), np.float16)
    out = getattr(k, act)(x, *extra)
    assert k.fallbacks == [act] and loops == []
    assert_array_equal(out, getattr(NumpyKernels(), act)(x, *extra))


@pytest.mark.parametrize("case", [0, 1])
@pytest.mark.parametrize("act,extra", [*_BACKWARD, ("softmax", ())])
def test_backward_falls_back(loops, act, extra, case):
    k = _Spy()
    g, y = _fallback_inputs((4, 6))[case]
    out = getattr(k, f"{act}_backward")(g, y, *extra)
    assert k.fallbacks == [f"{act}_backward"] and loops == []
    assert_array_equal(out, getattr(NumpyKernels(), f"{act}_backward")(g, y, *extra))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_forward_are_numpys_bits(loops, dtype):
    k = _Spy()
    x = _data((5, 7), dtype)[:, ::2]  # not C-contiguous: the flatten copies
    s = k.sigmoid(x)
    t = k.tanh(x)
    assert k.fallbacks == [] and _names(loops) == ["_sigmoid_from_exp"]
    _check_flat_args(loops[0], dtype)
    ref = NumpyKernels()
    assert s.dtype == dtype and s.shape == x.shape and t.dtype == dtype
    assert_array_equal(s, ref.sigmoid(x))
    assert_array_equal(t, ref.tanh(x))
    assert_array_equal(t, np.tanh(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_backward_compiled(loops, dtype):
    k = _Spy()
    g = _data((5, 7), dtype, 1)
    y = NumpyKernels().softmax(_data((5, 7), dtype, 2))
    out = k.softmax_backward(g, y)
    assert k.fallbacks == [] and _names(loops) == ["_softmax_backward_rows"]
    assert isinstance(loops[0][1][3], np.floating) and loops[0][1][3] == 0
    assert out.dtype == dtype and out.shape == g.shape
    assert_allclose(out, NumpyKernels().softmax_backward(g, y), rtol=_tol(dtype), atol=_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_with_probs_compiled_and_fallback(loops, dtype):
    k = _Spy()
    x = _data((5, 7), dtype)
    logp, p = k.log_softmax_with_probs(x)
    assert k.fallbacks == [] and _names(loops) == ["_log_softmax_rows"]
    want_logp, want_p = NumpyKernels().log_softmax_with_probs(x)
    assert_allclose(logp, want_logp, rtol=_tol(dtype), atol=_tol(dtype))
    assert_allclose(p, want_p, rtol=_tol(dtype), atol=_tol(dtype))
    x16 = x.astype(np.float16)
    logp16, p16 = k.log_softmax_with_probs(x16)
    assert k.fallbacks == ["log_softmax_with_probs"] and len(loops) == 1
    want16 = NumpyKernels().log_softmax_with_probs(x16)
    assert_array_equal(logp16, want16[0])
    assert_array_equal(p16, want16[1])


def test_softmax_is_the_reference(loops):
    k = _Spy()
    x = _data((4, 5), np.float32)
    assert_array_equal(k.softmax(x), NumpyKernels().softmax(x))
    assert k.fallbacks == ["softmax"] and loops == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_compiled_edge_values(loops, dtype):
    # ReLU's own code path, not leaky ReLU with a zero slope: -inf gives 0 (not 0 * -inf =
    # NaN), negatives give +0 (not -0), NaN is kept.
    k = _Spy()
    x = np.array([[-np.inf, -1.5, np.nan, 2.0, np.inf, -0.0]], dtype)
    out = k.relu(x)
    assert k.fallbacks == [] and _names(loops) == ["_forward_flat"]
    want = np.array([[0.0, 0.0, np.nan, 2.0, np.inf, 0.0]], dtype)
    assert_array_equal(out, want)
    assert not np.any(np.signbit(out[~np.isnan(out)]))


# ----------------------------------------------------------------------------- bias_activation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
def test_bias_activation_compiled(loops, act, dtype):
    k = _Spy()
    z = _data((6, 5), dtype)
    b = _data((5,), dtype, 3)
    want = NumpyKernels().bias_activation(z.copy(), b, act, 0.25)
    out = k.bias_activation(z, b, act, 0.25)
    assert "bias_activation" not in k.fallbacks
    assert _names(loops)[0] == "_bias_forward"
    code = loops[0][1][2]
    assert code == {"relu": 0, "leaky_relu": 1}.get(act, -1)
    assert out.dtype == dtype and out.shape == z.shape
    if act in (None, "relu", "leaky_relu", "tanh"):
        assert out is z  # written in place, no new array
    assert_allclose(out, want, rtol=_tol(dtype), atol=_tol(dtype))


def test_bias_activation_default_alpha_is_zero(loops):
    k = _Spy()
    z = _data((6, 5), np.float32)
    b = _data((5,), np.float32, 3)
    want = np.maximum(z + b, 0)
    out = k.bias_activation(z, b, "leaky_relu")
    assert _names(loops) == ["_bias_forward"]
    assert_array_equal(out, want)


def _bias_fallback_cases():
    z = _data((6, 4), np.float32)
    b = _data((4,), np.float32, 3)
    return {
        "float16": (z.astype(np.float16), b.astype(np.float16), "leaky_relu"),
        "mixed": (z, b.astype(np.float64), "leaky_relu"),
        "non-contiguous": (_data((6, 8), np.float32)[:, ::2], b, "leaky_relu"),
        "3-D": (_data((2, 3, 4), np.float32), b, "relu"),
        "row bias": (z, b.reshape(1, 4), "relu"),
        "other activation": (z, b, "gelu"),
        "list bias": (z, [0.5, 0.25, 0.0, 1.0], None),
    }


@pytest.mark.parametrize("case", list(_bias_fallback_cases()))
def test_bias_activation_falls_back(loops, case):
    # Fresh arrays for each call (z may be overwritten; a copy would make it contiguous).
    z, b, act = _bias_fallback_cases()[case]
    want = NumpyKernels().bias_activation(*_bias_fallback_cases()[case][:2], act, 0.25)
    k = _Spy()
    out = k.bias_activation(z, b, act, 0.25)
    # GELU goes to its own compiled kernels (GeluSiluKernels), never to the bias loop here.
    assert k.fallbacks[:1] == ([] if act == "gelu" else ["bias_activation"])
    assert "_bias_forward" not in _names(loops)
    assert_allclose(out, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_activation_relu_kernel_matches_leaky_with_alpha(loops, dtype):
    k = _Spy()
    z = _data((6, 5), dtype)
    b = _data((5,), dtype, 3)
    out = k.bias_activation(z.copy(), b, "leaky_relu", 0.5)
    s = z + b
    assert_array_equal(out, np.where(s > 0, s, dtype(0.5) * s))


# ----------------------------------------------------------------------------- optimizers


# Where the Adam loops take the smallest normal float and their flush-this-step flag (the
# parallel one takes its chunk count after them); the fused L2 loop takes both two places
# later (after the segments and the coefficient).
_FLUSH_ARG = 12
_L2_FLUSH_ARG = 14


def _adam_kwargs(step):
    return dict(beta1=0.9, beta2=0.999, step_size=0.01, root_bc2=0.5, eps=1e-8, step=step)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_compiled(loops, parallel, dtype):
    k = _Spy(parallel=parallel)
    p, g = _data((4, 6), dtype, 1), _data((4, 6), dtype, 2)
    m, v = _data((4, 6), dtype, 3), _data((4, 6), dtype, 4, positive=True)
    ref = [a.copy() for a in (p, g, m, v)]
    NumpyKernels().adam_update(*ref, **_adam_kwargs(3))
    k.adam_update(p, g, m, v, **_adam_kwargs(3))
    assert k.fallbacks == []
    assert _names(loops) == ["_adam_parallel" if parallel else "_adam_serial"]
    _check_flat_args(loops[0], dtype)
    assert loops[0][1][_FLUSH_ARG] is False  # step 3: no flush
    assert loops[0][1][_FLUSH_ARG - 1] == np.finfo(dtype).tiny
    for got, want in zip((p, m, v), (ref[0], ref[2], ref[3]), strict=True):
        assert_allclose(got, want, rtol=_tol(dtype), atol=_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_flushes_subnormal_moments_on_flush_steps_only(loops, dtype):
    tiny = np.finfo(dtype).tiny
    k = _Spy()
    for step, flushed in ((_FLUSH_EVERY, True), (_FLUSH_EVERY + 1, False), (1, False)):
        p = np.ones((2, 3), dtype)
        g = np.zeros((2, 3), dtype)
        m = np.full((2, 3), tiny / 4, dtype)
        v = np.full((2, 3), tiny / 4, dtype)
        k.adam_update(p, g, m, v, **_adam_kwargs(step))
        assert loops[-1][1][_FLUSH_ARG] is flushed
        # On x86-64 the loop reads subnormal inputs as zero (DAZ) on every step anyway.
        zeroed = flushed or FLUSHES_SUBNORMALS
        assert bool(np.all(m == 0)) is zeroed and bool(np.all(v == 0)) is zeroed
        assert np.all(m >= 0) and np.all(v >= 0)
    assert k.fallbacks == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l2_adam_gets_the_flush_steps_and_the_smallest_normal(loops, dtype):
    # On x86-64 the loop's DAZ/FTZ zero subnormals on every step whatever it is told, so the
    # values cannot show the schedule of the flush that other machines rely on: its
    # arguments do.
    k = _Spy()
    steps = ((_FLUSH_EVERY, True), (_FLUSH_EVERY + 1, False), (1, False), (2 * _FLUSH_EVERY, True))
    for step, flushed in steps:
        p, g, m, v = (np.ones(6, dtype) for _ in range(4))
        k.l2_adam_update(p, g, m, v, [(0, 3)], coef=0.1, **_adam_kwargs(step))
        name, args = loops[-1]
        assert name == "_l2_adam"
        _check_flat_args((name, args[:4] + args[5:]), dtype)  # all but the (k, 2) segments
        assert args[_L2_FLUSH_ARG] is flushed, f"step {step}"
        assert args[_L2_FLUSH_ARG - 1] == np.finfo(dtype).tiny
    assert k.fallbacks == []


def _state_fallback_cases(n_state):
    """(p, g, *state) sets that must fall back: float16, mixed p/g, non-contiguous state."""
    f32 = [_data((4, 6), np.float32, s, positive=s > 1) for s in range(1, 3 + n_state)]
    f16 = [a.astype(np.float16) for a in f32]
    mixed = [f32[0], f32[1].astype(np.float64), *f32[2:]]
    wide = [_data((4, 12), np.float32, s, positive=True)[:, ::2] for s in range(n_state)]
    strided = [f32[0], f32[1], *wide]
    strided_p = [_data((4, 12), np.float32, 1)[:, ::2], *f32[1:]]
    # One strided state array among contiguous ones: each state array is checked.
    first = [*f32[:2], wide[0], *f32[3:]]
    last = [*f32[:-1], wide[-1]]
    return {
        "float16": f16,
        "mixed": mixed,
        "strided state": strided,
        "strided p": strided_p,
        "strided first state": first,
        "strided last state": last,
    }


def _fallback_update(loops, method, n_state, kwargs, case, positions=None):
    arrays = _state_fallback_cases(n_state)[case]
    ref = [a.copy() for a in arrays]
    k = _Spy()
    call_args = arrays if positions is None else positions(arrays)
    ref_args = ref if positions is None else positions(ref)
    getattr(NumpyKernels(), method)(*ref_args, **kwargs)
    getattr(k, method)(*call_args, **kwargs)
    assert k.fallbacks == [method] and loops == []
    for got, want in zip(arrays, ref, strict=True):
        assert_array_equal(got, want)
    # The update did something: p moved.
    assert not np.array_equal(arrays[0], _state_fallback_cases(n_state)[case][0])


_CASES = [
    "float16", "mixed", "strided state", "strided p", "strided first state",
    "strided last state",
]  # fmt: skip


@pytest.mark.parametrize("case", _CASES)
def test_adam_falls_back(loops, case):
    _fallback_update(loops, "adam_update", 2, _adam_kwargs(3), case)


_SGD = dict(lr=0.1, momentum=0.9, dampening=0.25)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_momentum_compiled(loops, dtype, nesterov):
    k = _Spy()
    p, g, buf = (_data((4, 6), dtype, s) for s in (1, 2, 3))
    ref = [a.copy() for a in (p, g, buf)]
    NumpyKernels().sgd_momentum_update(*ref, **_SGD, nesterov=nesterov)
    k.sgd_momentum_update(p, g, buf, **_SGD, nesterov=nesterov)
    assert k.fallbacks == [] and _names(loops) == ["_sgd_momentum"]
    _check_flat_args(loops[0], dtype)
    assert loops[0][1][-1] is nesterov
    for got, want in zip((p, buf), (ref[0], ref[2]), strict=True):
        assert_allclose(got, want, rtol=_tol(dtype), atol=_tol(dtype))


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("case", _CASES)
def test_sgd_momentum_falls_back(loops, case, nesterov):
    _fallback_update(loops, "sgd_momentum_update", 1, {**_SGD, "nesterov": nesterov}, case)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_velocity_sgd_compiled(loops, dtype, nesterov):
    k = _Spy()
    p, g, vel = (_data((4, 6), dtype, s) for s in (1, 2, 3))
    ref = [a.copy() for a in (p, g, vel)]
    NumpyKernels().velocity_sgd_update(*ref, lr=0.1, momentum=0.9, nesterov=nesterov)
    k.velocity_sgd_update(p, g, vel, lr=0.1, momentum=0.9, nesterov=nesterov)
    assert k.fallbacks == [] and _names(loops) == ["_velocity_sgd"]
    _check_flat_args(loops[0], dtype)
    assert loops[0][1][-1] is nesterov
    for got, want in zip((p, vel), (ref[0], ref[2]), strict=True):
        assert_allclose(got, want, rtol=_tol(dtype), atol=_tol(dtype))


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("case", _CASES)
def test_velocity_sgd_falls_back(loops, case, nesterov):
    kwargs = {"lr": 0.1, "momentum": 0.9, "nesterov": nesterov}
    _fallback_update(loops, "velocity_sgd_update", 1, kwargs, case)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_add_compiled(loops, dtype, masked):
    k = _Spy()
    t, s = _data((4, 6), dtype, 1), _data((4, 6), dtype, 2)
    mask = (_data((4, 6), dtype, 3) > 0).astype(dtype) if masked else None
    ref = t.copy()
    NumpyKernels().scaled_add(ref, s, -0.3, mask)
    k.scaled_add(t, s, -0.3, mask)
    assert k.fallbacks == []
    assert _names(loops) == ["_scaled_add_masked" if masked else "_scaled_add"]
    _check_flat_args(loops[0], dtype)
    assert_allclose(t, ref, rtol=_tol(dtype), atol=_tol(dtype))


def _scaled_add_fallback_cases():
    t, s = _data((4, 6), np.float32, 1), _data((4, 6), np.float32, 2)
    mask = (_data((4, 6), np.float32, 3) > 0).astype(np.float32)
    return {
        "float16": (t.astype(np.float16), s.astype(np.float16), None),
        "mixed source": (t, s.astype(np.float64), None),
        "mixed mask": (t, s, mask.astype(np.float64)),
        "strided target": (_data((4, 12), np.float32, 1)[:, ::2], s, mask),
    }


@pytest.mark.parametrize("case", list(_scaled_add_fallback_cases()))
def test_scaled_add_falls_back(loops, case):
    t, s, mask = _scaled_add_fallback_cases()[case]
    k = _Spy()
    ref = t.copy()
    NumpyKernels().scaled_add(ref, s, -0.3, mask)
    before = t.copy()
    k.scaled_add(t, s, -0.3, mask)
    assert k.fallbacks == ["scaled_add"] and loops == []
    assert_array_equal(t, ref)
    assert not np.array_equal(t, before)


_RMS = dict(lr=0.01, alpha=0.9, eps=1e-6)
_RMS_VARIANTS = [(False, False), (True, False), (False, True), (True, True)]


def _rms_positions(centered, momentum):
    def place(arrays):
        p, g, sq = arrays[:3]
        rest = list(arrays[3:])
        ga = rest.pop(0) if centered else None
        buf = rest.pop(0) if momentum else None
        return [p, g, sq, ga, buf]

    return place


@pytest.mark.parametrize("centered,momentum", _RMS_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmsprop_compiled(loops, dtype, centered, momentum):
    k = _Spy()
    p, g = _data((4, 6), dtype, 1), _data((4, 6), dtype, 2)
    sq = _data((4, 6), dtype, 3, positive=True) + dtype(2)
    ga = _data((4, 6), dtype, 4) * dtype(0.1) if centered else None
    buf = _data((4, 6), dtype, 5) if momentum else None
    mom = 0.5 if momentum else 0.0
    ref = [None if a is None else a.copy() for a in (p, g, sq, ga, buf)]
    NumpyKernels().rmsprop_update(*ref, **_RMS, momentum=mom)
    k.rmsprop_update(p, g, sq, ga, buf, **_RMS, momentum=mom)
    assert k.fallbacks == [] and _names(loops) == ["_rmsprop"]
    _check_flat_args(loops[0], dtype)
    # The flags, then whether the loop flushes subnormals: on x86-64, where eps 1e-6 leaves
    # room, unless centered (a flushed s - a*a could go negative).
    assert loops[0][1][-3] is centered and loops[0][1][-2] is momentum
    assert loops[0][1][-1] is (FLUSHES_SUBNORMALS and not centered)
    for got, want in zip((p, sq, ga, buf), (ref[0], ref[2], ref[3], ref[4]), strict=True):
        if got is not None:
            assert_allclose(got, want, rtol=_tol(dtype), atol=_tol(dtype))


@pytest.mark.parametrize("centered,momentum", _RMS_VARIANTS)
@pytest.mark.parametrize("case", _CASES)
def test_rmsprop_falls_back(loops, case, centered, momentum):
    n_state = 1 + centered + momentum
    kwargs = {**_RMS, "momentum": 0.5 if momentum else 0.0}
    place = _rms_positions(centered, momentum)
    _fallback_update(loops, "rmsprop_update", n_state, kwargs, case, positions=place)
