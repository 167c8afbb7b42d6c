"""Inverted dropout with counter-based masks computed on the input's device."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..random import key_words
from ..validation import check_number
from .base import Layer

# The counter of forwards outside fit is a 32-bit step; past it a fresh seed is drawn.
_STEP_LIMIT = 1 << 32


class Dropout(Layer):
    """Zero each unit with probability ``p`` during training, scaling survivors by 1/(1-p).

    The mask is a hash of ``(seed, step, global row, column)`` computed in the input's array
    namespace on its device (see :mod:`xpnet.random`): no host draw, no transfer, and the same
    bits on every backend. Inside ``fit`` the training loop fixes the key of each forward
    with :meth:`set_random_key`. A training forward called by hand without a key draws one
    seed from the layer's host generator ``rng`` (the model's, set by ``Sequential.add``) and
    counts its calls as steps. At inference the layer is the identity.
    """

    kind = "Dropout"
    stochastic = True

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_number("Dropout p", p, low=0.0, high=1.0, high_open=True)
        self._rng: np.random.Generator | None = None
        self._mask: Any = None
        self._key: tuple[int, int, int] | None = None  # set for the next training forward
        # The stream of forwards without a key:
        self._own_seed: int | None = None  # pragma: no mutate
        self._own_step = 0  # pragma: no mutate

    @property
    def rng(self) -> np.random.Generator | None:
        """Host generator that seeds training forwards made without :meth:`set_random_key`."""
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator | None) -> None:
        # A new generator starts a new stream: the same generator state, the same masks.
        self._rng = rng
        self._own_seed = None
        self._own_step = 0

    def set_random_key(self, seed: int, step: int, row_offset: int = 0) -> None:
        """Fix the mask of the next training forward (see :meth:`Layer.set_random_key`)."""
        key_words(seed, step)  # validates both now, not at the forward
        if isinstance(row_offset, bool) or not isinstance(row_offset, (int, np.integer)):
            raise TypeError(
                f"xpnet: row_offset must be an integer, got {type(row_offset).__name__}"
            )
        if row_offset < 0:
            raise ValueError(f"xpnet: row_offset must be >= 0, got {row_offset}")
        self._key = (int(seed), int(step), int(row_offset))

    def _next_key(self) -> tuple[int, int, int]:
        key = self._key
        if key is not None:
            self._key = None  # one key, one forward
            return key
        if self._rng is None:
            raise RuntimeError(
                "xpnet: Dropout has no random generator; put it in a Sequential model "
                "(which hands it the model's generator), set layer.rng, or call "
                "set_random_key before a training forward"
            )
        if self._own_seed is None or self._own_step >= _STEP_LIMIT:
            self._own_seed = int(self._rng.integers(0, 2**63 - 1))
            self._own_step = 0
        step = self._own_step
        self._own_step += 1
        return self._own_seed, step, 0

    def forward(self, x: Any, training: bool = False) -> Any:
        if not training or self.p == 0.0:
            if training:
                self._key = None
            self._mask = None
            return x
        seed, step, row_offset = self._next_key()
        # The kernels' dropout (PortableKernels.dropout, xpnet.random.keep_mask's bits).
        y, self._mask = self._backend_for(x).kernels.dropout(x, self.p, seed, step, row_offset)
        return y

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        if self._mask is None:
            return grad
        return self._backend_for(grad).kernels.dropout_backward(grad, self._mask)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}
