"""Gradient clipping by the global L2 norm, as ``torch.nn.utils.clip_grad_norm_`` does it.

Every optimizer takes ``clip_norm``; before each update (and before its gradient hooks) the
gradients are scaled by ``min(1, clip_norm / (norm + 1e-6))``, with ``norm`` the L2 norm of
all of them together. The norm, the coefficient and the scaling stay on the device: for a
model's parameters that is one reduction and one multiply over the flat gradient buffer, and
nothing is read back to the host. The work is the kernels' ``clip_grad_norm``
(:meth:`xpnet.kernels.PortableKernels.clip_grad_norm`, which the compiled CPU set replaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backend import namespace_of
from .kernels import get_kernels
from .parameter import Parameter, ParameterBuffer
from .validation import check_non_negative

__all__ = ["check_clip_norm", "clip_grad_norm"]

#: Added to the norm before dividing, PyTorch's constant.
CLIP_EPS = 1e-6


def check_clip_norm(value: Any, owner: str) -> float | None:
    """``None`` or a finite number >= 0 (ValueError for a negative, NaN or infinite one)."""
    if value is None:
        return None
    return check_non_negative(f"{owner} clip_norm", value)


def clip_grad_norm(
    params: Sequence[Parameter], buffer: ParameterBuffer | None, max_norm: float
) -> None:
    """Scale the gradients of ``params`` in place so their global L2 norm is at most
    ``max_norm`` (``buffer``: their flat buffer, when the update goes over it)."""
    if buffer is not None:
        grads = [buffer.grad]
    else:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
    # The kernels' version (xpnet.kernels.PortableKernels.clip_grad_norm is the reference).
    get_kernels(namespace_of(*grads)).clip_grad_norm(grads, max_norm, CLIP_EPS)
