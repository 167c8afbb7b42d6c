"""Testing helpers: tolerances, cross-backend comparisons and finite-difference gradient checks.

These are public so that the GPU tests (and users extending xpnet with their own layers) can
check their numbers the same way xpnet's own test suite does:

>>> import numpy as np
>>> from xpnet.testing import assert_allclose, check_gradient
>>> x = np.array([0.5, -1.0, 2.0])
>>> assert_allclose(x * 2, np.array([1.0, -2.0, 4.0]))
>>> check_gradient(lambda a: float(np.sum(a**3)), [x], [3 * x**2])
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import Backend, _resolve, backend_of, get_backend, to_numpy
from .layers import Dense, Dropout
from .model import Sequential

__all__ = [
    "TF32_TOLERANCE",
    "TOLERANCES",
    "assert_allclose",
    "check_gradient",
    "make_blobs",
    "make_mlp",
    "max_differences",
    "numerical_gradient",
    "tf32_active",
    "tolerance",
]

#: ``(rtol, atol)`` per floating dtype for comparing one computation done on two backends.
#: float64 leaves room for a different summation order in reductions and BLAS (a few ulps
#: per operation, amplified by a few training steps); float32 for the same at 2**-24 per ulp.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-10, 1e-12),
    "float32": (1e-4, 1e-5),
}

#: ``(rtol, atol)`` for float32 on a GPU whose matrix products use TensorFloat-32
#: (``CUPY_TF32=1``): TF32 keeps 10 mantissa bits, so products are only good to about 1e-3.
TF32_TOLERANCE: tuple[float, float] = (1e-3, 1e-4)


def _dtype_name(dtype: Any) -> str:
    """'float32'/'float64'/... from a NumPy, CuPy or array-api-strict dtype, or a string."""
    if isinstance(dtype, str):
        return dtype.rsplit(".", 1)[-1]
    try:
        return np.dtype(dtype).name
    except TypeError:
        # array_api_strict dtypes are their own objects; their str is "array_api_strict.float64".
        return str(dtype).rsplit(".", 1)[-1]


def tolerance(dtype: Any, tf32: bool = False) -> tuple[float, float]:
    """Return ``(rtol, atol)`` for comparing results of ``dtype`` computed on two backends.

    Parameters
    ----------
    dtype : dtype or str
        ``float32`` or ``float64``, as a string or a dtype of any backend.
    tf32 : bool, default False
        The float32 results come from a GPU with TensorFloat-32 matrix products enabled
        (``CUPY_TF32=1``); use the looser :data:`TF32_TOLERANCE`. Ignored for float64.

    Raises
    ------
    ValueError
        For a dtype without a tolerance (integers compare exactly; float16 is not supported).
    """
    name = _dtype_name(dtype)
    if name not in TOLERANCES:
        raise ValueError(
            f"xpnet.testing: no tolerance for dtype {name!r}; known: {', '.join(TOLERANCES)}"
        )
    if tf32 and name == "float32":
        return TF32_TOLERANCE
    return TOLERANCES[name]


def tf32_active(backend: str | Backend | None = None) -> bool:
    """Whether float32 matrix products on ``backend`` (default: the active one) may use TF32.

    True only for the ``cupy`` backend with ``CUPY_TF32=1`` in the environment (CuPy reads
    it at import); pass the result to :func:`tolerance`.
    """
    b = get_backend() if backend is None else _resolve(backend)
    return b.name == "cupy" and os.environ.get("CUPY_TF32", "0") == "1"


def _host(a: Any) -> np.ndarray:
    return np.asarray(to_numpy(a))


def max_differences(actual: Any, desired: Any) -> tuple[float, float]:
    """Return ``(max |a - d|, max |a - d| / |d|)`` over the elements, computed in float64.

    Equal elements (the same infinity, NaN against NaN) count as no difference; an element
    that differs where ``d`` is 0, infinite or NaN makes the relative maximum ``inf``. Arrays of
    any backend are accepted.
    """
    a = _host(actual).astype(np.float64)
    d = _host(desired).astype(np.float64)
    if a.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (a == d) | (np.isnan(a) & np.isnan(d))
        diff = np.where(same, 0.0, np.abs(a - d))
        rel = np.where(same, 0.0, diff / np.abs(d))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = np.where(np.isnan(rel), np.inf, rel)
    return float(np.max(diff)), float(np.max(rel))


def assert_allclose(
    actual: Any,
    desired: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: Any = None,
    err_msg: str = "",
) -> None:
    """Assert ``|actual - desired| <= atol + rtol * |desired|`` element-wise.

    Parameters
    ----------
    actual, desired : array of any backend, or array-like
        Compared on the host in float64. Shapes must match (a scalar ``desired`` broadcasts).
        NaNs must sit at the same places; infinities must match exactly.
    rtol, atol : float, optional
        Tolerances; those not given come from :func:`tolerance` for ``dtype``.
    dtype : dtype or str, optional
        Precision the tolerance is chosen for; default: the less precise floating dtype of
        the two inputs (float64 when neither is floating).
    err_msg : str
        Prepended to the failure message.

    Raises
    ------
    AssertionError
        With the worst element, the maximum absolute and relative differences and the count of
        mismatches.
    """
    a = _host(actual)
    d = _host(desired)
    if rtol is None or atol is None:
        if dtype is None:
            floats = [x.dtype for x in (a, d) if x.dtype.kind == "f"]
            dtype = min(floats, key=lambda t: t.itemsize) if floats else np.float64
        default_rtol, default_atol = tolerance(dtype)
        rtol = default_rtol if rtol is None else rtol
        atol = default_atol if atol is None else atol
    prefix = f"{err_msg}\n" if err_msg else ""
    if a.shape != d.shape and d.ndim != 0:
        raise AssertionError(f"{prefix}shape mismatch: actual {a.shape}, desired {d.shape}")
    a64 = a.astype(np.float64)
    d64 = np.broadcast_to(d.astype(np.float64), a.shape)
    nan_a, nan_d = np.isnan(a64), np.isnan(d64)
    bad = nan_a != nan_d
    both = ~(nan_a | nan_d)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a64 - d64)
        infinite = np.isinf(a64) | np.isinf(d64)
        close = np.where(infinite, a64 == d64, diff <= atol + rtol * np.abs(d64))
    bad |= both & ~close
    if not np.any(bad):
        return
    n_bad = int(np.count_nonzero(bad))
    score = np.where(bad, np.nan_to_num(diff, nan=np.inf), -1.0)
    worst = np.unravel_index(int(np.argmax(score)), a.shape)
    max_abs, max_rel = max_differences(a64[both], d64[both])
    raise AssertionError(
        f"{prefix}not close (rtol={rtol:g}, atol={atol:g}): {n_bad} of {a.size} elements differ\n"
        f"max abs difference: {max_abs:.6g}\nmax rel difference: {max_rel:.6g}\n"
        f"worst at index {tuple(int(i) for i in worst)}: actual {a64[worst]!r}, "
        f"desired {d64[worst]!r}"
    )


def _like(host: np.ndarray, template: Any) -> Any:
    """``host`` as an array of ``template``'s backend and dtype (a NumPy array for host input)."""
    if isinstance(template, np.ndarray):
        return host.astype(template.dtype, copy=False)
    return backend_of(template).asarray(host, dtype=template.dtype)


def _scalar(value: Any) -> float:
    out = _host(value)
    if out.size != 1:
        raise ValueError(f"xpnet.testing: f must return a scalar, got shape {out.shape}")
    return float(out.reshape(()))


def numerical_gradient(f: Callable[[Any], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function, one element at a time.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar (a Python float or a 0-d/size-1 array of any backend).
    x : array
        Point of evaluation, of any backend; it is perturbed on a float64 host copy and each
        perturbed copy is moved back to ``x``'s backend and dtype (use float64 inputs: in float32
        the perturbation drowns in rounding).
    eps : float
        Step of the central difference.

    Returns
    -------
    numpy.ndarray
        float64 array of ``x``'s shape: ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.
    """
    base = _host(x).astype(np.float64)
    grad = np.empty_like(base)
    flat_base, flat_grad = base.reshape(-1), grad.reshape(-1)
    for i in range(flat_base.size):
        old = flat_base[i]
        flat_base[i] = old + eps
        f_plus = _scalar(f(_like(base, x)))
        flat_base[i] = old - eps
        f_minus = _scalar(f(_like(base, x)))
        flat_base[i] = old
        flat_grad[i] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def check_gradient(
    f: Callable[..., Any],
    inputs: Sequence[Any],
    grads: Sequence[Any],
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    directions: int = 3,
    seed: int = 0,
) -> None:
    """Check analytic gradients against directional finite differences (as Chainer does).

    For each of ``directions`` random unit vectors ``d`` in the joint space of all inputs,
    compares the central difference ``(f(x + eps d) - f(x - eps d)) / (2 eps)`` with the
    directional derivative ``sum_i <grads[i], d_i>``.

    Parameters
    ----------
    f : callable
        ``f(*inputs)`` returns a scalar (float or 0-d array of any backend).
    inputs : sequence of arrays
        The point of evaluation, arrays of any backend (float64 for meaningful checks). They
        are not modified: perturbed copies are made on the host and moved back.
    grads : sequence of arrays
        ``d f / d inputs[i]``, one per input, of the same shapes.
    eps, rtol, atol : float
        Difference step and the tolerance ``|fd - analytic| <= atol + rtol * |analytic|``.
    directions : int
        How many random directions to try.
    seed : int
        Seed of the generator drawing the directions.

    Raises
    ------
    ValueError
        If ``inputs`` and ``grads`` do not pair up.
    AssertionError
        Naming the direction, both derivatives and their difference.
    """
    inputs, grads = list(inputs), list(grads)
    if len(inputs) != len(grads) or not inputs:
        raise ValueError(
            f"xpnet.testing: check_gradient needs one gradient per input, got {len(inputs)} "
            f"inputs and {len(grads)} gradients"
        )
    hosts = [_host(x).astype(np.float64) for x in inputs]
    host_grads = [_host(g).astype(np.float64) for g in grads]
    for i, (x, g) in enumerate(zip(hosts, host_grads, strict=True)):
        if x.shape != g.shape:
            raise ValueError(
                f"xpnet.testing: gradient {i} has shape {g.shape}, its input has {x.shape}"
            )
    rng = np.random.default_rng(seed)
    for k in range(directions):
        ds = [rng.standard_normal(x.shape) for x in hosts]
        norm = np.sqrt(sum(float(np.sum(d * d)) for d in ds))
        ds = [d / norm for d in ds]
        plus = [_like(x + eps * d, t) for x, d, t in zip(hosts, ds, inputs, strict=True)]
        minus = [_like(x - eps * d, t) for x, d, t in zip(hosts, ds, inputs, strict=True)]
        fd = (_scalar(f(*plus)) - _scalar(f(*minus))) / (2.0 * eps)
        analytic = sum(float(np.sum(g * d)) for g, d in zip(host_grads, ds, strict=True))
        if not abs(fd - analytic) <= atol + rtol * abs(analytic):
            raise AssertionError(
                f"gradient check failed in direction {k}: finite difference {fd:.12g}, "
                f"analytic {analytic:.12g}, difference {abs(fd - analytic):.3g} "
                f"(rtol={rtol:g}, atol={atol:g}, eps={eps:g})"
            )


def make_blobs(
    n_samples: int = 200,
    n_features: int = 4,
    n_classes: int = 3,
    *,
    spread: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A small classification problem: Gaussian clusters around random centres.

    Returns
    -------
    X : numpy.ndarray
        float64, shape ``(n_samples, n_features)``.
    y : numpy.ndarray
        int64 labels in ``[0, n_classes)``, each class equally often (up to one).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features)) * 3.0
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    X = centres[y] + spread * rng.standard_normal((n_samples, n_features))
    return X, y


def make_mlp(
    backend: str | Backend | None = None,
    sizes: Sequence[int] = (4, 16, 3),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    dtype: str = "float64",
    seed: int = 0,
) -> Sequential:
    """A small multi-layer perceptron on ``backend`` (default: the active one).

    ``sizes`` lists the widths input first; every hidden Dense layer carries ``activation``
    and, when ``dropout > 0``, is followed by a :class:`~xpnet.layers.Dropout`. The last
    Dense layer is linear (logits).
    """
    if len(sizes) < 2:
        raise ValueError(f"xpnet.testing: make_mlp needs at least two widths, got {sizes!r}")
    b = None if backend is None else _resolve(backend)
    model = Sequential(dtype=dtype, seed=seed, backend=b)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        model.add(Dense(n_in, n_out, activation=None if last else activation))
        if dropout > 0 and not last:
            model.add(Dropout(dropout))
    return model
