"""NumPy fast paths: the same maths as the portable kernels, with fewer temporaries.

Each method must agree with :class:`~xpnet.kernels.portable.PortableKernels` to float
rounding; ``tests/test_kernels.py`` holds them to that.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat.numpy as np_xp
import numpy as np

from .portable import PortableKernels

# Adam's moments of a unit whose gradient stays zero (a dead ReLU) decay geometrically into
# the subnormal range, where x86 arithmetic is many times slower; flushing them to zero every
# few steps keeps later epochs as fast as the first. The change is below float rounding:
# a moment under the smallest normal float cannot move ``m / (sqrt(v) + eps)`` measurably.
_FLUSH_EVERY = 16


class NumpyKernels(PortableKernels):
    """In-place NumPy versions (``out=``) of the portable kernels."""

    name = "numpy"

    def __init__(self, xp: ModuleType | None = None) -> None:
        super().__init__(np_xp if xp is None else xp)
        self._scratch: dict[tuple[tuple[int, ...], Any], np.ndarray] = {}

    def _tmp(self, like: np.ndarray) -> np.ndarray:
        key = (like.shape, like.dtype)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = np.empty_like(like)
        return buf

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        if out is None or out.shape != (a.shape[0], b.shape[1]) or out.dtype != a.dtype:
            return a @ b
        return np.matmul(a, b, out=out)

    def sum_rows(self, a: Any, out: Any = None) -> Any:
        if out is None or out.shape != a.shape[1:] or out.dtype != a.dtype:
            return np.sum(a, axis=0)
        return np.sum(a, axis=0, out=out)

    def relu(self, x: Any) -> Any:
        return np.maximum(x, 0.0, out=np.empty_like(x))

    def relu_backward(self, grad: Any, y: Any) -> Any:
        out = np.empty_like(grad)
        np.multiply(grad, y > 0, out=out)
        return out

    def bias_activation(self, z: Any, b: Any, act: str | None, alpha: float = 0.0) -> Any:
        np.add(z, b, out=z)
        if act == "relu":
            return np.maximum(z, 0.0, out=z)
        return z if act is None else self.activation(z, act, alpha)

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
        tmp = self._tmp(p)
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        # m / (sqrt(v) / r + eps) == r * m / (sqrt(v) + eps * r): one pass fewer over the
        # largest arrays of the step.
        np.sqrt(v, out=tmp)
        tmp += eps * root_bc2
        np.divide(m, tmp, out=tmp)
        tmp *= step_size * root_bc2
        p -= tmp
        if step % _FLUSH_EVERY == 0:
            _flush_subnormals(m, tmp)
            _flush_subnormals(v, tmp)

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
        tmp = self._tmp(p)
        buf *= momentum
        np.multiply(g, 1.0 - dampening, out=tmp)
        buf += tmp
        if nesterov:
            np.multiply(buf, momentum, out=tmp)
            tmp += g
        else:
            tmp[...] = buf
        tmp *= lr
        p -= tmp

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
        tmp = self._tmp(p)
        square_avg *= alpha
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - alpha
        square_avg += tmp
        if grad_avg is not None:
            grad_avg *= alpha
            np.multiply(g, 1.0 - alpha, out=tmp)
            grad_avg += tmp
            np.multiply(grad_avg, grad_avg, out=tmp)
            np.subtract(square_avg, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(square_avg, out=tmp)
        tmp += eps
        np.divide(g, tmp, out=tmp)
        if momentum_buffer is not None:
            momentum_buffer *= momentum
            momentum_buffer += tmp
            np.multiply(momentum_buffer, lr, out=tmp)
        else:
            tmp *= lr
        p -= tmp


def _flush_subnormals(a: np.ndarray, scratch: np.ndarray) -> None:
    tiny = np.finfo(a.dtype).tiny
    np.abs(a, out=scratch)
    a[scratch < tiny] = 0.0
