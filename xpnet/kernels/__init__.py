"""Backend-specific fast paths behind one small interface.

:func:`get_kernels` returns the kernels for an array namespace (a :class:`~xpnet.backend.Backend`
hands out its own as ``backend.kernels``): NumPy gets in-place ``out=`` versions, CuPy fused
element-wise kernels, and every other namespace (and any backend when
``XPNET_KERNELS=portable``) the portable reference, which the fast versions are tested against.
Layers, losses and optimizers call only these methods for their element-wise hot spots, so
their maths is written once.

Each activation is one method pair, ``relu(x)`` / ``relu_backward(grad, y)`` and so on (see
:class:`PortableKernels`); :meth:`PortableKernels.activation` and
:meth:`PortableKernels.bias_activation` (Dense's fused path) reach them by name. A new
activation is its layer class plus its pair here, written first in the portable kernels.
The activations of :data:`INPUT_ACTIVATIONS` (GELU, SiLU) take the input, not the output, in
their backward. :func:`erf` and :func:`erfc` (W. J. Cody's rational approximations, in any
array namespace) serve the exact GELU.

Dropout (:meth:`PortableKernels.dropout`, the counter-based masks of :mod:`xpnet.random`) and
gradient clipping's global norm (:meth:`PortableKernels.clip_grad_norm`) are kernels too, so
the compiled set can replace them.

This package imports nothing else of xpnet but :mod:`xpnet.random` (which imports nothing
of xpnet at import time); the backend module imports it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .portable import ACTIVATION_KERNELS, INPUT_ACTIVATIONS, PortableKernels
from .special import erf, erfc

__all__ = [
    "ACTIVATION_KERNELS",
    "INPUT_ACTIVATIONS",
    "PortableKernels",
    "erf",
    "erfc",
    "get_kernels",
    "reset_kernels",
]

_by_namespace: dict[str, PortableKernels] = {}
# The fused module's import failure is reported once per process, not on every reset.
_fused_failure_reported = False


def _report_fused_failure(exc: BaseException) -> None:
    global _fused_failure_reported
    if _fused_failure_reported:
        return
    _fused_failure_reported = True
    warnings.warn(
        "xpnet: the fused CuPy kernels (xpnet.kernels.cupy_fused) failed to import "
        f"({type(exc).__name__}: {exc}); the cupy backend runs the portable kernels, about "
        "four times as many kernel launches per training step",
        RuntimeWarning,
        stacklevel=3,
    )


def _make(namespace_name: str, xp: Any, forced: str = "") -> PortableKernels:
    if namespace_name.endswith("numpy"):
        from .numpy_fast import NumpyKernels

        if forced != "numpy":
            try:
                from .numba_cpu import NumbaKernels
            except ImportError:  # numba not installed (no wheel for this platform)
                return NumpyKernels(xp)
            return NumbaKernels(xp)
        return NumpyKernels(xp)
    if namespace_name.endswith("cupy"):
        try:
            from .cupy_fused import CupyKernels
        except Exception as exc:  # any failure (no CuPy, a broken CUDA install) falls back
            _report_fused_failure(exc)
            return PortableKernels(xp)
        return CupyKernels(xp)
    return PortableKernels(xp)


def get_kernels(xp: Any) -> PortableKernels:
    """The kernels for namespace ``xp`` (the portable ones if ``XPNET_KERNELS=portable``).

    NumPy gets the numba-compiled kernels when numba imports, else the in-place NumPy ones;
    ``XPNET_KERNELS=numpy`` forces the latter.

    The choice is made once per namespace and then cached, since this is called several
    times per layer per batch; after changing ``XPNET_KERNELS`` call :func:`reset_kernels`.
    """
    name = getattr(xp, "__name__", "")
    k = _by_namespace.get(name)
    if k is None:
        forced = os.environ.get("XPNET_KERNELS", "").lower()
        k = _by_namespace[name] = (
            PortableKernels(xp) if forced == "portable" else _make(name, xp, forced)
        )
    return k


def reset_kernels() -> None:
    """Forget the cached choice of kernels (re-read ``XPNET_KERNELS`` on next use)."""
    _by_namespace.clear()
