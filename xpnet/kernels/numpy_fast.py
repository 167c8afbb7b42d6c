"""NumPy fast paths: the same maths as the portable kernels, with fewer temporaries.

Each method must agree with :class:`~xpnet.kernels.portable.PortableKernels` to float
rounding; ``tests/test_kernels.py`` holds them to that.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat.numpy as np_xp
import numpy as np

from .portable import _GELU_CUBIC, _INV_SQRT_2PI, _SQRT_2_OVER_PI, _SQRT_HALF, PortableKernels
from .special import erfc

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
        self._scratch: dict[tuple[Any, ...], np.ndarray] = {}

    def _tmp(self, like: np.ndarray) -> np.ndarray:
        key = (like.shape, like.dtype)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = np.empty_like(like)
        return buf

    def _tmp2(self, like: np.ndarray) -> np.ndarray:
        """A second scratch array, for updates that need two intermediates."""
        key = (like.shape, like.dtype, 2)
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
            return np.add.reduce(a, axis=0)
        # np.sum's own reduction, without its Python wrapper (a few µs a call, per step).
        return np.add.reduce(a, axis=0, out=out)

    def relu(self, x: Any) -> Any:
        return np.maximum(x, 0.0, out=np.empty_like(x))

    def relu_backward(self, grad: Any, y: Any) -> Any:
        out = np.empty_like(grad)
        np.multiply(grad, y > 0, out=out)
        return out

    # GELU, SiLU and the normalisation kernels: the portable formulas, evaluated in place
    # in one output buffer where NumPy allows it.
    def gelu(self, x: Any) -> Any:
        out = erfc(x * -_SQRT_HALF)
        out *= 0.5
        out *= x
        return out

    def gelu_backward(self, grad: Any, x: Any) -> Any:
        cdf = erfc(x * -_SQRT_HALF)
        cdf *= 0.5
        pdf = np.multiply(x, x)
        pdf *= -0.5
        np.exp(pdf, out=pdf)
        pdf *= _INV_SQRT_2PI
        pdf *= x
        cdf += pdf
        cdf *= grad
        return cdf

    def _gelu_tanh_t(self, x: Any) -> tuple[Any, Any]:
        x2 = np.multiply(x, x)
        t = np.multiply(x2, x)
        t *= _GELU_CUBIC
        t += x
        t *= _SQRT_2_OVER_PI
        np.tanh(t, out=t)
        return t, x2

    def gelu_tanh(self, x: Any) -> Any:
        t, _ = self._gelu_tanh_t(x)
        t += 1.0
        t *= x  # (1 + t) x / 2 equals 0.5 x (1 + t) up to one rounding of the halving
        t *= 0.5
        return t

    def gelu_tanh_backward(self, grad: Any, x: Any) -> Any:
        t, x2 = self._gelu_tanh_t(x)
        du = x2
        du *= 3.0 * _GELU_CUBIC
        du += 1.0
        du *= _SQRT_2_OVER_PI
        out = np.multiply(t, t)
        np.subtract(1.0, out, out=out)
        out *= x
        out *= 0.5
        out *= du
        t += 1.0
        t *= 0.5
        out += t
        out *= grad
        return out

    def silu(self, x: Any) -> Any:
        s = self.sigmoid(x)
        s *= x
        return s

    def silu_backward(self, grad: Any, x: Any) -> Any:
        s = PortableKernels.sigmoid(self, x)
        out = np.subtract(1.0, s)
        out *= x
        out += 1.0
        out *= s
        out *= grad
        return out

    def normalize(self, x: Any, mean: Any, var: Any, eps: float) -> tuple[Any, Any]:
        inv_std = np.add(var, eps)
        np.sqrt(inv_std, out=inv_std)
        np.divide(1.0, inv_std, out=inv_std)
        xhat = np.subtract(x, mean)
        xhat *= inv_std
        return xhat, inv_std

    def scale_shift(self, xhat: Any, weight: Any, bias: Any) -> Any:
        out = np.multiply(xhat, weight)
        out += bias
        return out

    def batch_norm_backward(
        self, grad: Any, xhat: Any, inv_std: Any, weight: Any, dweight: Any, dbias: Any
    ) -> Any:
        n = grad.shape[0]
        out = np.multiply(xhat, dweight * (1.0 / n))
        np.subtract(grad, out, out=out)
        out -= dbias * (1.0 / n)
        out *= weight * inv_std
        return out

    def layer_norm_backward(self, grad: Any, xhat: Any, inv_std: Any, weight: Any) -> Any:
        g = np.multiply(grad, weight)
        tmp = np.multiply(g, xhat)
        mean_gx = np.mean(tmp, axis=1, keepdims=True)
        mean_g = np.mean(g, axis=1, keepdims=True)
        np.multiply(xhat, mean_gx, out=tmp)
        g -= mean_g
        g -= tmp
        g *= inv_std
        return g

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
        if not (isinstance(p, np.ndarray) and p.shape == g.shape == velocity.shape):
            super().velocity_sgd_update(p, g, velocity, lr=lr, momentum=momentum, nesterov=nesterov)
            return
        step = self._tmp(p)
        velocity *= momentum
        np.multiply(g, lr, out=step)
        velocity -= step
        if nesterov:
            # momentum * velocity - lr * g, the reference's two roundings, into one scratch.
            np.negative(step, out=step)
            step += np.multiply(velocity, momentum, out=self._tmp2(p))
            p += step
        else:
            p += velocity

    def scaled_add(self, target: Any, source: Any, coef: float, mask: Any = None) -> None:
        if not (isinstance(target, np.ndarray) and target.shape == source.shape):
            super().scaled_add(target, source, coef, mask)
            return
        tmp = self._tmp(target)
        if mask is None:
            np.multiply(source, coef, out=tmp)
        else:
            np.multiply(mask, source, out=tmp)
            tmp *= coef
        target += tmp

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
