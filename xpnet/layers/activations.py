"""Element-wise activations and the softmax layer.

Each activation keeps only its output: every derivative here is a function of it. The
maths lives in :mod:`xpnet.kernels`, shared with :class:`~xpnet.layers.Dense`'s fused
activation, so it is written once.
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace_of
from ..kernels import get_kernels
from .base import Layer


class _Activation(Layer):
    name = ""
    alpha = 0.0

    def forward(self, x: Any, training: bool = False) -> Any:
        self._y = get_kernels(namespace_of(x)).activation(x, self.name, self.alpha)
        return self._y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        xp = namespace_of(grad, self._y)
        return get_kernels(xp).activation_backward(grad, self._y, self.name, self.alpha)


class ReLU(_Activation):
    """max(x, 0); derivative 1 where the output is positive, else 0."""

    kind = "ReLU"
    name = "relu"


class LeakyReLU(_Activation):
    """x for x > 0, ``alpha * x`` otherwise."""

    kind = "LeakyReLU"
    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"xpnet: LeakyReLU alpha must be a number, got {alpha!r}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"xpnet: LeakyReLU alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow for large ``|x|``."""

    kind = "Sigmoid"
    name = "sigmoid"


class Tanh(_Activation):
    """tanh(x); derivative 1 - tanh(x)^2."""

    kind = "Tanh"
    name = "tanh"


class Softmax(_Activation):
    """Row-wise softmax, shifted by the row maximum so exp never overflows.

    For training a classifier prefer a final linear layer with
    :class:`~xpnet.losses.SoftmaxCrossEntropy`, which fuses the two stably; this layer is for
    models that must output probabilities.
    """

    kind = "Softmax"
    name = "softmax"


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}

#: alpha of the leaky ReLU that ``Dense(..., activation="leaky_relu")`` uses.
DEFAULT_LEAKY_ALPHA = 0.01


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
