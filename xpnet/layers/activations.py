"""Element-wise activations and the softmax layer.

Each activation keeps only its output: every derivative here is a function of it, except
for GELU and SiLU (kernel names in :data:`~xpnet.kernels.INPUT_ACTIVATIONS`), which are not
monotonic and keep their input instead. The
maths lives in :mod:`xpnet.kernels` (one method pair per activation), shared with
:class:`~xpnet.layers.Dense`'s fused activation, so it is written once.

Adding an activation: a subclass of ``_Activation`` here that declares its kernel ``name`` and
calls its kernel pair in ``_apply`` / ``_derivative``, its pair in
:class:`~xpnet.kernels.PortableKernels` (plus faster versions where wanted), and an entry in
:data:`ACTIVATIONS`, through which ``Dense(..., activation=name)`` finds it too.
"""

from __future__ import annotations

from typing import Any

from ..kernels import INPUT_ACTIVATIONS, PortableKernels
from ..validation import check_number
from .base import Layer


class _Activation(Layer):
    #: The kernel name: ``Dense(activation=name)`` and the kernels' method pair.
    name = ""
    alpha = 0.0

    def _apply(self, k: PortableKernels, x: Any) -> Any:
        return k.activation(x, self.name, self.alpha)

    def _derivative(self, k: PortableKernels, grad: Any, y: Any) -> Any:
        return k.activation_backward(grad, y, self.name, self.alpha)

    def forward(self, x: Any, training: bool = False) -> Any:
        y = self._apply(self._backend_for(x).kernels, x)
        # Only a training forward is followed by backward; inference keeps nothing. The
        # derivative is a function of the output, or of the input for GELU and SiLU.
        kept = x if self.name in INPUT_ACTIVATIONS else y
        self._y = kept if training else None
        return y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        y = getattr(self, "_y", None)
        if y is None:
            raise self._not_trained("output")
        return self._derivative(self._backend_for(grad).kernels, grad, y)


class ReLU(_Activation):
    """max(x, 0); derivative 1 where the output is positive, else 0."""

    kind = "ReLU"
    name = "relu"

    def _apply(self, k: PortableKernels, x: Any) -> Any:
        return k.relu(x)

    def _derivative(self, k: PortableKernels, grad: Any, y: Any) -> Any:
        return k.relu_backward(grad, y)


class LeakyReLU(_Activation):
    """x for x > 0, ``alpha * x`` otherwise."""

    kind = "LeakyReLU"
    name = "leaky_relu"

    def _apply(self, k: PortableKernels, x: Any) -> Any:
        return k.leaky_relu(x, self.alpha)

    def _derivative(self, k: PortableKernels, grad: Any, y: Any) -> Any:
        return k.leaky_relu_backward(grad, y, self.alpha)

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = check_number("LeakyReLU alpha", alpha, low=0.0, high=1.0, high_open=True)

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow for large ``|x|``."""

    kind = "Sigmoid"
    name = "sigmoid"

    def _apply(self, k: PortableKernels, x: Any) -> Any:
        return k.sigmoid(x)

    def _derivative(self, k: PortableKernels, grad: Any, y: Any) -> Any:
        return k.sigmoid_backward(grad, y)


class Tanh(_Activation):
    """tanh(x); derivative 1 - tanh(x)^2."""

    kind = "Tanh"
    name = "tanh"

    def _apply(self, k: PortableKernels, x: Any) -> Any:
        return k.tanh(x)

    def _derivative(self, k: PortableKernels, grad: Any, y: Any) -> Any:
        return k.tanh_backward(grad, y)


class Softmax(_Activation):
    """Row-wise softmax, shifted by the row maximum so exp never overflows.

    For training a classifier prefer a final linear layer with
    :class:`~xpnet.losses.SoftmaxCrossEntropy`, which fuses the two stably; this layer is for
    models that must output probabilities.
    """

    kind = "Softmax"
    name = "softmax"

    def _apply(self, k: PortableKernels, x: Any) -> Any:
        return k.softmax(x)

    def _derivative(self, k: PortableKernels, grad: Any, y: Any) -> Any:
        return k.softmax_backward(grad, y)


_GELU_APPROXIMATIONS = {"none": "gelu", "tanh": "gelu_tanh"}


class GELU(_Activation):
    """Gaussian error linear unit, ``torch.nn.GELU``: ``x * Phi(x)``.

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
        ``"none"``: ``Phi`` is the standard normal CDF, through an error function written in
        the array namespace (:func:`xpnet.kernels.erf`, float64-accurate); ``"tanh"``:
        ``x / 2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``. ``Dense(activation="gelu")`` is
        the first, ``activation="gelu_tanh"`` the second.
    """

    kind = "GELU"
    name = "gelu"

    def __init__(self, approximate: str = "none") -> None:
        if not isinstance(approximate, str) or approximate not in _GELU_APPROXIMATIONS:
            raise ValueError(
                f"xpnet: GELU approximate must be 'none' or 'tanh', got {approximate!r}"
            )
        self.approximate = approximate
        self.name = _GELU_APPROXIMATIONS[approximate]

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


class SiLU(_Activation):
    """Sigmoid linear unit (swish), ``torch.nn.SiLU``: ``x * sigmoid(x)``."""

    kind = "SiLU"
    name = "silu"


#: The one registry of activations: kernel name -> layer class. ``Dense(activation=...)``,
#: :func:`normalize_activation` and the model's look-ahead at the next layer all use it.
#: ``"gelu_tanh"`` is ``GELU(approximate="tanh")``, so its class is GELU as well.
ACTIVATIONS: dict[str, type[_Activation]] = {
    **{cls.name: cls for cls in (ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, GELU, SiLU)},
    "gelu_tanh": GELU,
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
