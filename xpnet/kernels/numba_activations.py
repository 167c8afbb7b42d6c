"""Compiled GELU (exact and tanh forms) and SiLU, forward, bias + forward and backward.

The portable formulas (:class:`~xpnet.kernels.portable.PortableKernels`, the error function
of :mod:`xpnet.kernels.special`) evaluate every branch of Cody's ``erfc`` on the whole array
and allocate a temporary for each of some sixty operations; here each kernel is three passes:

1. a compiled pass that forms the arguments of the ``exp`` / ``tanh`` calls (after adding the
   bias, for Dense's fused path);
2. NumPy's own ``exp`` / ``tanh`` over those arguments, in place;
3. a compiled pass that finishes the formula from them.

The compiled passes have no fastmath flag at all and perform the reference's operations in
the reference's order and dtype, and the transcendental functions are NumPy's (numba's come
from the C library and differ from NumPy's SIMD versions by an ulp here and there), so every
kernel here gives the reference's bits, forward and backward alike
(``tests/test_kernels_numba_more.py`` holds them to 0 ulps). Only the selected branch of
``erfc`` is computed: its value does not depend on the branches ``where`` throws away.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .numba_base import _inline_exact, _jit_exact, _same_float
from .numpy_fast import NumpyKernels
from .portable import _GELU_CUBIC, _INV_SQRT_2PI, _SQRT_2_OVER_PI, _SQRT_HALF
from .special import _A, _B, _C, _D, _P, _Q, _SQRPI, _THRESH, _XBIG

__all__ = ["GeluSiluKernels"]

# The constants, as one tuple of scalars per dtype (a float64 literal would turn float32
# arithmetic into float64); each named index is a position in it. A tuple, not an array: the
# loops then read no memory that might alias their outputs, and LLVM vectorises them.
_VALUES = [
    *_A, *_B, *_C, *_D, *_P, *_Q,
    _THRESH, _XBIG, _SQRPI, 16.0, 4.0, 1.0, 2.0, 0.5, -_SQRT_HALF, _INV_SQRT_2PI, -0.5,
    _SQRT_2_OVER_PI, _GELU_CUBIC, 3.0 * _GELU_CUBIC, 0.0,
]  # fmt: skip
_IA, _IB, _IC, _ID, _IP, _IQ = 0, 5, 9, 18, 26, 32
(
    _T, _XB, _RPI, _SIXTEEN, _FOUR, _ONE, _TWO, _HALF, _NEG_SQRT_HALF, _INV_S2PI, _NEG_HALF,
    _S2PI, _CUBIC, _CUBIC3, _ZERO,
) = range(37, 52)  # fmt: skip
assert len(_VALUES) == 52

_GELU, _GELU_TANH, _SILU = 0, 1, 2
_CODES = {"gelu": _GELU, "gelu_tanh": _GELU_TANH, "silu": _SILU}
# How many exp/tanh arguments each activation's forward and backward need per element.
_N_ARGS = {(_GELU, False): 2, (_GELU, True): 3, (_GELU_TANH, False): 1, (_GELU_TANH, True): 1}


# ----------------------------------------------------------------------------- erfc


@_inline_exact
def _erfc_exp_args(v, k):  # type: ignore[no-untyped-def]
    # special._exp_neg_square's two arguments, at clip(|v|, THRESH, XBIG).
    y = min(max(abs(v), k[_T]), k[_XB])
    s = np.trunc(y * k[_SIXTEEN]) / k[_SIXTEEN]
    return -s * s, -(y - s) * (y + s)


@_inline_exact
def _erfc_from(v, e1, e2, k):  # type: ignore[no-untyped-def]
    # special.erfc(v), given exp of the two arguments above.
    if v != v:
        return v
    y = abs(v)
    if y <= k[_T]:
        z = v * v
        num = k[_IA + 4] * z
        den = z
        for i in range(3):
            num = (num + k[_IA + i]) * z
            den = (den + k[_IB + i]) * z
        return k[_ONE] - v * (num + k[_IA + 3]) / (den + k[_IB + 3])
    if y >= k[_XB]:
        tail = k[_ZERO]
    else:
        if y <= k[_FOUR]:
            num = k[_IC + 8] * y
            den = y
            for i in range(7):
                num = (num + k[_IC + i]) * y
                den = (den + k[_ID + i]) * y
            r = (num + k[_IC + 7]) / (den + k[_ID + 7])
        else:
            z = k[_ONE] / (y * y)
            num = k[_IP + 5] * z
            den = z
            for i in range(4):
                num = (num + k[_IP + i]) * z
                den = (den + k[_IQ + i]) * z
            r = (k[_RPI] - z * (num + k[_IP + 4]) / (den + k[_IQ + 4])) / y
        tail = r * (e1 * e2)
    return k[_TWO] - tail if v < 0 else tail


@_inline_exact
def _sigmoid_from(x, e, k):  # type: ignore[no-untyped-def]
    # PortableKernels.sigmoid from e = exp(-|x|).
    return k[_ONE] / (k[_ONE] + e) if x >= 0 else e / (k[_ONE] + e)


# ----------------------------------------------------------------------------- passes


@_jit_exact
def _args(x, b, use_bias, act, backward, a, k):  # type: ignore[no-untyped-def]
    """Pass 1 over 2-D ``x`` (rows of ``b``'s length): ``x += b`` in place if ``use_bias``,
    then the exp/tanh arguments of ``act`` into the rows of ``a``."""
    cols = x.shape[1]
    for r in range(x.shape[0]):
        for c in range(cols):
            v = x[r, c]
            if use_bias:
                v = v + b[c]
                x[r, c] = v
            i = r * cols + c
            if act == _GELU:
                a[0, i], a[1, i] = _erfc_exp_args(v * k[_NEG_SQRT_HALF], k)
                if backward:
                    a[2, i] = k[_NEG_HALF] * (v * v)
            elif act == _GELU_TANH:
                a[0, i] = k[_S2PI] * (v + k[_CUBIC] * (v * v * v))
            else:
                a[0, i] = -abs(v)


@_jit_exact
def _forward_finish(x, e, out, act, k):  # type: ignore[no-untyped-def]
    """Pass 3 of a forward: ``out`` from flat ``x`` and ``e`` (exp/tanh of :func:`_args`)."""
    for i in range(x.size):
        v = x[i]
        if act == _GELU:
            out[i] = v * (k[_HALF] * _erfc_from(v * k[_NEG_SQRT_HALF], e[0, i], e[1, i], k))
        elif act == _GELU_TANH:
            out[i] = k[_HALF] * v * (k[_ONE] + e[0, i])
        else:
            out[i] = v * _sigmoid_from(v, e[0, i], k)


@_jit_exact
def _backward_finish(g, x, e, out, act, k):  # type: ignore[no-untyped-def]
    """Pass 3 of a backward: ``out = g * act'(x)`` from flat ``g``, ``x`` and ``e``."""
    for i in range(x.size):
        v = x[i]
        if act == _GELU:
            cdf = k[_HALF] * _erfc_from(v * k[_NEG_SQRT_HALF], e[0, i], e[1, i], k)
            pdf = k[_INV_S2PI] * e[2, i]
            out[i] = g[i] * (cdf + v * pdf)
        elif act == _GELU_TANH:
            t = e[0, i]
            du = k[_S2PI] * (k[_ONE] + k[_CUBIC3] * (v * v))
            out[i] = g[i] * (k[_HALF] * (k[_ONE] + t) + k[_HALF] * v * (k[_ONE] - t * t) * du)
        else:
            s = _sigmoid_from(v, e[0, i], k)
            out[i] = g[i] * (s * (k[_ONE] + v * (k[_ONE] - s)))


# ----------------------------------------------------------------------------- the kernels


class GeluSiluKernels(NumpyKernels):
    """The NumPy kernels with compiled GELU, GELU (tanh) and SiLU: forward, bias + forward
    (:meth:`bias_activation`) and backward, each bit for bit the portable reference.

    Part of :class:`~xpnet.kernels.numba_cpu.NumbaKernels`; arrays the loops do not take
    (dtypes other than float32/float64, mixed dtypes or shapes) go to the NumPy kernels. A
    non-contiguous input is read through a contiguous copy.
    """

    def __init__(self, xp: ModuleType | None = None) -> None:
        super().__init__(xp)
        self._constants = {dt: tuple(dt(v) for v in _VALUES) for dt in (np.float32, np.float64)}

    def _exp_args(self, act: int, backward: bool, x2d: Any, b: Any, use_bias: bool) -> Any:
        # Passes 1 and 2: the arguments, then NumPy's exp/tanh of them in place.
        n_args = _N_ARGS.get((act, backward), 1)
        a = np.empty((n_args, x2d.size), x2d.dtype)
        _args(x2d, b, use_bias, act, backward, a, self._constants[x2d.dtype.type])
        return np.tanh(a, out=a) if act == _GELU_TANH else np.exp(a, out=a)

    def _input_forward(self, name: str, x: Any) -> Any:
        if not _same_float(x):
            return getattr(super(), name)(x)
        act = _CODES[name]
        x2d = x.reshape(1, -1)  # a copy if x is not C-contiguous; never written
        e = self._exp_args(act, False, x2d, x2d[0], False)
        out = np.empty(x.shape, x.dtype)
        _forward_finish(x2d.reshape(-1), e, out.reshape(-1), act, self._constants[x.dtype.type])
        return out

    def _input_backward(self, name: str, grad: Any, x: Any) -> Any:
        if not _same_float(grad, x):
            return getattr(super(), f"{name}_backward")(grad, x)
        act = _CODES[name]
        x2d = x.reshape(1, -1)
        e = self._exp_args(act, True, x2d, x2d[0], False)
        out = np.empty(x.shape, x.dtype)
        _backward_finish(
            grad.reshape(-1), x2d.reshape(-1), e, out.reshape(-1), act,
            self._constants[x.dtype.type],
        )  # fmt: skip
        return out

    def gelu(self, x: Any) -> Any:
        """``x Phi(x)`` (the reference's bits)."""
        return self._input_forward("gelu", x)

    def gelu_backward(self, grad: Any, x: Any) -> Any:
        """``grad (Phi(x) + x phi(x))`` at the input ``x`` (the reference's bits)."""
        return self._input_backward("gelu", grad, x)

    def gelu_tanh(self, x: Any) -> Any:
        """The tanh form of GELU (the reference's bits)."""
        return self._input_forward("gelu_tanh", x)

    def gelu_tanh_backward(self, grad: Any, x: Any) -> Any:
        """Its derivative at the input ``x`` (the reference's bits)."""
        return self._input_backward("gelu_tanh", grad, x)

    def silu(self, x: Any) -> Any:
        """``x sigmoid(x)`` (the reference's bits)."""
        return self._input_forward("silu", x)

    def silu_backward(self, grad: Any, x: Any) -> Any:
        """``grad s (1 + x (1 - s))`` at the input ``x`` (the reference's bits)."""
        return self._input_backward("silu", grad, x)

    def bias_activation(self, z: Any, b: Any, act: str | None, alpha: float = 0.0) -> Any:
        ok = (
            act in _CODES
            and isinstance(z, np.ndarray)
            and isinstance(b, np.ndarray)
            and z.ndim == 2
            and z.flags.c_contiguous
            and b.shape == z.shape[1:]
            and b.dtype == z.dtype
            and _same_float(z)
        )
        if not ok:
            return super().bias_activation(z, b, act, alpha)
        code = _CODES[str(act)]
        e = self._exp_args(code, False, z, b, True)  # z now holds z + b
        # A new output, not z itself: LLVM does not vectorise a loop whose output overlaps
        # its input (measured: 2.5x slower in place).
        out = np.empty(z.shape, z.dtype)
        _forward_finish(z.reshape(-1), e, out.reshape(-1), code, self._constants[z.dtype.type])
        return out
