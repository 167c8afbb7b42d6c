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
