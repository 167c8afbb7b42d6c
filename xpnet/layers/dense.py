"""The fully-connected layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import Backend
from ..initializers import default_initializer_for, get_initializer
from ..kernels import INPUT_ACTIVATIONS
from ..parameter import Parameter
from ..validation import check_positive_int
from .activations import DEFAULT_LEAKY_ALPHA, normalize_activation
from .base import Layer


class Dense(Layer):
    """Affine map ``y = act(x @ W + b)`` with ``W`` of shape (in, out) and ``b`` of shape (out,).

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    activation : str, optional
        Shorthand for following the layer with an activation (``"relu"``, ``"tanh"``, ...),
        fused into the bias add: any kernel name of an activation layer
        (:data:`xpnet.layers.activations.ACTIVATIONS`).
    init : str, default "auto"
        Weight initializer (see :mod:`xpnet.initializers`); ``"auto"`` picks He for the
        ReLU family and Glorot otherwise, looking at this layer's activation or, when it has
        none, at the activation layer that follows it in a model.
    """

    kind = "Dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str | None = None,
        init: str = "auto",
    ) -> None:
        self.in_features = check_positive_int("Dense in_features", in_features)
        self.out_features = check_positive_int("Dense out_features", out_features)
        self.activation = normalize_activation(activation)
        if init != "auto":
            get_initializer(init)  # fail at construction, not at build
        self.init = init
        self._alpha = DEFAULT_LEAKY_ALPHA if self.activation == "leaky_relu" else 0.0
        self.W: Parameter | None = None
        self.b: Parameter | None = None
        self._x: Any = None
        self._y: Any = None  # pragma: no mutate

    def build(
        self,
        backend: Backend,
        dtype: Any,
        rng: np.random.Generator,
        next_activation: str | None = None,
    ) -> None:
        super().build(backend, dtype, rng, next_activation)
        init = self.init
        if init == "auto":
            init = default_initializer_for(self.activation or next_activation)
        w = get_initializer(init)(rng, self.in_features, self.out_features)
        self.W = Parameter(backend.asarray(w, dtype=dtype), "W")
        self.b = Parameter(
            backend.xp.zeros(self.out_features, dtype=self.W.data.dtype, device=backend.device), "b"
        )

    def _params(self) -> tuple[Parameter, Parameter]:
        if self.W is None or self.b is None:
            raise RuntimeError(
                "xpnet: this Dense layer has no weights yet; put it in a Sequential model "
                "or call layer.build(backend, dtype, rng) first"
            )
        return self.W, self.b

    def forward(self, x: Any, training: bool = False) -> Any:
        W, b = self._params()
        k = self._backend_for(x).kernels
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"xpnet: Dense({self.in_features}, {self.out_features}) expected input of shape "
                f"(n, {self.in_features}), got {tuple(x.shape)}"
            )
        if self.activation in INPUT_ACTIVATIONS:
            # GELU's and SiLU's derivatives need the pre-activation, which is kept instead
            # of the output (as ``_y``, what the backward hands the activation kernel).
            t = k.bias_activation(x @ W.data, b.data, None)
            y = k.activation(t, self.activation, self._alpha)
            self._x, self._y = (x, t) if training else (None, None)
            return y
        y = k.bias_activation(x @ W.data, b.data, self.activation, self._alpha)
        # Only a training forward is followed by backward; inference keeps nothing.
        self._x, self._y = (x, y) if training else (None, None)
        return y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        W, b = self._params()
        if self._x is None:
            raise self._not_trained("input")
        k = self._backend_for(grad).kernels
        if self.activation is not None:
            grad = k.activation_backward(grad, self._y, self.activation, self._alpha)
        # Overwrite last step's gradient buffers (the optimizer has consumed them) rather
        # than allocate new ones every batch.
        W.grad = k.matmul(self._x.T, grad, out=W.grad)
        b.grad = k.sum_rows(grad, out=b.grad)
        return grad @ W.data.T if need_input_grad else None

    def parameters(self) -> list[Parameter]:
        return [p for p in (self.W, self.b) if p is not None]

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "activation": self.activation,
            "init": self.init,
        }

    def output_features(self, in_features: int | None) -> int | None:
        return self.out_features

    def __repr__(self) -> str:
        extra = f", activation={self.activation!r}" if self.activation else ""
        extra += f", init={self.init!r}" if self.init != "auto" else ""
        return f"Dense({self.in_features}, {self.out_features}{extra})"
