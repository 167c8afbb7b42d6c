"""A trainable array together with its gradient, and the flat buffer parameters can share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backend import namespace_of


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
    buffer : ParameterBuffer or None
        The flat buffer whose views ``data`` and ``grad`` are, if a model laid them out so.
    """

    __slots__ = ("buffer", "data", "grad", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.grad: Any = None
        self.name = name
        self.buffer: ParameterBuffer | None = None

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


class ParameterBuffer:
    """Parameters laid out as views into one contiguous value buffer and one gradient buffer.

    Optimizers then update all of a model's parameters with one call over the flat arrays
    instead of one call per parameter: on a CPU that saves most of the per-call overhead of
    an update of many small arrays, on a GPU most of the kernel launches.

    The layout is only a fast path, never a requirement. Anything may still rebind a
    parameter's ``data`` or ``grad`` (a layer whose kernel cannot write into ``out=``, a hand
    loop that assigns gradients, :meth:`Optimizer.zero_grad`); :meth:`holds` then reports
    False and optimizers fall back to per-parameter updates, which give the same numbers.

    Parameters
    ----------
    params : sequence of Parameter
        The parameters, all of one dtype on one backend; their values (and gradients, where
        set) are copied in, and ``data``/``grad`` rebound to the views.
    """

    def __init__(self, params: Sequence[Parameter]) -> None:
        if not params:
            raise ValueError("xpnet: a ParameterBuffer needs at least one parameter")
        xp = namespace_of(*(p.data for p in params))
        first = params[0].data
        total = sum(p.size for p in params)
        self.params = tuple(params)
        self.data = xp.empty((total,), dtype=first.dtype, device=first.device)
        self.grad = xp.zeros((total,), dtype=first.dtype, device=first.device)
        self.slices: list[tuple[int, int]] = []
        start = 0
        for p in params:
            stop = start + p.size
            self.slices.append((start, stop))
            start = stop
        self._data_views = tuple(self.views(self.data))
        self._grad_views = tuple(self.views(self.grad))
        for p, d, g in zip(params, self._data_views, self._grad_views, strict=True):
            d[...] = p.data
            if p.grad is not None:
                g[...] = p.grad
            # The gradient views are set now, zero-filled, so that the first backward already
            # writes into them and the first optimizer step can take the flat path.
            p.data, p.grad, p.buffer = d, g, self

    def views(self, flat: Any) -> list[Any]:
        """One view of ``flat`` (a 1-D array shaped like :attr:`data`) per parameter."""
        xp = namespace_of(flat)
        return [
            xp.reshape(flat[a:b], p.shape)
            for p, (a, b) in zip(self.params, self.slices, strict=True)
        ]

    def move_grad(self, flat: Any) -> None:
        """Move the gradient buffer into ``flat`` (1-D, shaped like :attr:`grad`): copy the
        gradients there and rebind the parameters' gradient views to it.

        For memory the gradients must live in, such as a window other processes read (the
        shared-memory all-reduce of :mod:`xpnet.distributed`). A parameter whose ``grad`` was
        rebound away from the buffer keeps its own array.
        """
        if tuple(flat.shape) != tuple(self.grad.shape) or flat.dtype != self.grad.dtype:
            raise ValueError(
                f"xpnet: a gradient buffer of shape {tuple(self.grad.shape)} and dtype "
                f"{self.grad.dtype} cannot move into one of shape {tuple(flat.shape)} and "
                f"dtype {flat.dtype}"
            )
        flat[...] = self.grad
        views = tuple(self.views(flat))
        for p, old, new in zip(self.params, self._grad_views, views, strict=True):
            if p.grad is old:
                p.grad = new
        self.grad, self._grad_views = flat, views

    def holds(self, params: Sequence[Parameter]) -> bool:
        """Whether ``params`` are exactly this buffer's parameters, in order, with ``data`` and
        ``grad`` still its views (identity checks only: no device work)."""
        if len(params) != len(self.params):
            return False
        for p, q, d, g in zip(params, self.params, self._data_views, self._grad_views, strict=True):
            if p is not q or p.data is not d or p.grad is not g:
                return False
        return True
