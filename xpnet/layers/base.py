"""The layer interface every xpnet layer implements."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..backend import Backend
from ..parameter import Parameter


class Layer:
    """Base class of all layers.

    A layer maps a batch ``x`` of shape ``(n, in_features)`` to ``(n, out_features)`` in
    :meth:`forward`, remembers what its gradient needs, and in :meth:`backward` turns the
    gradient of the loss with respect to its output into the gradient with respect to its
    input, filling ``p.grad`` for each of its :meth:`parameters` on the way.
    """

    #: Name under which the layer is saved in checkpoints and shown in summaries.
    kind: ClassVar[str] = "Layer"

    def build(
        self,
        backend: Backend,
        dtype: Any,
        rng: np.random.Generator,
        next_activation: str | None = None,
    ) -> None:
        """Create the layer's parameters on ``backend`` (layers without parameters: no-op)."""

    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        """Return d(loss)/d(input) from d(loss)/d(output); fill ``p.grad`` for own parameters.

        ``need_input_grad=False`` lets the first layer skip a product whose result nobody
        reads (for a 784-wide input that is a fifth of the batch's matrix work).
        """
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        return []

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    def output_features(self, in_features: int | None) -> int | None:
        """Width of the output for a given input width (``None``: unknown)."""
        return in_features

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
