"""Array backends: where arrays are created, and the namespace the maths runs on.

One global switch (``set_backend``) decides where *new* arrays live: model parameters, data
moved to the device by ``fit``. The maths itself never consults the switch: every layer, loss
and optimizer asks :func:`namespace_of` for the namespace of the arrays it was given, so a
model built on one backend keeps working on it whatever the switch says later, and arrays of
two backends in one call are an error rather than a silent copy.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .errors import BackendUnavailableError

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "get_backend",
    "namespace_of",
    "set_backend",
    "to_numpy",
    "unavailable_reason",
    "use_backend",
]

BACKEND_NAMES: tuple[str, ...] = ("numpy", "cupy", "array_api_strict")

_CUPY_INSTALL_HINT = (
    'install CuPy for your CUDA version: pip install "xpnet[cuda12]" (CUDA 12) or '
    'pip install "xpnet[cuda13]" (CUDA 13)'
)


@dataclass(frozen=True)
class Backend:
    """An array backend: its name, its array namespace and the device arrays go to.

    Attributes
    ----------
    name : str
        One of ``"numpy"``, ``"cupy"``, ``"array_api_strict"``.
    xp : module
        The Array-API-compatible namespace (``array_api_compat.numpy``, ``array_api_compat.cupy``
        or ``array_api_strict``).
    device : object
        The device new arrays are created on.
    device_name : str
        A human-readable description of that device.
    """

    name: str
    xp: ModuleType
    device: Any = field(compare=False)
    device_name: str = field(compare=False, default="cpu")

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Return ``a`` as an array of this backend, copying only when needed.

        Host (NumPy) input and input already on this backend are accepted; an array of another
        non-host backend raises ``TypeError`` so a GPU array is never moved behind the user's back.
        """
        if dtype is not None and isinstance(dtype, str):
            dtype = getattr(self.xp, dtype)
        if not isinstance(a, (np.ndarray, np.generic, list, tuple, int, float)):
            other = _backend_name_of(a)
            if other is not None and other != self.name and other != "numpy":
                raise TypeError(
                    f"xpnet: expected a NumPy array or a {self.name} array, got a {other} array; "
                    "convert it first with xpnet.to_numpy()"
                )
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device_name!r})"


def _make_numpy() -> Backend:
    xp = array_api_compat.array_namespace(np.empty(0))
    return Backend("numpy", xp, "cpu", "cpu (NumPy)")


def _make_cupy() -> Backend:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the 'cupy' backend needs CuPy, which is not installed ({exc}); {_CUPY_INSTALL_HINT}"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailableError(
            f"the 'cupy' backend needs a CUDA device, but CuPy could not reach one ({exc}); "
            "check the NVIDIA driver with nvidia-smi, or use set_backend('numpy')"
        ) from exc
    if count < 1:
        raise BackendUnavailableError(
            "the 'cupy' backend needs a CUDA device, but none was found; "
            "use set_backend('numpy') on this machine"
        )
    import array_api_compat.cupy as xp

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return Backend("cupy", xp, dev, f"cuda:{dev.id} ({name})")


def _make_array_api_strict() -> Backend:
    try:
        import array_api_strict as xp
    except ImportError as exc:
        raise BackendUnavailableError(
            "the 'array_api_strict' backend needs the array-api-strict package: "
            'pip install "xpnet[strict]"'
        ) from exc
    return Backend("array_api_strict", xp, xp.Device("CPU_DEVICE"), "cpu (array-api-strict)")


_FACTORIES = {
    "numpy": _make_numpy,
    "cupy": _make_cupy,
    "array_api_strict": _make_array_api_strict,
}
_cache: dict[str, Backend] = {}
_state = threading.local()
_lock = threading.Lock()


def _resolve(name: str | Backend) -> Backend:
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"xpnet: backend must be a name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in _FACTORIES:
        raise ValueError(
            f"xpnet: unknown backend {name!r}; valid backends are: {', '.join(BACKEND_NAMES)}"
        )
    with _lock:
        if key not in _cache:
            _cache[key] = _FACTORIES[key]()
        return _cache[key]


_default: Backend | None = None


def _default_backend() -> Backend:
    global _default
    if _default is None:
        _default = _resolve(os.environ.get("XPNET_BACKEND", "numpy") or "numpy")
    return _default


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (the message :func:`set_backend` would raise),
    or None when it can. Changes no state."""
    try:
        _resolve(name)
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def get_backend() -> Backend:
    """Return the active backend (``XPNET_BACKEND`` sets the default, else NumPy)."""
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    return _default_backend()


def set_backend(name: str | Backend) -> Backend:
    """Make ``name`` the active backend for new arrays and return it.

    Parameters
    ----------
    name : {"numpy", "cupy", "array_api_strict"}
        The backend to switch to.

    Raises
    ------
    ValueError
        If the name is not a known backend.
    BackendUnavailableError
        If the backend's package or device is missing (the message says how to install it).
    """
    global _default
    backend = _resolve(name)
    stack = getattr(_state, "stack", None)
    if stack:
        stack[-1] = backend
    else:
        _default = backend
    return backend


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Switch the active backend inside a ``with`` block, restoring the previous one after."""
    backend = _resolve(name)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(backend)
    try:
        yield backend
    finally:
        stack.pop()


def _backend_name_of(a: Any) -> str | None:
    module = type(a).__module__.split(".")[0]
    if module == "numpy":
        return "numpy"
    if module == "cupy":
        return "cupy"
    if module == "array_api_strict":
        return "array_api_strict"
    return None


_namespace_by_type: dict[type, ModuleType] = {}


def namespace_of(*arrays: Any) -> ModuleType:
    """Return the array namespace shared by ``arrays``.

    Raises
    ------
    TypeError
        If the arrays come from more than one backend; xpnet never moves data implicitly.
    """
    arrays = tuple(a for a in arrays if a is not None)
    # array_namespace costs ~15 us, a large share of a small layer's step; arrays of one
    # concrete type always share a namespace, so that answer is cached per type.
    if arrays:
        kind = type(arrays[0])
        cached = _namespace_by_type.get(kind)
        if cached is not None and all(type(a) is kind for a in arrays):
            return cached
    try:
        xp = array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        names = sorted({_backend_name_of(a) or type(a).__name__ for a in arrays})
        raise TypeError(
            f"xpnet: arrays from different backends in one call ({', '.join(names)}); "
            "move them to one backend first (xpnet.to_numpy() or Backend.asarray())"
        ) from exc
    if arrays and all(type(a) is type(arrays[0]) for a in arrays):
        _namespace_by_type[type(arrays[0])] = xp
    return xp


def backend_of(a: Any) -> Backend:
    """Return the :class:`Backend` an array belongs to."""
    name = _backend_name_of(a)
    if name is None:
        raise TypeError(f"xpnet: {type(a).__name__} is not an array of a known backend")
    return _resolve(name)


def to_numpy(a: Any) -> np.ndarray:
    """Return a host NumPy copy (or view, for NumPy input) of an array of any backend."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, (np.generic, int, float, bool, list, tuple)):
        return np.asarray(a)
    name = _backend_name_of(a)
    if name == "cupy":
        return a.get()
    if name == "array_api_strict":
        # The strict namespace refuses __array__ on purpose; DLPack shares its memory, so copy
        # to keep the promise that only NumPy input comes back as a view.
        return np.from_dlpack(a).copy()
    raise TypeError(f"xpnet.to_numpy: expected an array, got {type(a).__name__}")
