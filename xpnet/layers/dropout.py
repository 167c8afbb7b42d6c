"""Inverted dropout with masks drawn from the host generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import backend_of, namespace_of
from .base import Layer

# Masks drawn per transfer: 4 Mi elements (16 MiB as float32) keeps the host copy and the
# device chunk small while cutting the transfers of an MNIST epoch from one per batch to a few.
_PLAN_ELEMENTS = 1 << 22


class Dropout(Layer):
    """Zero each unit with probability ``p`` during training, scaling survivors by 1/(1-p).

    The mask is drawn from the model's host ``numpy.random.Generator`` and moved to the
    device, so a given seed drops the same units on every backend. At inference the layer is
    the identity.

    Inside ``fit`` the masks of many batches are drawn and moved at once (see
    :meth:`plan_epoch`): a copy from ordinary host memory makes the host wait for the GPU,
    and once per batch that wait would serialise the whole training loop.
    """

    kind = "Dropout"
    stochastic = True

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"xpnet: Dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng: np.random.Generator | None = None
        self._mask: Any = None
        self._plan: tuple[int, int] | None = None  # (rows left to draw, batch size)
        self._chunk: Any = None
        self._pos = 0

    def plan_epoch(self, rows: int, batch_size: int) -> None:
        """Announce ``rows`` rows of training forwards in batches of ``batch_size``.

        Masks are then drawn lazily, in forward order, in chunks of whole batches, so the
        generator is consumed the same way on every backend and the chunk never outlives the
        epoch (a checkpoint at the epoch's end holds the generator state exactly).
        """
        self._plan = (int(rows), int(batch_size))
        self._chunk = None
        self._pos = 0

    def end_epoch(self) -> None:
        """Drop the planned masks (the next forwards draw per call again)."""
        self._plan = None
        self._chunk = None

    def _draw(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.rng is None:
            raise RuntimeError(
                "xpnet: Dropout has no random generator; put it in a Sequential model "
                "(which hands it the model's generator) or set layer.rng"
            )
        return self.rng.random(shape, dtype=np.float32) >= self.p

    def _scaled(self, keep: np.ndarray, like: Any) -> Any:
        xp = namespace_of(like)
        return xp.astype(backend_of(like).asarray(keep), like.dtype) * (1.0 / (1.0 - self.p))

    def _planned_mask(self, x: Any) -> Any:
        rows, width = int(x.shape[0]), int(x.shape[1])
        chunk = self._chunk
        if chunk is None or self._pos + rows > int(chunk.shape[0]) or chunk.shape[1] != width:
            if self._plan is None or self._plan[0] < rows:
                return None
            left, batch = self._plan
            per_chunk = max(batch, (_PLAN_ELEMENTS // max(width, 1)) // batch * batch)
            n = min(left, per_chunk)
            self._chunk = chunk = self._scaled(self._draw((n, width)), x)
            self._plan = (left - n, batch)
            self._pos = 0
        mask = chunk[self._pos : self._pos + rows, ...]
        self._pos += rows
        return mask

    def forward(self, x: Any, training: bool = False) -> Any:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        mask = self._planned_mask(x) if self._plan is not None and x.ndim == 2 else None
        self._mask = self._scaled(self._draw(tuple(x.shape)), x) if mask is None else mask
        return x * self._mask

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        return grad if self._mask is None else grad * self._mask

    def config(self) -> dict[str, Any]:
        return {"p": self.p}
