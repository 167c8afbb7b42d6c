"""What the compiled kernel modules share: numba's options and the checks that pick the
compiled path (the flags and why: :mod:`xpnet.kernels.numba_cpu`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
_FASTMATH_ALGEBRAIC = {"nsz", "arcp"}
_OPTS: dict[str, Any] = {"error_model": "numpy", "cache": True}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# No fastmath at all: for loops that must give the reference's bits operation by operation
# (with ``arcp`` a division would become a multiply by the reciprocal).
_jit_exact = njit(**_OPTS)
# Inlined into its callers at numba's IR level, so compiled under the caller's flags.
_inline_exact = njit(inline="always", **_OPTS)
# The optimizer loops' flags (why: :mod:`xpnet.kernels.numba_cpu`), compiled and inlined.
_jit_algebraic = njit(fastmath=_FASTMATH_ALGEBRAIC, **_OPTS)
_inline_algebraic = njit(inline="always", fastmath=_FASTMATH_ALGEBRAIC, **_OPTS)


@_inline_algebraic
def _adam_one(p, g, m, v, b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush):  # type: ignore[no-untyped-def]
    m = m * b1 + c1 * g
    v = v * b2 + c2 * (g * g)
    p = p - step_size * (m / (np.sqrt(v) / root_bc2 + eps))
    if flush:
        # As NumpyKernels: subnormal moments (dead units) flushed every few steps.
        if np.abs(m) < tiny:
            m = m - m
        if np.abs(v) < tiny:
            v = v - v
    return p, m, v


def _same_float(*arrays: Any) -> bool:
    """All NumPy arrays of one shape and one of the compiled dtypes."""
    first = arrays[0]
    return all(
        isinstance(a, np.ndarray) and a.dtype == first.dtype and a.shape == first.shape
        for a in arrays
    ) and (first.dtype in _DTYPES)


def _in_place_ok(*arrays: Any) -> bool:
    """As :func:`_same_float`, and C-contiguous, so ``reshape(-1)`` is a view to write into."""
    return _same_float(*arrays) and all(a.flags.c_contiguous for a in arrays)


def _rows_ok(*arrays: Any) -> bool:
    """2-D with at least one column (the row kernels read each row's first element)."""
    return _same_float(*arrays) and arrays[0].ndim == 2 and arrays[0].shape[1] > 0
