"""``xpnet info``: what this installation can run, in the spirit of ``torch.utils.collect_env``.

:func:`collect_info` gathers versions, backends (available or why not, device, kernels),
CUDA as CuPy sees it, the BLAS library and its threads, and the environment variables that
change xpnet's behaviour. It never raises: whatever cannot be found is reported as such.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

__all__ = ["collect_info", "format_info"]

#: Distributions reported, in order: (label, distribution names tried, extra that installs it).
PACKAGES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("numpy", ("numpy",), None),
    ("array-api-compat", ("array-api-compat", "array_api_compat"), None),
    ("threadpoolctl", ("threadpoolctl",), None),
    ("tqdm", ("tqdm",), None),
    ("cupy", ("cupy-cuda13x", "cupy-cuda12x", "cupy"), "cuda12 / cuda13"),
    ("array-api-strict", ("array-api-strict", "array_api_strict"), "strict"),
    ("scikit-learn", ("scikit-learn",), "sklearn"),
    ("matplotlib", ("matplotlib",), "plot"),
    ("safetensors", ("safetensors",), "safetensors"),
)

#: Environment variables that change what xpnet (or CuPy under it) does.
ENVIRONMENT = (
    "XPNET_BACKEND",
    "XPNET_KERNELS",
    "XPNET_BLAS_THREADS",
    "XPNET_DATA_DIR",
    "CUPY_TF32",
    "CUPY_ACCELERATORS",
    "CUDA_PATH",
    "CUDA_VISIBLE_DEVICES",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"


def _distribution(names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _packages() -> list[dict[str, Any]]:
    out = []
    for label, names, extra in PACKAGES:
        found = _distribution(names)
        out.append(
            {
                "name": label,
                "distribution": None if found is None else found[0],
                "version": None if found is None else found[1],
                "extra": extra,
            }
        )
    return out


def _cuda_version(value: int) -> str:
    """12040 -> '12.4' (CUDA encodes versions as 1000 * major + 10 * minor)."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _cuda() -> dict[str, Any]:
    """CUDA as CuPy sees it; every field is looked up on its own, so one failure hides no other."""
    try:
        import cupy
    except Exception as exc:
        return {"cupy": None, "error": _one_line(exc)}
    out: dict[str, Any] = {"cupy": cupy.__version__}
    probes = {
        "runtime": lambda: _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "driver": lambda: _cuda_version(cupy.cuda.runtime.driverGetVersion()),
        "nvrtc": lambda: ".".join(str(v) for v in cupy.cuda.nvrtc.getVersion()),
        "cuda_path": lambda: cupy.cuda.get_cuda_path(),
        "devices": lambda: int(cupy.cuda.runtime.getDeviceCount()),
    }
    for key, probe in probes.items():
        try:
            out[key] = probe()
        except Exception as exc:
            out[key] = None
            out[f"{key}_error"] = _one_line(exc)
    return out


def _host_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _kernel_kind(kernels: Any) -> str:
    from ..kernels import PortableKernels

    if type(kernels) is PortableKernels:
        return "portable"
    module = type(kernels).__module__
    if "cupy" in module:
        return "fused"
    if "numba" in module or "compiled" in module:
        return "compiled"
    return "fast"


def _device_details(backend: Any) -> dict[str, Any]:
    if backend.name != "cupy":
        return {"memory_bytes": _host_memory()}
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
    return {
        "memory_bytes": int(props["totalGlobalMem"]),
        "compute_capability": f"{props['major']}.{props['minor']}",
    }


def _backends() -> list[dict[str, Any]]:
    from ..backend import BACKEND_NAMES, _resolve, unavailable_reason
    from ..kernels import get_kernels

    out = []
    for name in BACKEND_NAMES:
        entry: dict[str, Any] = {"name": name, "available": False, "reason": None}
        try:
            reason = unavailable_reason(name)
        except Exception as exc:  # a broken install, not merely a missing one
            reason = _one_line(exc)
        if reason is not None:
            entry["reason"] = reason
            out.append(entry)
            continue
        entry["available"] = True
        backend = _resolve(name)
        entry["device"] = backend.device_name
        try:
            entry.update(_device_details(backend))
        except Exception as exc:
            entry["device_error"] = _one_line(exc)
        try:
            kernels = get_kernels(backend.xp)
            entry["kernels"] = _kernel_kind(kernels)
            entry["kernels_class"] = type(kernels).__name__
        except Exception as exc:
            entry["kernels"] = None
            entry["kernels_error"] = _one_line(exc)
        out.append(entry)
    return out


def _blas() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
    except Exception as exc:
        return [{"error": _one_line(exc)}]
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "filepath")
    return [{k: pool.get(k) for k in keys} for pool in pools]


def collect_info() -> dict[str, Any]:
    """Everything ``xpnet info`` reports, as a JSON-serialisable dict.

    Returns
    -------
    dict
        ``xpnet``, ``python``, ``platform``; ``packages`` (name, distribution, version or None,
        the extra that installs it); ``cuda`` (CuPy's version, CUDA runtime, driver and NVRTC
        versions, device count, or the error that stopped each); ``backends`` (per backend:
        ``available``, the ``reason`` when not, else ``device``, ``memory_bytes`` and
        ``kernels``: ``"fused"``, ``"compiled"``, ``"fast"`` or ``"portable"``); ``blas``
        (threadpoolctl's view: library, version, threads); ``blas_threads_limit`` (what
        xpnet applies in ``fit``, None for the library's own setting); ``environment``.
    """
    from .._version import __version__
    from ..threads import get_blas_threads

    try:
        limit: int | str | None = get_blas_threads()
    except ValueError as exc:
        limit = str(exc)
    return {
        "xpnet": __version__,
        "python": platform.python_version(),
        "python_path": sys.executable,
        "platform": platform.platform(),
        "packages": _packages(),
        "cuda": _cuda(),
        "backends": _backends(),
        "blas": _blas(),
        "blas_threads_limit": limit,
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
    }


def _gib(n: int | None) -> str:
    return "" if n is None else f", {n / 2**30:.1f} GiB"


def format_info(info: dict[str, Any]) -> str:
    """The report of :func:`collect_info` as aligned text lines (what ``xpnet info`` prints)."""
    lines = [
        f"xpnet {info['xpnet']}",
        f"Python {info['python']} ({info['python_path']})",
        f"platform {info['platform']}",
        "",
        "packages:",
    ]
    for pkg in info["packages"]:
        version = pkg["version"] or "not installed"
        extra = f"  (extra: {pkg['extra']})" if pkg["extra"] and not pkg["version"] else ""
        dist = pkg["distribution"]
        name = pkg["name"] if dist in (None, pkg["name"]) else f"{pkg['name']} ({dist})"
        lines.append(f"  {name:<28}{version}{extra}")
    cuda = info["cuda"]
    lines += ["", "CUDA (through CuPy):"]
    if cuda.get("cupy") is None:
        lines.append(f"  CuPy not importable: {cuda.get('error')}")
    else:
        for key in ("runtime", "driver", "nvrtc", "cuda_path", "devices"):
            value = cuda.get(key)
            shown = value if value is not None else f"unknown ({cuda.get(f'{key}_error')})"
            lines.append(f"  {key:<28}{shown}")
    lines += ["", "backends:"]
    for b in info["backends"]:
        if not b["available"]:
            lines.append(f"  {b['name']:<28}unavailable: {b['reason']}")
            continue
        extra = (
            f", compute capability {b['compute_capability']}" if "compute_capability" in b else ""
        )
        kernels = b.get("kernels") or f"unknown ({b.get('kernels_error')})"
        if b.get("kernels_class"):
            kernels += f" ({b['kernels_class']})"
        lines.append(
            f"  {b['name']:<28}available: {b['device']}{_gib(b.get('memory_bytes'))}{extra}; "
            f"kernels: {kernels}"
        )
    lines += ["", "BLAS (threadpoolctl):"]
    if not info["blas"]:
        lines.append("  none loaded")
    for pool in info["blas"]:
        if "error" in pool:
            lines.append(f"  unknown: {pool['error']}")
            continue
        layer = f", {pool['threading_layer']}" if pool.get("threading_layer") else ""
        lines.append(
            f"  {pool['internal_api']} {pool['version']} ({pool['user_api']}{layer}): "
            f"{pool['num_threads']} threads, {pool['filepath']}"
        )
    limit = info["blas_threads_limit"]
    lines.append(f"  xpnet's limit inside fit: {'none' if limit is None else limit}")
    lines += ["", "environment:"]
    env = info["environment"]
    lines += [f"  {k}={v}" for k, v in env.items()] or ["  (none of xpnet's variables set)"]
    return "\n".join(lines)
