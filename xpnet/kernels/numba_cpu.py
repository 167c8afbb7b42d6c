"""Compiled CPU kernels (numba): one pass over memory for each fused update.

The same maths as :class:`~xpnet.kernels.portable.PortableKernels`, element by element in
the reference's order of operations; ``tests/test_kernels_numba.py`` holds every kernel to
the reference within stated ulps, NaN and infinity included (the optimizer updates' subnormal
numbers aside, below). Anything these loops do not
cover (dtypes other than float32/float64, mixed dtypes, shapes the row kernels do not take)
goes to the NumPy in-place kernels this class extends.

Compiler flags, and why:

* ``error_model="numpy"``: division by zero gives inf/NaN as in NumPy instead of raising,
  which also removes the per-division check that stops vectorisation (the cause of the
  "1.7x slower" measurement in ``benchmarks/NOTES.md`` §5).
* ``fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}`` for the row kernels
  (log-softmax with its ``exp``/``log``, softmax's backward), whose row sums need
  ``reassoc`` to vectorise, but only ``{"nsz", "arcp"}`` for the algebraic ones (backward
  kernels, bias, optimizer updates): there a fused multiply-add is *more* exact than NumPy's
  two roundings, and that is the trouble, since ``1 - y*y`` near ``|y| = 1`` cancels and
  turns a one-rounding difference into thousands of ulps (found by
  ``tests/test_kernels_numba.py``). None of them has ``nnan`` or ``ninf``: with those LLVM
  may assume no NaN or infinity exists and fold the very comparisons the divergence guard
  relies on. The kept flags change results by a rounding or two (a reciprocal for a
  division, a reordered row sum), never a NaN into a number. Forward activations are not
  compiled beyond ReLU/leaky ReLU (see :class:`NumbaKernels`), except GELU and SiLU, whose
  loops (:mod:`~xpnet.kernels.numba_activations`) have no fastmath flag and call NumPy's
  ``exp``/``tanh``, so they keep the reference's bits forward and backward.
* ``cache=True``: compiled code is written next to this file, or, where that directory is
  read-only (a system site-packages), numba itself falls back to its user-wide cache
  (``~/.cache/numba``); ``NUMBA_CACHE_DIR`` set by the user wins over both. xpnet sets
  no numba variable, so the user's other numba code keeps its own cache and threads.

The optimizer updates (Adam, SGD, RMSProp, the fused L2 steps, ``scaled_add``) run with
x86's flush-to-zero and denormals-are-zero bits set for the loop only
(:mod:`~xpnet.kernels.numba_fpenv`): training with an L2 term fills them with subnormal
numbers, each a microcode assist, which made the scikit-learn estimator's Adam update 3.5x
slower by the seventh epoch. A subnormal input then counts as zero and a subnormal result is
written as zero; Adam and RMSProp, which divide by ``sqrt(s) + eps``, keep IEEE arithmetic
when ``eps`` is too small for that to stay invisible, and centered RMSProp always does (what
changes, and by how much: that module).

Scalars are cast to the arrays' dtype before the call (as NumPy 2 does for Python floats),
so float32 arrays are updated in float32 arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numba import get_num_threads, njit, prange

from .numba_activations import GeluSiluKernels
from .numba_base import (
    _DTYPES,
    _FASTMATH,
    _FASTMATH_ALGEBRAIC,
    _OPTS,
    _adam_one,
    _in_place_ok,
    _jit_algebraic,
    _rows_ok,
    _same_float,
)
from .numba_fpenv import flush_is_invisible, subnormals_flushed_begin, subnormals_flushed_end
from .numba_penalty import _l2_adam, _l2_velocity_sgd, segments_array
from .numba_training import TrainingKernels
from .numpy_fast import _FLUSH_EVERY, NumpyKernels
from .portable import ACTIVATION_KERNELS, _checked_segments

__all__ = ["NumbaKernels"]

_jit = njit(fastmath=_FASTMATH, **_OPTS)
_jit_algebraic_parallel = njit(parallel=True, fastmath=_FASTMATH_ALGEBRAIC, **_OPTS)
# Inlined into its callers at numba's IR level, so compiled under the caller's flags.
_inline = njit(inline="always", fastmath=_FASTMATH_ALGEBRAIC, **_OPTS)


# ----------------------------------------------------------------------------- element maths
#
# ``one`` (and ``zero``) are 1 and 0 in the arrays' dtype: a literal ``1.0`` would be float64
# and turn float32 loops into float64 ones. (``x - x`` is no zero: it is NaN for infinite x.)


@_inline
def _forward(x, act, alpha, one):  # type: ignore[no-untyped-def]
    # ReLU (0) and leaky ReLU (1) only: the exp/tanh forwards use NumPy's functions.
    if act == 0:
        # ``x != x`` keeps a NaN, as np.maximum does (a bare ``x > 0`` would drop it).
        return x if (x > 0 or x != x) else one - one
    return x if x > 0 else alpha * x


@_inline
def _backward(g, y, act, alpha, one):  # type: ignore[no-untyped-def]
    if act == 0:
        # np.where(y > 0, g, 0): an exact zero elsewhere, even where g is inf or NaN.
        return g if y > 0 else one - one
    if act == 1:
        return g if y > 0 else alpha * g
    if act == 2:
        return g * y * (one - y)
    return g * (one - y * y)


# Codes for the element-wise activations (a string argument would cost a compile per value);
# forward loops take only the first two.
_ACT_CODES = {"relu": 0, "leaky_relu": 1, "sigmoid": 2, "tanh": 3}


# ----------------------------------------------------------------------------- loops


@_jit
def _forward_flat(x, out, act, alpha, one):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        out[i] = _forward(x[i], act, alpha, one)


# No fastmath at all: with ``arcp`` ``e / (1 + e)`` would become ``e * (1 / (1 + e))``, and
# this loop must give NumPy's bits (see NumbaKernels.sigmoid).
@njit(**_OPTS)
def _sigmoid_from_exp(x, e, one):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        ei = e[i]
        e[i] = one / (one + ei) if x[i] >= 0 else ei / (one + ei)


@_jit_algebraic
def _backward_flat(g, y, out, act, alpha, one):  # type: ignore[no-untyped-def]
    for i in range(g.size):
        out[i] = _backward(g[i], y[i], act, alpha, one)


@_jit_algebraic
def _bias_forward(z, b, act, alpha, one):  # type: ignore[no-untyped-def]
    # act == -1: the bias alone; else ReLU (0) or leaky ReLU (1).
    for r in range(z.shape[0]):
        row = z[r]
        if act < 0:
            for c in range(row.size):
                row[c] = row[c] + b[c]
        else:
            for c in range(row.size):
                row[c] = _forward(row[c] + b[c], act, alpha, one)


@_jit
def _softmax_backward_rows(g, y, out, zero):  # type: ignore[no-untyped-def]
    for r in range(g.shape[0]):
        gr, yr, o = g[r], y[r], out[r]
        d = zero
        for c in range(gr.size):
            d += gr[c] * yr[c]
        for c in range(gr.size):
            o[c] = yr[c] * (gr[c] - d)


@_jit
def _log_softmax_rows(x, logp, p, zero):  # type: ignore[no-untyped-def]
    for r in range(x.shape[0]):
        xr, lr, pr = x[r], logp[r], p[r]
        mx = xr[0]
        for c in range(1, xr.size):
            if not xr[c] <= mx:
                mx = xr[c]
        s = zero
        for c in range(xr.size):
            sh = xr[c] - mx
            lr[c] = sh
            e = np.exp(sh)
            pr[c] = e
            s += e
        log_s = np.log(s)
        for c in range(xr.size):
            lr[c] = lr[c] - log_s
            pr[c] = pr[c] / s


@_jit_algebraic
def _adam_serial(p, g, m, v, b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, ftz):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(ftz)
    for i in range(p.size):
        p[i], m[i], v[i] = _adam_one(
            p[i], g[i], m[i], v[i], b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush
        )
    subnormals_flushed_end(mode)


@_jit_algebraic_parallel
def _adam_parallel(p, g, m, v, b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, ftz, chunks):  # type: ignore[no-untyped-def]
    n = p.size
    # MXCSR is per thread: each chunk sets it on the worker that runs the chunk.
    for c in prange(chunks):
        mode = subnormals_flushed_begin(ftz)
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            p[i], m[i], v[i] = _adam_one(
                p[i], g[i], m[i], v[i], b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush
            )
        subnormals_flushed_end(mode)


@_jit_algebraic
def _sgd_momentum(p, g, buf, lr, momentum, c, nesterov):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(True)
    for i in range(p.size):
        b = buf[i] * momentum + c * g[i]
        buf[i] = b
        p[i] = p[i] - (lr * (g[i] + momentum * b) if nesterov else lr * b)
    subnormals_flushed_end(mode)


@_jit_algebraic
def _velocity_sgd(p, g, vel, lr, momentum, nesterov):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(True)
    for i in range(p.size):
        step = lr * g[i]
        v = vel[i] * momentum - step
        vel[i] = v
        p[i] = p[i] + (momentum * v - step if nesterov else v)
    subnormals_flushed_end(mode)


@_jit_algebraic
def _scaled_add(t, s, coef):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(True)
    for i in range(t.size):
        t[i] = t[i] + coef * s[i]
    subnormals_flushed_end(mode)


@_jit_algebraic
def _scaled_add_masked(t, s, m, coef):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(True)
    for i in range(t.size):
        t[i] = t[i] + coef * (m[i] * s[i])
    subnormals_flushed_end(mode)


@_jit_algebraic
def _rmsprop(p, g, sq, ga, buf, lr, alpha, c, eps, momentum, centered, use_momentum, ftz):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(ftz)
    for i in range(p.size):
        gi = g[i]
        s = sq[i] * alpha + c * (gi * gi)
        sq[i] = s
        if centered:
            a = ga[i] * alpha + c * gi
            ga[i] = a
            d = np.sqrt(s - a * a) + eps
        else:
            d = np.sqrt(s) + eps
        if use_momentum:
            bb = buf[i] * momentum + gi / d
            buf[i] = bb
            p[i] = p[i] - lr * bb
        else:
            p[i] = p[i] - lr * (gi / d)
    subnormals_flushed_end(mode)


# ----------------------------------------------------------------------------- the kernels


class NumbaKernels(GeluSiluKernels, TrainingKernels, NumpyKernels):
    """numba-compiled versions of the NumPy kernels (a subclass: anything not compiled here
    runs the NumPy in-place version). GELU and SiLU come from
    :class:`~xpnet.kernels.numba_activations.GeluSiluKernels`, dropout and the clipping norm
    from :class:`~xpnet.kernels.numba_training.TrainingKernels`.

    Parameters
    ----------
    parallel : bool, optional
        Run Adam, the largest update, over numba's thread pool (``prange``). Off by default:
        on a 2-core machine numba's threads compete with OpenBLAS's spinning ones between
        the matrix products (``benchmarks/NOTES.md`` §9). numba's own thread settings
        (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``) are left as the user set them.


    Notes
    -----
    Forward passes give the reference's bits: ReLU, leaky ReLU and the bias add are exact in
    any order, and the ``exp``/``tanh`` of sigmoid, tanh and softmax are NumPy's own (numba's
    come from the C library and differ from NumPy's SIMD versions by an ulp here and there).
    So a model predicts the same numbers with any kernel set and on array_api_strict
    (``Sequential.to`` relies on it), and a tanh layer trained with Adam does not amplify
    ulps into weight differences past the float32 tolerance of the agreement tests. Training
    kernels (backward, updates, :meth:`log_softmax_with_probs`) agree within a few ulps.
    """

    name = "numba"
    fused_l2 = True

    def __init__(self, xp: ModuleType | None = None, parallel: bool = False) -> None:
        super().__init__(xp)
        self.parallel = bool(parallel)

    # The generic ``activation``/``activation_backward`` and ``bias_activation``'s fallback
    # reach the per-activation methods below by name (PortableKernels).

    def _reference_forward(self, act: str, x: Any, alpha: float) -> Any:
        # The NumPy kernels' version, for what the compiled loops do not take.
        method = getattr(super(), act)
        return method(x, alpha) if ACTIVATION_KERNELS[act] else method(x)

    def _reference_backward(self, act: str, grad: Any, y: Any, alpha: float) -> Any:
        method = getattr(super(), f"{act}_backward")
        return method(grad, y, alpha) if ACTIVATION_KERNELS[act] else method(grad, y)

    # -- element-wise activations

    def _forward(self, act: str, x: Any, alpha: float) -> Any:  # ReLU and leaky ReLU
        if not _same_float(x):
            return self._reference_forward(act, x, alpha)
        out = np.empty(x.shape, x.dtype)
        one = x.dtype.type(1)
        _forward_flat(x.reshape(-1), out.reshape(-1), _ACT_CODES[act], one * alpha, one)
        return out

    def _backward(self, act: str, grad: Any, y: Any, alpha: float) -> Any:
        if not _same_float(grad, y):
            return self._reference_backward(act, grad, y, alpha)
        out = np.empty(grad.shape, grad.dtype)
        one = grad.dtype.type(1)
        code = _ACT_CODES[act]
        _backward_flat(grad.reshape(-1), y.reshape(-1), out.reshape(-1), code, one * alpha, one)
        return out

    def relu(self, x: Any) -> Any:
        """``max(x, 0)`` (NaN kept)."""
        return self._forward("relu", x, 0.0)

    def relu_backward(self, grad: Any, y: Any) -> Any:
        """``grad`` where ``y > 0``, else 0."""
        return self._backward("relu", grad, y, 0.0)

    def leaky_relu(self, x: Any, alpha: float) -> Any:
        """``x`` where ``x > 0``, else ``alpha x``."""
        return self._forward("leaky_relu", x, alpha)

    def leaky_relu_backward(self, grad: Any, y: Any, alpha: float) -> Any:
        """``grad`` where ``y > 0``, else ``alpha grad``."""
        return self._backward("leaky_relu", grad, y, alpha)

    def sigmoid(self, x: Any) -> Any:
        """The logistic function, from ``exp(-|x|)`` so it cannot overflow.

        ``exp`` is NumPy's (one pass), the rest one compiled pass: bit for bit the reference.
        """
        if not _same_float(x):
            return self._reference_forward("sigmoid", x, 0.0)
        e = np.abs(x, out=np.empty(x.shape, x.dtype))
        np.negative(e, out=e)
        np.exp(e, out=e)
        flat = x.reshape(-1)  # a copy if x is not C-contiguous; e always is
        _sigmoid_from_exp(flat, e.reshape(-1), x.dtype.type(1))
        return e

    def sigmoid_backward(self, grad: Any, y: Any) -> Any:
        """``grad y (1 - y)``."""
        return self._backward("sigmoid", grad, y, 0.0)

    def tanh(self, x: Any) -> Any:
        """``tanh(x)``: NumPy's own ufunc, not a compiled loop (see the class notes)."""
        if not _same_float(x):
            return self._reference_forward("tanh", x, 0.0)
        return np.tanh(x, out=np.empty(x.shape, x.dtype))

    def tanh_backward(self, grad: Any, y: Any) -> Any:
        """``grad (1 - y^2)``."""
        return self._backward("tanh", grad, y, 0.0)

    def softmax(self, x: Any) -> Any:
        """Row-wise softmax: the reference's, for predictions equal on every backend (see the
        class notes; training's softmax is :meth:`log_softmax_with_probs`)."""
        return self._reference_forward("softmax", x, 0.0)

    def softmax_backward(self, grad: Any, y: Any) -> Any:
        """``y (grad - <grad, y>)`` row by row."""
        if not _rows_ok(grad, y):
            return self._reference_backward("softmax", grad, y, 0.0)
        out = np.empty(grad.shape, grad.dtype)
        _softmax_backward_rows(
            np.ascontiguousarray(grad), np.ascontiguousarray(y), out, grad.dtype.type(0)
        )
        return out

    def bias_activation(self, z: Any, b: Any, act: str | None, alpha: float = 0.0) -> Any:
        ok = (
            isinstance(z, np.ndarray)
            and isinstance(b, np.ndarray)
            and z.ndim == 2
            and z.flags.c_contiguous
            and b.shape == z.shape[1:]
            and b.dtype == z.dtype
            and z.dtype in _DTYPES
        )
        if not ok or act not in (None, *_ACT_CODES, "softmax"):
            return super().bias_activation(z, b, act, alpha)
        one = z.dtype.type(1)
        code = _ACT_CODES[act] if act in ("relu", "leaky_relu") else -1
        _bias_forward(z, b, code, one * alpha, one)
        if act == "tanh":
            return np.tanh(z, out=z)
        if act in ("sigmoid", "softmax"):
            return getattr(self, act)(z)
        return z

    def log_softmax_with_probs(self, logits: Any) -> tuple[Any, Any]:
        if not _rows_ok(logits):
            return super().log_softmax_with_probs(logits)
        logp = np.empty(logits.shape, logits.dtype)
        p = np.empty(logits.shape, logits.dtype)
        _log_softmax_rows(np.ascontiguousarray(logits), logp, p, logits.dtype.type(0))
        return logp, p

    # -- optimizer updates over the flat buffer

    def adam_update(
        self,
        p: Any,
        g: Any,
        m: Any,
        v: Any,
        *,
        beta1: float,
        beta2: float,
        step_size: float,
        root_bc2: float,
        eps: float,
        step: int,
    ) -> None:
        if not (_in_place_ok(p, m, v) and _same_float(p, g)):
            return super().adam_update(
                p, g, m, v, beta1=beta1, beta2=beta2, step_size=step_size,
                root_bc2=root_bc2, eps=eps, step=step,
            )  # fmt: skip
        t = p.dtype.type
        args = (
            p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
            t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
            t(step_size), t(root_bc2), t(eps),
            t(np.finfo(p.dtype).tiny), step % _FLUSH_EVERY == 0,
            flush_is_invisible(eps * root_bc2, p.dtype),
        )  # fmt: skip
        if self.parallel:
            # Passed in: numba's thread count read inside the loop would stop it caching.
            _adam_parallel(*args, 4 * get_num_threads())
        else:
            _adam_serial(*args)
        return None

    def sgd_momentum_update(
        self,
        p: Any,
        g: Any,
        buf: Any,
        *,
        lr: float,
        momentum: float,
        dampening: float,
        nesterov: bool,
    ) -> None:
        if not (_in_place_ok(p, buf) and _same_float(p, g)):
            return super().sgd_momentum_update(
                p, g, buf, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov
            )
        t = p.dtype.type
        _sgd_momentum(
            p.reshape(-1), g.reshape(-1), buf.reshape(-1),
            t(lr), t(momentum), t(1.0 - dampening), bool(nesterov),
        )  # fmt: skip
        return None

    def velocity_sgd_update(
        self,
        p: Any,
        g: Any,
        velocity: Any,
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> None:
        if not (_in_place_ok(p, velocity) and _same_float(p, g)):
            return super().velocity_sgd_update(
                p, g, velocity, lr=lr, momentum=momentum, nesterov=nesterov
            )
        t = p.dtype.type
        _velocity_sgd(
            p.reshape(-1), g.reshape(-1), velocity.reshape(-1), t(lr), t(momentum), bool(nesterov)
        )
        return None

    def l2_velocity_sgd_update(
        self,
        p: Any,
        g: Any,
        velocity: Any,
        segments: Sequence[tuple[int, int]],
        *,
        coef: Any,
        lr: float,
        momentum: float,
        nesterov: bool,
    ) -> Any:
        # 1-D arrays are updated in place whatever their strides: no reshape, no copy.
        if not (_same_float(p, g, velocity) and p.ndim == 1):
            return super().l2_velocity_sgd_update(
                p, g, velocity, segments, coef=coef, lr=lr, momentum=momentum, nesterov=nesterov
            )
        t = p.dtype.type
        segs = segments_array(_checked_segments(segments, p.shape[0]))
        total = _l2_velocity_sgd(
            p, g, velocity, segs, t(coef), t(lr), t(momentum), bool(nesterov)
        )  # fmt: skip
        return t(total)

    def l2_adam_update(
        self,
        p: Any,
        g: Any,
        m: Any,
        v: Any,
        segments: Sequence[tuple[int, int]],
        *,
        coef: Any,
        beta1: float,
        beta2: float,
        step_size: float,
        root_bc2: float,
        eps: float,
        step: int,
    ) -> Any:
        if not (_same_float(p, g, m, v) and p.ndim == 1):
            return super().l2_adam_update(
                p, g, m, v, segments, coef=coef, beta1=beta1, beta2=beta2,
                step_size=step_size, root_bc2=root_bc2, eps=eps, step=step,
            )  # fmt: skip
        t = p.dtype.type
        segs = segments_array(_checked_segments(segments, p.shape[0]))
        total = _l2_adam(
            p, g, m, v, segs, t(coef),
            t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
            t(step_size), t(root_bc2), t(eps),
            t(np.finfo(p.dtype).tiny), step % _FLUSH_EVERY == 0,
            flush_is_invisible(eps * root_bc2, p.dtype),
        )  # fmt: skip
        return t(total)

    def scaled_add(self, target: Any, source: Any, coef: float, mask: Any = None) -> None:
        arrays = (target, source) if mask is None else (target, source, mask)
        if not (_in_place_ok(target) and _same_float(*arrays)):
            return super().scaled_add(target, source, coef, mask)
        c = target.dtype.type(coef)
        if mask is None:
            _scaled_add(target.reshape(-1), source.reshape(-1), c)
        else:
            _scaled_add_masked(target.reshape(-1), source.reshape(-1), mask.reshape(-1), c)
        return None

    def rmsprop_update(
        self,
        p: Any,
        g: Any,
        square_avg: Any,
        grad_avg: Any | None,
        momentum_buffer: Any | None,
        *,
        lr: float,
        alpha: float,
        eps: float,
        momentum: float,
    ) -> None:
        state = [a for a in (square_avg, grad_avg, momentum_buffer) if a is not None]
        if not (_in_place_ok(p, *state) and _same_float(p, g)):
            return super().rmsprop_update(
                p, g, square_avg, grad_avg, momentum_buffer,
                lr=lr, alpha=alpha, eps=eps, momentum=momentum,
            )  # fmt: skip
        t = p.dtype.type
        flat = p.reshape(-1)
        # An unused state array is never read: any 1-D array of the dtype stands in for it.
        ga = flat if grad_avg is None else grad_avg.reshape(-1)
        buf = flat if momentum_buffer is None else momentum_buffer.reshape(-1)
        _rmsprop(
            flat, g.reshape(-1), square_avg.reshape(-1), ga, buf,
            t(lr), t(alpha), t(1.0 - alpha), t(eps), t(momentum),
            grad_avg is not None, momentum_buffer is not None,
            # Centered, the root is of ``s - a*a``: a flush lowering ``s`` by less than tiny
            # can make that negative, and the root NaN, where the reference's is 0.
            grad_avg is None and flush_is_invisible(eps, p.dtype),
        )  # fmt: skip
        return None
