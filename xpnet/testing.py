"""Testing helpers: tolerances, cross-backend comparisons and finite-difference gradient checks.

These are public so that the GPU tests (and users extending xpnet with their own layers) can
check their numbers the same way xpnet's own test suite does:

>>> import numpy as np
>>> from xpnet.testing import assert_allclose, check_gradient
>>> x = np.array([0.5, -1.0, 2.0])
>>> assert_allclose(x * 2, np.array([1.0, -2.0, 4.0]))
>>> check_gradient(lambda a: float(np.sum(a**3)), [x], [3 * x**2])
>>> from xpnet.layers import Dense
>>> errors = check_layer(Dense(3, 3, activation="tanh"), np.ones((2, 3)))
>>> sorted(errors)
['W', 'b', 'input']
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import Backend, backend_of, get_backend, resolve_backend, to_numpy
from .layers import Dense, Dropout, Layer
from .model import Sequential

__all__ = [
    "TF32_TOLERANCE",
    "TOLERANCES",
    "assert_allclose",
    "check_gradient",
    "check_layer",
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

    True only for the ``cupy`` backend with ``CUPY_TF32`` set to a positive integer in the
    environment (CuPy reads it at import as ``int(...) > 0``); pass the result to
    :func:`tolerance`.
    """
    b = get_backend() if backend is None else resolve_backend(backend)
    if b.name != "cupy":
        return False
    try:
        return int(os.environ.get("CUPY_TF32", "0") or "0") > 0
    except ValueError:  # CuPy itself refuses such a value at import; TF32 is then not on
        return False


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


def check_layer(
    layer: Layer,
    x: Any,
    *,
    backend: str | Backend | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    directions: int = 3,
    elementwise: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Check a layer's input gradient and every parameter gradient by finite differences.

    The layer is built in float64 first if it has no backend yet. The scalar checked is
    ``sum(layer.forward(x, training=True) * g)`` for a fixed random ``g``, so the analytic
    gradients are those :meth:`~xpnet.layers.Layer.backward` returns for ``g`` (the input)
    and leaves in ``p.grad`` (each parameter). Each array is checked on its own, so a report
    names the wrong one: along ``directions`` random unit directions (as Chainer's
    ``check_backward`` does) or, with ``elementwise=True``, element by element. Parameters
    are perturbed in place and restored, so the layer may sit in a model (views into its flat
    buffer stay views). A stochastic layer gets ``set_random_key(seed, 0)`` before every
    forward, so its noise is the same in each.

    Parameters
    ----------
    layer : Layer
        Built (on float64 parameters) or not yet built.
    x : array
        The input, a host NumPy array or an array of the layer's backend; used as float64.
    backend : str or Backend, optional
        Where to build an unbuilt layer; default: ``x``'s backend for a device array, else the
        active backend.
    eps, rtol, atol : float
        Difference step and the tolerance ``|fd - analytic| <= atol + rtol * |analytic|``.
    directions : int
        Random directions per array (ignored with ``elementwise=True``).
    elementwise : bool
        Compare every element of every gradient (two forwards per element) instead.
    seed : int
        Seed of ``g``, of the directions, of an unbuilt layer's weights and its random key.

    Returns
    -------
    dict
        ``"input"`` and each parameter's name (``"W"``, ``"b"``; ``"name#i"`` if repeated) to
        the largest ``|fd - analytic|`` found for it.

    Raises
    ------
    ValueError
        If the layer's parameters are not float64, or ``directions`` is not positive.
    AssertionError
        With one line per array (the worst difference and whether it passed) when any
        gradient is wrong or missing.
    """
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 1:
        raise ValueError(f"xpnet.testing: directions must be a positive int, got {directions!r}")
    rng = np.random.default_rng(seed)
    if layer.backend is None:
        if backend is not None:
            target = resolve_backend(backend)
        elif isinstance(x, (np.ndarray, np.generic, list, tuple)):
            target = get_backend()
        else:
            target = backend_of(x)
        layer.build(target, "float64", np.random.default_rng(seed))
    b = layer.backend if layer.backend is not None else get_backend()
    params = layer.parameters()
    for p in params:
        if _dtype_name(p.data.dtype) != "float64":
            raise ValueError(
                f"xpnet.testing: check_layer needs float64 parameters (finite differences drown "
                f"in float32 rounding); {type(layer).__name__}.{p.name} is "
                f"{_dtype_name(p.data.dtype)}"
            )
    xd = b.asarray(_host(x).astype(np.float64), dtype="float64")

    def forward(inp: Any) -> Any:
        if layer.stochastic:
            layer.set_random_key(seed, 0)
        return layer.forward(inp, training=True)

    y = forward(xd)
    g_host = rng.standard_normal(tuple(int(d) for d in y.shape))
    g = b.asarray(g_host, dtype="float64")
    dx = layer.backward(g, need_input_grad=True)
    names, analytic = ["input"], [None if dx is None else _host(dx).astype(np.float64)]
    for p in params:
        name = p.name if p.name not in names else f"{p.name}#{len(names)}"
        names.append(name)
        analytic.append(None if p.grad is None else _host(p.grad).astype(np.float64))

    def objective() -> float:
        return float(np.sum(_host(forward(xd)).astype(np.float64) * g_host))

    def perturb(index: int, values: np.ndarray) -> None:
        nonlocal xd
        if index == 0:
            xd = b.asarray(values, dtype="float64")
        else:
            params[index - 1].data[...] = b.asarray(values, dtype="float64")

    originals = [_host(xd).astype(np.float64)] + [_host(p.data).astype(np.float64) for p in params]
    worst: dict[str, float] = {}
    lines: list[str] = []
    failed = False
    try:
        for index, (name, grad, base) in enumerate(zip(names, analytic, originals, strict=True)):
            if grad is None or grad.shape != base.shape:
                got = "nothing" if grad is None else f"shape {grad.shape}"
                lines.append(f"{name}: FAIL, backward gave {got} for an array of {base.shape}")
                failed, worst[name] = True, float("inf")
                continue
            fd, an = _layer_differences(
                base,
                grad,
                objective,
                functools.partial(perturb, index),
                eps,
                directions,
                elementwise,
                rng,
            )
            diff = np.abs(fd - an)
            ok = bool(np.all(diff <= atol + rtol * np.abs(an)))
            worst[name] = float(np.max(diff)) if diff.size else 0.0
            at = int(np.argmax(diff - (atol + rtol * np.abs(an)))) if diff.size else 0
            detail = (
                f"finite difference {fd.flat[at]:.12g}, analytic {an.flat[at]:.12g}"
                if diff.size
                else "empty"
            )
            lines.append(
                f"{name} {base.shape}: {'ok' if ok else 'FAIL'}, max |fd - analytic| "
                f"{worst[name]:.3g} (worst: {detail})"
            )
            failed |= not ok
            perturb(index, base)
    finally:
        for index, base in enumerate(originals):
            perturb(index, base)
    if failed:
        mode = "element by element" if elementwise else f"along {directions} random directions"
        raise AssertionError(
            f"gradient check of {layer!r} failed ({mode}; rtol={rtol:g}, atol={atol:g}, "
            f"eps={eps:g}):\n" + "\n".join(lines)
        )
    return worst


def _layer_differences(
    base: np.ndarray,
    grad: np.ndarray,
    objective: Callable[[], float],
    set_values: Callable[[np.ndarray], None],
    eps: float,
    directions: int,
    elementwise: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of ``objective`` around ``base`` and the matching analytic values:
    per element, or per random unit direction (``<grad, d>``)."""
    if base.size == 0:
        return np.zeros(0), np.zeros(0)
    if elementwise:
        fd = np.empty(base.size)
        for i in range(base.size):
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved.flat[i] += sign * eps
                set_values(moved)
                value = objective()
                fd[i] = value if sign > 0 else (fd[i] - value) / (2.0 * eps)
        return fd, grad.reshape(-1)
    fd, an = np.empty(directions), np.empty(directions)
    for k in range(directions):
        d = rng.standard_normal(base.shape)
        d /= np.sqrt(float(np.sum(d * d)))
        set_values(base + eps * d)
        plus = objective()
        set_values(base - eps * d)
        minus = objective()
        fd[k] = (plus - minus) / (2.0 * eps)
        an[k] = float(np.sum(grad * d))
    return fd, an


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
    b = None if backend is None else resolve_backend(backend)
    model = Sequential(dtype=dtype, seed=seed, backend=b)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        model.add(Dense(n_in, n_out, activation=None if last else activation))
        if dropout > 0 and not last:
            model.add(Dropout(dropout))
    return model
