"""Compiled kernels of the training step outside the layers' maths: dropout's counter-based
masks and gradient clipping's global norm.

Dropout hashes, masks and applies in one pass: ``mix32`` of :mod:`xpnet.random` in 64-bit
integers (the products wrap modulo 2**64, whose low 32 bits are those of the 32-bit
products; the mask after each keeps the words below 2**32), so the keep decisions are the
portable ones bit for bit, and ``x * mask`` is the same single rounding as the reference's.

Clipping sums the squares in float64 (vectorised with ``reassoc``), then forms the
coefficient in the gradients' dtype as the reference does. For float32 gradients the sum is
within a rounding of the exact norm, where NumPy's float32 pairwise sum is within a few; the
coefficient is a host number here, so a step whose coefficient is 1 (the norm within the
limit) skips the multiply, which would change no bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from ..random import MASK32, MIX_MULTIPLIERS, _checked_block, _mask_block, keep_threshold, key_words
from .numba_base import _DTYPES, _FASTMATH, _OPTS, _inline_exact, _jit_exact
from .numpy_fast import NumpyKernels

__all__ = ["TrainingKernels"]

_M1, _M2 = MIX_MULTIPLIERS


@_inline_exact
def _mix32(x):  # type: ignore[no-untyped-def]
    # xpnet.random.mix32 on a word in [0, 2**32) held in an int64.
    x ^= x >> 16
    x = (x * _M1) & MASK32
    x ^= x >> 15
    x = (x * _M2) & MASK32
    return x ^ (x >> 16)


@_jit_exact
def _dropout_rows(x, y, mask, k_row, k_col, row_offset, threshold, scale, zero):  # type: ignore[no-untyped-def]
    rows, cols = x.shape
    col_hash = np.empty(cols, np.int64)
    for c in range(cols):
        col_hash[c] = _mix32(c ^ k_col)
    for r in range(rows):
        row_hash = _mix32((row_offset + r) ^ k_row)
        for c in range(cols):
            m = scale if _mix32(row_hash ^ col_hash[c]) >= threshold else zero
            mask[r, c] = m
            y[r, c] = x[r, c] * m


@njit(fastmath=_FASTMATH, **_OPTS)
def _sum_squares(a):  # type: ignore[no-untyped-def]
    # ``reassoc`` lets LLVM keep several vector partial sums; in float64 each stays far
    # below float32's rounding (about n / 32 additions each, relative error ~1e-12).
    total = 0.0
    for i in range(a.size):
        v = np.float64(a[i])
        total += v * v
    return total


class TrainingKernels(NumpyKernels):
    """The NumPy kernels with compiled dropout masks and clipping norm.

    Part of :class:`~xpnet.kernels.numba_cpu.NumbaKernels`. Dropout of a non-C-contiguous
    array, or of a dtype other than float32/float64, runs the reference (NumPy) version;
    clipping takes any layout but needs all gradients of one compiled dtype.
    """

    def dropout(
        self, x: Any, p: float, seed: int, step: int, row_offset: int = 0
    ) -> tuple[Any, Any]:
        """Inverted dropout, bit for bit :meth:`PortableKernels.dropout`."""
        if not (_compiled_dtype(x) and x.flags.c_contiguous and x.ndim >= 1):
            return super().dropout(x, p, seed, step, row_offset)
        # The reference's checks, in its order (row_offset, then the key, then p).
        rows, cols, offset = _checked_block(_mask_block(x.shape), row_offset)
        k_row, k_col = key_words(seed, step)
        threshold = keep_threshold(p)
        t = x.dtype.type
        y = np.empty(x.shape, x.dtype)
        mask = np.empty(x.shape, x.dtype)
        _dropout_rows(
            x.reshape(rows, cols), y.reshape(rows, cols), mask.reshape(rows, cols),
            k_row, k_col, offset, threshold, t(1.0 / (1.0 - p)), t(0),
        )  # fmt: skip
        return y, mask

    def clip_grad_norm(self, grads: Sequence[Any], max_norm: float, eps: float) -> None:
        """As :meth:`PortableKernels.clip_grad_norm`, the norm summed in float64."""
        if not grads or not all(_compiled_dtype(g) and g.dtype == grads[0].dtype for g in grads):
            return super().clip_grad_norm(grads, max_norm, eps)
        # reshape(-1) only reads: a copy for a non-contiguous gradient is harmless.
        total = grads[0].dtype.type(sum(_sum_squares(g.reshape(-1)) for g in grads))
        # NumPy scalars in the gradients' dtype, as the reference's 0-d arrays.
        coef = max_norm / (np.sqrt(total) + eps)
        if not coef < 1.0:  # the reference multiplies by exactly 1 (NaN norms included)
            return
        for g in grads:
            g *= coef


def _compiled_dtype(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype in _DTYPES
