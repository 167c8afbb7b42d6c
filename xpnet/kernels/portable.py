"""The portable reference kernels, written once against the array namespace.

Every backend runs these unless it registers a faster version of a method; the faster
versions are tested against these.
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace_of


class PortableKernels:
    """Reference implementations of the element-wise hot spots of training.

    Activations are named ``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"`` and
    ``"softmax"``. Each backward takes the activation's *output* ``y``: every derivative
    here is a function of it (for leaky ReLU with ``alpha >= 0``, ``y > 0`` exactly where
    the input was), so the input need not be kept.
    """

    name = "portable"

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        """``a @ b``, written into ``out`` (a previous result of the same shape and dtype, no
        longer needed) when given one.

        Writing into ``out`` costs a copy here, but keeps a gradient that is a view into a
        model's flat gradient buffer that view, so every backend gets the optimizers' flat
        path (see :class:`~xpnet.parameter.ParameterBuffer`).
        """
        return _into(a @ b, out)

    def sum_rows(self, a: Any, out: Any = None) -> Any:
        """Column sums of a 2-D array (the bias gradient); ``out`` as in :meth:`matmul`."""
        return _into(namespace_of(a).sum(a, axis=0), out)

    def activation(self, x: Any, act: str, alpha: float = 0.0) -> Any:
        xp = namespace_of(x)
        if act == "relu":
            return xp.maximum(x, 0.0)
        if act == "leaky_relu":
            return xp.where(x > 0, x, alpha * x)
        if act == "sigmoid":
            # exp(-|x|) <= 1, so neither branch can overflow.
            e = xp.exp(-xp.abs(x))
            return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        if act == "tanh":
            return xp.tanh(x)
        if act == "softmax":
            e = xp.exp(x - xp.max(x, axis=1, keepdims=True))
            return e / xp.sum(e, axis=1, keepdims=True)
        raise ValueError(f"xpnet: unknown activation {act!r}")

    def activation_backward(self, grad: Any, y: Any, act: str, alpha: float = 0.0) -> Any:
        xp = namespace_of(grad, y)
        if act == "relu":
            return xp.where(y > 0, grad, 0.0)
        if act == "leaky_relu":
            return xp.where(y > 0, grad, alpha * grad)
        if act == "sigmoid":
            return grad * y * (1.0 - y)
        if act == "tanh":
            return grad * (1.0 - y * y)
        if act == "softmax":
            # Jacobian-vector product of softmax: y * (g - <g, y>), row by row.
            return y * (grad - xp.sum(grad * y, axis=1, keepdims=True))
        raise ValueError(f"xpnet: unknown activation {act!r}")

    def bias_activation(self, z: Any, b: Any, act: str | None, alpha: float = 0.0) -> Any:
        """``act(z + b)``; ``z`` (the fresh product ``x @ W``) may be overwritten."""
        z = z + b
        return z if act is None else self.activation(z, act, alpha)

    def log_softmax_with_probs(self, logits: Any) -> tuple[Any, Any]:
        """Row-wise ``log softmax`` and ``softmax``, shifted by the row max so exp is safe."""
        xp = namespace_of(logits)
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        return shifted - xp.log(s), e / s

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
        """One Adam update in place: ``m, v`` moments, then
        ``p -= step_size * m / (sqrt(v) / root_bc2 + eps)``."""
        xp = namespace_of(p, g, m, v)
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        p -= step_size * (m / (xp.sqrt(v) / root_bc2 + eps))

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
        """``buf = momentum buf + (1 - dampening) g``; ``p -= lr (g + momentum buf)`` with
        Nesterov, else ``p -= lr buf`` (all in place)."""
        buf *= momentum
        buf += (1.0 - dampening) * g
        p -= lr * (g + momentum * buf) if nesterov else lr * buf

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
        """One RMSProp update in place: ``square_avg = alpha square_avg + (1 - alpha) g^2``;
        centered when ``grad_avg`` is given (its running mean of ``g`` is subtracted under the
        root); ``d = sqrt(...) + eps``; with ``momentum_buffer``, ``buf = momentum buf + g / d``
        and ``p -= lr buf``, else ``p -= lr g / d``."""
        xp = namespace_of(p, g, square_avg)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * (g * g)
        if grad_avg is not None:
            grad_avg *= alpha
            grad_avg += (1.0 - alpha) * g
            denom = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            denom = xp.sqrt(square_avg) + eps
        if momentum_buffer is not None:
            momentum_buffer *= momentum
            momentum_buffer += g / denom
            p -= lr * momentum_buffer
        else:
            p -= lr * (g / denom)


def _into(result: Any, out: Any) -> Any:
    if out is None or out.shape != result.shape or out.dtype != result.dtype:
        return result
    out[...] = result
    return out
