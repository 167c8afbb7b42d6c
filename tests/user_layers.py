"""A user-defined layer for the tests of what xpnet does with layers it does not ship."""

from __future__ import annotations

from typing import Any

from xpnet.backend import namespace_of
from xpnet.layers import Layer
from xpnet.parameter import Parameter


class ScaleLayer(Layer):
    """``x * w``, one parameter ``w`` of ``n`` values drawn from the build's generator."""

    kind = "TestScale"

    def __init__(self, n: int) -> None:
        self.n = n
        self.w: Parameter | None = None

    def build(self, backend, dtype, rng, next_activation=None) -> None:
        super().build(backend, dtype, rng, next_activation)
        self.w = Parameter(backend.asarray(rng.uniform(0.5, 1.5, size=self.n), dtype=dtype), "w")

    def forward(self, x, training=False):
        if training:
            self._x = x
        return x * self.w.data

    def backward(self, grad, need_input_grad=True):
        xp = namespace_of(grad)
        self.w.grad[...] = xp.sum(grad * self._x, axis=0)
        return grad * self.w.data if need_input_grad else None

    def parameters(self) -> list[Parameter]:
        return [] if self.w is None else [self.w]

    def config(self) -> dict[str, Any]:
        return {"n": self.n}
