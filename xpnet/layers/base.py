"""The layer interface every xpnet layer implements."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..backend import Backend, backend_of
from ..parameter import Parameter


class Layer:
    """Base class of all layers.

    A layer maps a batch ``x`` of shape ``(n, in_features)`` to ``(n, out_features)`` in
    :meth:`forward`, remembers what its gradient needs, and in :meth:`backward` turns the
    gradient of the loss with respect to its output into the gradient with respect to its
    input, filling ``p.grad`` for each of its :meth:`parameters` on the way.

    A layer keeps the :class:`~xpnet.backend.Backend` it was built on in ``layer.backend``
    (``None`` before :meth:`build`) and runs its element-wise maths through
    ``layer.backend.kernels``. A forward with ``training=False`` keeps nothing (no input, no
    output), so inference holds no memory between calls and may run from several threads;
    :meth:`backward` then raises until a training forward.
    """

    #: The backend the layer was built on (set by :meth:`build`).
    backend: Backend | None = None

    #: Name under which the layer is saved in checkpoints and shown in summaries.
    kind: ClassVar[str] = "Layer"

    #: True for layers whose training forward draws random numbers (see set_random_key).
    stochastic: ClassVar[bool] = False

    def build(
        self,
        backend: Backend,
        dtype: Any,
        rng: np.random.Generator,
        next_activation: str | None = None,
    ) -> None:
        """Create the layer's parameters on ``backend`` and remember it as ``self.backend``.

        Subclasses that create parameters call ``super().build(...)`` first.
        """
        self.backend = backend

    def _backend_for(self, x: Any) -> Backend:
        """The backend ``x`` must be on: the layer's own once built (an array of another
        backend is a TypeError), else ``x``'s (an unbuilt parameter-free layer runs anywhere)."""
        own = self.backend
        if own is None:
            return backend_of(x)
        # One dict lookup by type; a mismatch is an error rather than a silent copy.
        given = backend_of(x)
        if given is not own and given != own:
            raise TypeError(
                f"xpnet: arrays from different backends: {type(self).__name__} was built on "
                f"the {own.name} backend but was given an array of the {given.name} backend; "
                "move the data with backend.asarray() or the model with model.to()"
            )
        return own

    def _not_trained(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"xpnet: {type(self).__name__}.backward needs the {what} of a forward with "
            "training=True; a forward with training=False (inference) keeps nothing"
        )

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

    def buffers(self) -> dict[str, Any]:
        """Non-trainable state arrays by name (running statistics, for example).

        They live on the layer's backend, are saved and restored with the weights, are never
        touched by an optimizer and are not part of :meth:`parameters` or ``get_weights``.
        Restoring writes into them in place, so a layer may hold references to them.
        """
        return {}

    def set_random_key(self, seed: int, step: int, row_offset: int = 0) -> None:
        """Fix the random numbers of the next training forward (a no-op for most layers).

        The training loop calls this before every training forward of a stochastic layer:
        ``seed`` is drawn once per epoch and layer from the fit's host generator, ``step`` is
        the batch's index in the epoch and ``row_offset`` the position of the batch's first
        row in the global batch (non-zero only for a data-parallel rank). A layer that
        draws noise derives it from these alone, so every backend and every rank sees the
        same numbers for the same row.
        """

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    def output_features(self, in_features: int | None) -> int | None:
        """Width of the output for a given input width (``None``: unknown)."""
        return in_features

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
