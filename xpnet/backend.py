"""Array backends: where arrays are created, and the namespace the maths runs on.

One global switch (``set_backend``) decides where *new* arrays live: model parameters, data
moved to the device by ``fit``. The maths itself never consults the switch: a layer keeps the
:class:`Backend` it was built on (``layer.backend``), and code handed bare arrays asks
:func:`backend_of` (or its shorthand :func:`namespace_of`) which backend they belong to, so a
model built on one backend keeps working on it whatever the switch says later, and arrays of
two backends in one call are an error rather than a silent copy.

A :class:`Backend` is the one object the maths needs: its namespace (``backend.xp``), where
new arrays go (``backend.device``) and its fast paths (``backend.kernels``).
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
from .kernels import PortableKernels, get_kernels

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "backend_of",
    "get_backend",
    "namespace_of",
    "resolve_backend",
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
    device_label : str
        The device in a few words for one-line reports (``"cpu"``, ``"cuda:0, NVIDIA H200"``);
        see :attr:`label`.
    """

    name: str
    xp: ModuleType
    device: Any = field(compare=False)
    device_name: str = field(compare=False, default="cpu")
    device_label: str = field(compare=False, default="")

    @property
    def kernels(self) -> PortableKernels:
        """The kernels of this backend (:func:`xpnet.kernels.get_kernels` of its namespace).

        Chosen once per namespace, honouring ``XPNET_KERNELS=portable``; after changing that
        variable call :func:`xpnet.kernels.reset_kernels`.
        """
        return get_kernels(self.xp)

    @property
    def label(self) -> str:
        """``name (device)`` for one-line reports: ``"numpy (cpu)"``,
        ``"cupy (cuda:0, NVIDIA H200)"``."""
        return f"{self.name} ({self.device_label or self.device_name})"

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Return ``a`` as an array of this backend, copying only when needed.

        Host (NumPy) input and input already on this backend are accepted; an array of another
        non-host backend raises ``TypeError`` so a GPU array is never moved behind the user's back.
        """
        if dtype is not None and isinstance(dtype, str):
            dtype = getattr(self.xp, dtype)
        if not isinstance(a, (np.ndarray, np.generic, list, tuple, int, float)):
            other = _backend_name_of(type(a))
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
    return Backend("numpy", xp, "cpu", "cpu (NumPy)", "cpu")


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
    return Backend("cupy", xp, dev, f"cuda:{dev.id} ({name})", f"cuda:{dev.id}, {name}")


def _make_array_api_strict() -> Backend:
    try:
        import array_api_strict as xp
    except ImportError as exc:
        raise BackendUnavailableError(
            "the 'array_api_strict' backend needs the array-api-strict package: "
            'pip install "xpnet[strict]"'
        ) from exc
    return Backend("array_api_strict", xp, xp.Device("CPU_DEVICE"), "cpu (array-api-strict)", "cpu")


_FACTORIES = {
    "numpy": _make_numpy,
    "cupy": _make_cupy,
    "array_api_strict": _make_array_api_strict,
}
_cache: dict[str, Backend] = {}
_state = threading.local()
_lock = threading.Lock()


def resolve_backend(name: str | Backend) -> Backend:
    """Return the :class:`Backend` called ``name`` (a Backend is returned as it is).

    Each backend is created once and then shared, so its namespace and kernels are chosen once.
    Unlike :func:`set_backend` this changes no state.

    Raises
    ------
    TypeError
        If ``name`` is neither a string nor a Backend.
    ValueError
        If the name is not a known backend.
    BackendUnavailableError
        If the backend's package or device is missing (the message says how to install it).
    """
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


#: Deprecated private name of :func:`resolve_backend`, kept for code that still imports it.
_resolve = resolve_backend

_default: Backend | None = None


def _default_backend() -> Backend:
    global _default
    if _default is None:
        _default = resolve_backend(os.environ.get("XPNET_BACKEND", "numpy") or "numpy")
    return _default


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (the message :func:`set_backend` would raise),
    or None when it can. Changes no state."""
    try:
        resolve_backend(name)
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
    backend = resolve_backend(name)
    stack = getattr(_state, "stack", None)
    if stack:
        stack[-1] = backend
    else:
        _default = backend
    return backend


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Switch the active backend inside a ``with`` block, restoring the previous one after."""
    backend = resolve_backend(name)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(backend)
    try:
        yield backend
    finally:
        stack.pop()


def _backend_name_of(kind: type) -> str | None:
    module = kind.__module__.split(".")[0]
    if module in ("numpy", "cupy", "array_api_strict"):
        return module
    return None


# The answer for one concrete array type never changes, and this lookup runs several times
# per layer per batch, so it is cached per type (a dict lookup instead of a module walk).
_backend_by_type: dict[type, Backend] = {}


def _backend_of_type(kind: type) -> Backend:
    backend = _backend_by_type.get(kind)
    if backend is None:
        name = _backend_name_of(kind)
        if name is None:
            raise TypeError(f"xpnet: expected an array of a known backend, got {kind.__name__}")
        backend = _backend_by_type[kind] = resolve_backend(name)
    return backend


def backend_of(*arrays: Any) -> Backend:
    """Return the :class:`Backend` that ``arrays`` (``None`` entries skipped) belong to.

    This is the one lookup from arrays to their backend; :func:`namespace_of` is its namespace.

    Raises
    ------
    TypeError
        If there is no array, an argument is not an array of a known backend, or the arrays
        come from more than one backend (xpnet never moves data implicitly).
    """
    backend: Backend | None = None
    for a in arrays:
        if a is None:
            continue
        b = _backend_of_type(type(a))
        if backend is None:
            backend = b
        elif b is not backend:
            names = sorted({x.name for x in (backend, b)})
            raise TypeError(
                f"xpnet: arrays from different backends in one call ({', '.join(names)}); "
                "move them to one backend first (xpnet.to_numpy() or Backend.asarray())"
            )
    if backend is None:
        raise TypeError("xpnet: expected at least one array, got none")
    return backend


def namespace_of(*arrays: Any) -> ModuleType:
    """Return the array namespace shared by ``arrays``: ``backend_of(*arrays).xp``.

    Raises
    ------
    TypeError
        As :func:`backend_of`: no array, an unknown type, or arrays of two backends.
    """
    return backend_of(*arrays).xp


def to_numpy(a: Any) -> np.ndarray:
    """Return a host NumPy copy (or view, for NumPy input) of an array of any backend."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, (np.generic, int, float, bool, list, tuple)):
        return np.asarray(a)
    name = _backend_name_of(type(a))
    if name == "cupy":
        return a.get()
    if name == "array_api_strict":
        # The strict namespace refuses __array__ on purpose; DLPack shares its memory, so copy
        # to keep the promise that only NumPy input comes back as a view.
        return np.from_dlpack(a).copy()
    raise TypeError(f"xpnet.to_numpy: expected an array, got {type(a).__name__}")
