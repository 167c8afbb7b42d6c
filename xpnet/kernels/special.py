"""The error function in the array namespace: W. J. Cody's rational approximations.

Neither NumPy nor the Array API standard has ``erf``. These are the three rational
approximations of Cody's CALERF (Math. Comp. 23 (1969) 631-637; the Netlib SPECFUN
version), accurate to about 1e-16 relative in float64 over the whole real line:

- ``|x| <= 0.46875``: ``erf(x) = x P_A(x^2) / Q_B(x^2)``;
- ``0.46875 < |x| <= 4``: ``erfc(|x|) = exp(-x^2) P_C(|x|) / Q_D(|x|)``;
- ``|x| > 4``: ``erfc(|x|) = exp(-x^2) / |x| (1/sqrt(pi) + x^-2 P_P(x^-2) / Q_Q(x^-2))``.

``exp(-x^2)`` is formed as ``exp(-s^2) exp(-(|x| - s)(|x| + s))`` with ``s`` the argument
cut to a multiple of 1/16, as Cody does: ``x^2`` itself would lose the low bits that matter
in the tail. Every branch is evaluated on inputs clipped into its own interval and the result
selected with ``where``, so nothing overflows and no value is read back to the host.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = ["erf", "erfc"]

_THRESH = 0.46875
_XBIG = 26.543  # erfc(x) underflows to 0 beyond
_SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)

_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_Q = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)


def _small(xp: Any, x: Any) -> Any:
    """``erf(x)`` for ``|x| <= 0.46875`` (x clipped into that interval)."""
    z = x * x
    num = _A[4] * z
    den = z
    for i in range(3):
        num = (num + _A[i]) * z
        den = (den + _B[i]) * z
    return x * (num + _A[3]) / (den + _B[3])


def _exp_neg_square(xp: Any, y: Any) -> Any:
    s = xp.trunc(y * 16.0) / 16.0
    return xp.exp(-s * s) * xp.exp(-(y - s) * (y + s))


def _erfc_positive(xp: Any, y: Any) -> Any:
    """``erfc(y)`` for ``y = |x| > 0.46875`` (either large-argument branch)."""
    mid = xp.clip(y, _THRESH, 4.0)
    num = _C[8] * mid
    den = mid
    for i in range(7):
        num = (num + _C[i]) * mid
        den = (den + _D[i]) * mid
    r_mid = (num + _C[7]) / (den + _D[7])

    big = xp.clip(y, 4.0, _XBIG)
    z = 1.0 / (big * big)
    num = _P[5] * z
    den = z
    for i in range(4):
        num = (num + _P[i]) * z
        den = (den + _Q[i]) * z
    r_big = (_SQRPI - z * (num + _P[4]) / (den + _Q[4])) / big

    r = xp.where(y <= 4.0, r_mid, r_big) * _exp_neg_square(xp, xp.clip(y, _THRESH, _XBIG))
    return xp.where(y >= _XBIG, xp.zeros_like(r), r)


def erf(x: Any) -> Any:
    """The error function of a real floating array, element-wise, in its own namespace.

    NaN gives NaN, ``+-inf`` gives ``+-1``. Accurate to a few units in the last place of
    float64 (see the module docstring); float32 inputs are computed in float32.
    """
    xp = array_api_compat.array_namespace(x)
    y = xp.abs(x)
    small = _small(xp, xp.clip(x, -_THRESH, _THRESH))
    tail = (0.5 - _erfc_positive(xp, y)) + 0.5
    out = xp.where(y <= _THRESH, small, xp.where(x < 0, -tail, tail))
    return xp.where(xp.isnan(x), x, out)


def erfc(x: Any) -> Any:
    """``1 - erf(x)`` without its cancellation: accurate to the last places for large ``x``
    (where ``erfc`` is tiny) as well; ``erfc(-x) = 2 - erfc(x)``."""
    xp = array_api_compat.array_namespace(x)
    y = xp.abs(x)
    small = 1.0 - _small(xp, xp.clip(x, -_THRESH, _THRESH))
    tail = _erfc_positive(xp, y)
    out = xp.where(y <= _THRESH, small, xp.where(x < 0, 2.0 - tail, tail))
    return xp.where(xp.isnan(x), x, out)
