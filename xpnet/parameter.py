"""A trainable array together with its gradient."""

from __future__ import annotations

from typing import Any


class Parameter:
    """A trainable array owned by a layer.

    Attributes
    ----------
    data : array
        The values, on the model's backend. Optimizers update it in place, so views of it
        (e.g. into one flat buffer) stay valid.
    grad : array or None
        The gradient of the loss with respect to ``data``, filled by ``backward``.
    name : str
        ``"W"`` or ``"b"`` for a dense layer; used in summaries and checkpoints.
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.grad: Any = None
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.data.shape:
            n *= int(d)
        return n

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.data.dtype})"
