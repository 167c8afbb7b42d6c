"""Element-wise activations and the softmax layer.

Each activation caches what its derivative needs (the output where the derivative is a
function of it, the input otherwise) and nothing more.
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace_of
from .base import Layer


class ReLU(Layer):
    """max(x, 0); derivative 1 where the output is positive, else 0."""

    kind = "ReLU"
    name = "relu"

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = namespace_of(x)
        self._y = xp.maximum(x, 0.0)
        return self._y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        xp = namespace_of(grad, self._y)
        return xp.where(self._y > 0, grad, 0.0)


class LeakyReLU(Layer):
    """x for x > 0, ``alpha * x`` otherwise."""

    kind = "LeakyReLU"
    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        alpha = float(alpha)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"xpnet: LeakyReLU alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = namespace_of(x)
        self._positive = x > 0
        return xp.where(self._positive, x, self.alpha * x)

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        xp = namespace_of(grad)
        return xp.where(self._positive, grad, self.alpha * grad)

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Sigmoid(Layer):
    """1 / (1 + exp(-x)), computed without overflow for large ``|x|``."""

    kind = "Sigmoid"
    name = "sigmoid"

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = namespace_of(x)
        # exp(-|x|) is at most 1, so neither branch can overflow.
        e = xp.exp(-xp.abs(x))
        self._y = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return self._y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        return grad * self._y * (1.0 - self._y)


class Tanh(Layer):
    """tanh(x); derivative 1 - tanh(x)^2."""

    kind = "Tanh"
    name = "tanh"

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = namespace_of(x)
        self._y = xp.tanh(x)
        return self._y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        return grad * (1.0 - self._y * self._y)


class Softmax(Layer):
    """Row-wise softmax, shifted by the row maximum so exp never overflows.

    For training a classifier prefer a final linear layer with
    :class:`~xpnet.losses.SoftmaxCrossEntropy`, which fuses the two stably; this layer is for
    models that must output probabilities.
    """

    kind = "Softmax"
    name = "softmax"

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = namespace_of(x)
        z = x - xp.max(x, axis=1, keepdims=True)
        e = xp.exp(z)
        self._y = e / xp.sum(e, axis=1, keepdims=True)
        return self._y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        xp = namespace_of(grad, self._y)
        # Jacobian-vector product of softmax: y * (g - <g, y>), row by row.
        return self._y * (grad - xp.sum(grad * self._y, axis=1, keepdims=True))


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}


def normalize_activation(name: str | None) -> str | None:
    """Canonical activation name (``None`` for linear), or ValueError naming the valid ones."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValueError(f"xpnet: activation must be a name (str) or None, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    if key in ("linear", "identity", "none", ""):
        return None
    if key == "leakyrelu":
        key = "leaky_relu"
    if key not in ACTIVATIONS:
        valid = ", ".join([*sorted(ACTIVATIONS), "linear"])
        raise ValueError(f"xpnet: unknown activation {name!r}; valid activations are: {valid}")
    return key


def make_activation(name: str | None) -> Layer | None:
    """A fresh activation layer for ``name`` (``None`` for linear)."""
    key = normalize_activation(name)
    return None if key is None else ACTIVATIONS[key]()
