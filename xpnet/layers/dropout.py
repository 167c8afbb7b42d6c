"""Inverted dropout with masks drawn from the host generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import backend_of, namespace_of
from .base import Layer


class Dropout(Layer):
    """Zero each unit with probability ``p`` during training, scaling survivors by 1/(1-p).

    The mask is drawn from the model's host ``numpy.random.Generator`` and moved to the
    device, so a given seed drops the same units on every backend. At inference the layer is
    the identity.
    """

    kind = "Dropout"

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"xpnet: Dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng: np.random.Generator | None = None
        self._mask: Any = None

    def forward(self, x: Any, training: bool = False) -> Any:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        xp = namespace_of(x)
        if self.rng is None:
            raise RuntimeError(
                "xpnet: Dropout has no random generator; put it in a Sequential model "
                "(which hands it the model's generator) or set layer.rng"
            )
        keep = self.rng.random(tuple(x.shape), dtype=np.float32) >= self.p
        self._mask = xp.astype(backend_of(x).asarray(keep), x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        return grad if self._mask is None else grad * self._mask

    def config(self) -> dict[str, Any]:
        return {"p": self.p}
