"""Backend-specific fast paths behind one small interface.

:func:`get_kernels` returns the kernels for an array namespace: NumPy gets in-place
``out=`` versions, CuPy fused element-wise kernels, and every other namespace (and any
backend when ``XPNET_KERNELS=portable``) the portable reference, which the fast versions
are tested against. Layers, losses and optimizers call only these methods for their
element-wise hot spots, so their maths is written once.
"""

from __future__ import annotations

import os
from typing import Any

from .portable import PortableKernels

__all__ = ["PortableKernels", "get_kernels", "reset_kernels"]

_portable = PortableKernels()
_by_namespace: dict[str, PortableKernels] = {}


def _make(namespace_name: str, forced: str = "") -> PortableKernels:
    if namespace_name.endswith("numpy"):
        from .numpy_fast import NumpyKernels

        if forced != "numpy":
            try:
                from .numba_cpu import NumbaKernels
            except ImportError:  # numba not installed (no wheel for this platform)
                return NumpyKernels()
            return NumbaKernels()
        return NumpyKernels()
    if namespace_name.endswith("cupy"):
        try:
            from .cupy_fused import CupyKernels
        except ImportError:
            return _portable
        return CupyKernels()
    return _portable


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
        k = _by_namespace[name] = _portable if forced == "portable" else _make(name, forced)
    return k


def reset_kernels() -> None:
    """Forget the cached choice of kernels (re-read ``XPNET_KERNELS`` on next use)."""
    _by_namespace.clear()
