"""The portable reference kernels, written once against the array namespace.

Every backend runs these unless it registers a faster version of a method; the faster
versions are tested against these.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import array_api_compat

from ..random import keep_mask
from .special import erfc

__all__ = ["ACTIVATION_KERNELS", "INPUT_ACTIVATIONS", "PortableKernels"]

#: The activations the kernels implement, each with whether its kernels take a slope
#: ``alpha``. Activation ``name`` is the method pair ``name(x[, alpha])`` /
#: ``name_backward(grad, y[, alpha])``; :meth:`PortableKernels.activation` dispatches by name.
ACTIVATION_KERNELS: dict[str, bool] = {
    "relu": False,
    "leaky_relu": True,
    "sigmoid": False,
    "tanh": False,
    "softmax": False,
    "gelu": False,
    "gelu_tanh": False,
    "silu": False,
}

#: The activations whose backward takes the *input* ``x`` instead of the output: GELU and
#: SiLU are not monotonic, so their derivative is no function of the output. A layer (or
#: Dense's fused path) keeps the pre-activation for these and passes it as the second
#: argument of ``name_backward``.
INPUT_ACTIVATIONS: frozenset[str] = frozenset({"gelu", "gelu_tanh", "silu"})

_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)
_SQRT_2_OVER_PI = 0.7978845608028654  # sqrt(2 / pi)
_GELU_CUBIC = 0.044715


class PortableKernels:
    """Reference implementations of the element-wise hot spots of training.

    One method pair per activation: ``relu(x)`` / ``relu_backward(grad, y)``,
    ``leaky_relu(x, alpha)`` / ``leaky_relu_backward(grad, y, alpha)``, ``sigmoid``, ``tanh``
    and ``softmax`` likewise. Each backward takes the activation's *output* ``y``: every
    derivative here is a function of it (for leaky ReLU with ``alpha >= 0``, ``y > 0`` exactly
    where the input was), so the input need not be kept.

    Adding an activation means its layer class (:mod:`xpnet.layers.activations`) and its
    kernels: a method pair here, the reference every faster kernel set is tested against,
    with an entry in :data:`ACTIVATION_KERNELS`; faster kernel sets may override the pair.

    Parameters
    ----------
    xp : module, optional
        The array namespace these kernels run on (what :func:`~xpnet.kernels.get_kernels`
        passes). Without it each call looks the namespace up from its arrays, so one instance
        serves every backend (slower; for tests and one-off use).
    """

    name = "portable"
    #: Whether :meth:`l2_velocity_sgd_update` and :meth:`l2_adam_update` are one fused pass
    #: (the compiled kernels); where they are the reference's copy and two passes, the
    #: estimators keep adding the L2 term as a gradient hook instead.
    fused_l2 = False

    def __init__(self, xp: ModuleType | None = None) -> None:
        self.xp = xp

    def _ns(self, *arrays: Any) -> Any:
        return self.xp if self.xp is not None else array_api_compat.array_namespace(*arrays)

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
        return _into(self._ns(a).sum(a, axis=0), out)

    # ------------------------------------------------------------------ activations
    def relu(self, x: Any) -> Any:
        """``max(x, 0)`` (NaN passes through)."""
        return self._ns(x).maximum(x, 0.0)

    def relu_backward(self, grad: Any, y: Any) -> Any:
        """``grad`` where the output ``y`` is positive, else 0."""
        return self._ns(grad, y).where(y > 0, grad, 0.0)

    def leaky_relu(self, x: Any, alpha: float) -> Any:
        """``x`` where positive, else ``alpha * x`` (``0 <= alpha < 1``)."""
        return self._ns(x).where(x > 0, x, alpha * x)

    def leaky_relu_backward(self, grad: Any, y: Any, alpha: float) -> Any:
        """``grad`` where the output ``y`` is positive, else ``alpha * grad``."""
        return self._ns(grad, y).where(y > 0, grad, alpha * grad)

    def sigmoid(self, x: Any) -> Any:
        """``1 / (1 + exp(-x))`` in two branches, so neither can overflow."""
        xp = self._ns(x)
        # exp(-|x|) <= 1, so neither branch can overflow.
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def sigmoid_backward(self, grad: Any, y: Any) -> Any:
        """``grad * y * (1 - y)``."""
        return grad * y * (1.0 - y)

    def tanh(self, x: Any) -> Any:
        """``tanh(x)``."""
        return self._ns(x).tanh(x)

    def tanh_backward(self, grad: Any, y: Any) -> Any:
        """``grad * (1 - y * y)``."""
        return grad * (1.0 - y * y)

    def softmax(self, x: Any) -> Any:
        """Row-wise softmax of a 2-D array, shifted by the row max so exp cannot overflow."""
        xp = self._ns(x)
        e = xp.exp(x - xp.max(x, axis=1, keepdims=True))
        return e / xp.sum(e, axis=1, keepdims=True)

    def softmax_backward(self, grad: Any, y: Any) -> Any:
        """Jacobian-vector product of softmax: ``y * (grad - <grad, y>)``, row by row."""
        xp = self._ns(grad, y)
        return y * (grad - xp.sum(grad * y, axis=1, keepdims=True))

    def gelu(self, x: Any) -> Any:
        """``x * Phi(x)``, ``Phi(x) = erfc(-x / sqrt 2) / 2`` the standard normal CDF (the
        erfc form keeps Phi's relative accuracy in the far negative tail)."""
        return x * (0.5 * erfc(x * -_SQRT_HALF))

    def gelu_backward(self, grad: Any, x: Any) -> Any:
        """``grad * (Phi(x) + x phi(x))`` at the *input* ``x``, ``phi`` the normal density."""
        xp = self._ns(grad, x)
        cdf = 0.5 * erfc(x * -_SQRT_HALF)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * (x * x))
        return grad * (cdf + x * pdf)

    def gelu_tanh(self, x: Any) -> Any:
        """``x / 2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, PyTorch's ``"tanh"`` GELU."""
        xp = self._ns(x)
        t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * (x * x * x)))
        return 0.5 * x * (1.0 + t)

    def gelu_tanh_backward(self, grad: Any, x: Any) -> Any:
        """``grad * (1/2 (1 + t) + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2))`` at input
        ``x``, with ``t`` the tanh of the forward."""
        xp = self._ns(grad, x)
        x2 = x * x
        t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * (x2 * x)))
        du = _SQRT_2_OVER_PI * (1.0 + (3.0 * _GELU_CUBIC) * x2)
        return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)

    def silu(self, x: Any) -> Any:
        """``x * sigmoid(x)`` (the sigmoid in its overflow-free form)."""
        return x * self.sigmoid(x)

    def silu_backward(self, grad: Any, x: Any) -> Any:
        """``grad * s (1 + x (1 - s))`` at the *input* ``x``, ``s = sigmoid(x)``."""
        s = PortableKernels.sigmoid(self, x)
        return grad * (s * (1.0 + x * (1.0 - s)))

    # ------------------------------------------------------------------ normalisation
    def normalize(self, x: Any, mean: Any, var: Any, eps: float) -> tuple[Any, Any]:
        """``(x - mean) / sqrt(var + eps)`` and ``1 / sqrt(var + eps)`` (the latter in the
        shape of ``var``; ``mean`` and ``var`` broadcast against ``x``)."""
        xp = self._ns(x, mean, var)
        inv_std = 1.0 / xp.sqrt(var + eps)
        return (x - mean) * inv_std, inv_std

    def scale_shift(self, xhat: Any, weight: Any, bias: Any) -> Any:
        """``xhat * weight + bias`` (weight and bias of the feature axis)."""
        return xhat * weight + bias

    def batch_norm_backward(
        self, grad: Any, xhat: Any, inv_std: Any, weight: Any, dweight: Any, dbias: Any
    ) -> Any:
        """d(loss)/d(x) of a training BatchNorm from its output gradient.

        ``dweight = sum_rows(grad * xhat)`` and ``dbias = sum_rows(grad)`` are the parameter
        gradients already formed; ``dx = w inv_std (grad - dbias / n - xhat dweight / n)``.
        """
        n = grad.shape[0]
        return (weight * inv_std) * (grad - dbias * (1.0 / n) - xhat * (dweight * (1.0 / n)))

    def layer_norm_backward(self, grad: Any, xhat: Any, inv_std: Any, weight: Any) -> Any:
        """d(loss)/d(x) of LayerNorm: with ``g = grad * weight`` per row,
        ``dx = inv_std (g - mean(g) - xhat mean(g xhat))`` (``inv_std`` of shape (n, 1))."""
        xp = self._ns(grad, xhat, inv_std, weight)
        g = grad * weight
        mean_g = xp.mean(g, axis=1, keepdims=True)
        mean_gx = xp.mean(g * xhat, axis=1, keepdims=True)
        return inv_std * (g - mean_g - xhat * mean_gx)

    def activation(self, x: Any, act: str, alpha: float = 0.0) -> Any:
        """Activation ``act`` (a name of :data:`ACTIVATION_KERNELS`) of ``x``, by its method."""
        fn = getattr(self, _checked(act))
        return fn(x, alpha) if ACTIVATION_KERNELS[act] else fn(x)

    def activation_backward(self, grad: Any, y: Any, act: str, alpha: float = 0.0) -> Any:
        """The backward of activation ``act`` at output ``y`` (at the input, for the
        activations of :data:`INPUT_ACTIVATIONS`), by its method."""
        fn = getattr(self, _checked(act) + "_backward")
        return fn(grad, y, alpha) if ACTIVATION_KERNELS[act] else fn(grad, y)

    def bias_activation(self, z: Any, b: Any, act: str | None, alpha: float = 0.0) -> Any:
        """``act(z + b)`` (``act`` None: linear); ``z`` (the fresh product ``x @ W``) may be
        overwritten. Dense's fused path."""
        z = z + b
        return z if act is None else self.activation(z, act, alpha)

    def log_softmax_with_probs(self, logits: Any) -> tuple[Any, Any]:
        """Row-wise ``log softmax`` and ``softmax``, shifted by the row max so exp is safe."""
        xp = self._ns(logits)
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        return shifted - xp.log(s), e / s

    # ------------------------------------------------------------------ dropout, clipping
    def dropout(
        self, x: Any, p: float, seed: int, step: int, row_offset: int = 0
    ) -> tuple[Any, Any]:
        """Inverted dropout: ``(x * mask, mask)``, ``mask`` being ``1 / (1 - p)`` where the
        counter-based hash of ``(seed, step, row_offset + row, column)`` keeps the unit
        (:func:`xpnet.random.keep_mask`) and 0 elsewhere, in ``x``'s dtype, on its device.

        A faster version must keep exactly these bits: the mask is the same on every backend.
        """
        xp = self._ns(x)
        keep = keep_mask(x, p, seed, step, row_offset, xp=xp)
        mask = xp.astype(keep, x.dtype) * (1.0 / (1.0 - p))
        return x * mask, mask

    def dropout_backward(self, grad: Any, mask: Any) -> Any:
        """``grad * mask``, the mask :meth:`dropout` returned."""
        return grad * mask

    def clip_grad_norm(self, grads: Sequence[Any], max_norm: float, eps: float) -> None:
        """Scale ``grads`` in place by ``min(1, max_norm / (norm + eps))``, ``norm`` the L2
        norm of all of them together (:func:`xpnet.clipping.clip_grad_norm`).

        The norm and the coefficient stay 0-d arrays on the device: nothing is read back.
        """
        if not grads:
            return
        xp = self._ns(*grads)
        total = xp.sum(grads[0] * grads[0])
        for g in grads[1:]:
            total = total + xp.sum(g * g)
        coef = max_norm / (xp.sqrt(total) + eps)
        # Clamped to 1 on the device: a branch on its value would read it back.
        coef = xp.where(coef < 1.0, coef, xp.ones_like(coef))
        for g in grads:
            g *= coef

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
        xp = self._ns(p, g, m, v)
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
        """scikit-learn's SGD in place: ``velocity = momentum velocity - lr g``; then
        ``p += momentum velocity - lr g`` with Nesterov, else ``p += velocity``."""
        velocity *= momentum
        velocity -= lr * g
        if nesterov:
            p += momentum * velocity - lr * g
        else:
            p += velocity

    def scaled_add(self, target: Any, source: Any, coef: float, mask: Any = None) -> None:
        """``target += coef * (mask * source)`` in place (``mask`` of 0s and 1s, or None for
        all of ``source``): a weight penalty's gradient added to the flat gradient."""
        target += coef * (source if mask is None else mask * source)

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
        """scikit-learn's L2 term and SGD step over a flat buffer in one call.

        :meth:`velocity_sgd_update` with the gradient ``g + coef * p`` on each ``(start,
        stop)`` of ``segments`` (the weights) and ``g`` elsewhere; ``g`` itself is left as it
        was. Returns the penalty's ``sum(p[start:stop] ** 2)`` over the segments, taken
        before the step, as a 0-d array.
        """
        squares, grad = self._l2_gradient(p, g, segments, coef)
        self.velocity_sgd_update(p, grad, velocity, lr=lr, momentum=momentum, nesterov=nesterov)
        return squares

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
        """scikit-learn's L2 term and Adam step over a flat buffer in one call: as
        :meth:`l2_velocity_sgd_update`, with :meth:`adam_update` as the step."""
        squares, grad = self._l2_gradient(p, g, segments, coef)
        self.adam_update(
            p, grad, m, v, beta1=beta1, beta2=beta2, step_size=step_size, root_bc2=root_bc2,
            eps=eps, step=step,
        )  # fmt: skip
        return squares

    def _l2_gradient(
        self, p: Any, g: Any, segments: Sequence[tuple[int, int]], coef: Any
    ) -> tuple[Any, Any]:
        # The reference: a copy of the gradient with the term added segment by segment, in
        # the order and with the roundings of ``scaled_add`` on each weight.
        xp = self._ns(p, g)
        grad = xp.asarray(g, copy=True)
        squares = xp.zeros((), dtype=p.dtype, device=p.device)
        for start, stop in _checked_segments(segments, p.shape[0]):
            w = p[start:stop]
            squares = squares + xp.vecdot(w, w)
            grad[start:stop] += coef * w
        return squares, grad

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
        xp = self._ns(p, g, square_avg)
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


def _checked(act: str) -> str:
    if act not in ACTIVATION_KERNELS:
        valid = ", ".join(ACTIVATION_KERNELS)
        raise ValueError(f"xpnet: unknown activation {act!r}; the kernels implement: {valid}")
    return act


def _into(result: Any, out: Any) -> Any:
    if out is None or out.shape != result.shape or out.dtype != result.dtype:
        return result
    out[...] = result
    return out


def _checked_segments(segments: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """``segments`` as ``(start, stop)`` ints, checked to be in order, disjoint and within a
    flat buffer of ``size`` elements (the compiled kernels index without bounds checks)."""
    out: list[tuple[int, int]] = []
    end = 0
    for seg in segments:
        start, stop = (int(i) for i in seg)
        if not end <= start <= stop <= size:
            raise ValueError(
                f"xpnet: penalty segments must be ordered, disjoint (start, stop) pairs within "
                f"[0, {size}]; got {list(segments)}"
            )
        out.append((start, stop))
        end = stop
    return out
