"""Compiled loops of scikit-learn's L2 term fused into its SGD and Adam steps.

One pass over the flat buffer takes the penalised gradient ``g + coef * w`` of each weight
element as it updates it, where the reference adds the term to the gradient first (a pass
reading the weights and the gradient and writing the gradient) and the squares of the
penalty come from another pass. The squares are summed per segment in float64 just before
its update (the segment is then in cache for the update that follows); the update itself is
the reference's operation order under the algebraic flags, so its bits are the reference's
(except where subnormal numbers are flushed: :mod:`~xpnet.kernels.numba_fpenv`).
The dispatch (which arrays take this path) is :class:`~xpnet.kernels.numba_cpu.NumbaKernels`.
"""

from __future__ import annotations

import numpy as np

from .numba_base import _adam_one, _inline_algebraic, _jit_algebraic
from .numba_fpenv import subnormals_flushed_begin, subnormals_flushed_end
from .numba_training import _sum_squares

__all__ = ["_l2_adam", "_l2_velocity_sgd"]


@_inline_algebraic
def _velocity_span(p, g, vel, coef, lr, momentum, nesterov, decayed):  # type: ignore[no-untyped-def]
    for i in range(p.size):
        w = p[i]
        step = lr * (g[i] + coef * w) if decayed else lr * g[i]
        v = vel[i] * momentum - step
        vel[i] = v
        p[i] = w + (momentum * v - step if nesterov else v)


@_jit_algebraic
def _l2_velocity_sgd(p, g, vel, segs, coef, lr, momentum, nesterov):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(True)
    total = 0.0
    prev = 0
    for j in range(segs.shape[0]):
        a, b = segs[j, 0], segs[j, 1]
        _velocity_span(p[prev:a], g[prev:a], vel[prev:a], coef, lr, momentum, nesterov, False)
        total += _sum_squares(p[a:b])
        _velocity_span(p[a:b], g[a:b], vel[a:b], coef, lr, momentum, nesterov, True)
        prev = b
    _velocity_span(p[prev:], g[prev:], vel[prev:], coef, lr, momentum, nesterov, False)
    subnormals_flushed_end(mode)
    return total


@_inline_algebraic
def _adam_span(p, g, m, v, coef, b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, decayed):  # type: ignore[no-untyped-def]
    for i in range(p.size):
        w = p[i]
        gi = g[i] + coef * w if decayed else g[i]
        p[i], m[i], v[i] = _adam_one(
            w, gi, m[i], v[i], b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush
        )


@_jit_algebraic
def _l2_adam(p, g, m, v, segs, coef, b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, ftz):  # type: ignore[no-untyped-def]
    mode = subnormals_flushed_begin(ftz)
    total = 0.0
    prev = 0
    for j in range(segs.shape[0]):
        a, b = segs[j, 0], segs[j, 1]
        _adam_span(
            p[prev:a], g[prev:a], m[prev:a], v[prev:a], coef,
            b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, False,
        )  # fmt: skip
        total += _sum_squares(p[a:b])
        _adam_span(
            p[a:b], g[a:b], m[a:b], v[a:b], coef,
            b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, True,
        )  # fmt: skip
        prev = b
    _adam_span(
        p[prev:], g[prev:], m[prev:], v[prev:], coef,
        b1, c1, b2, c2, step_size, root_bc2, eps, tiny, flush, False,
    )  # fmt: skip
    subnormals_flushed_end(mode)
    return total


def segments_array(segments: list[tuple[int, int]]) -> np.ndarray:
    """Checked ``(start, stop)`` pairs as the ``(k, 2)`` int64 array the loops take."""
    return np.array(segments, dtype=np.int64).reshape(-1, 2)
