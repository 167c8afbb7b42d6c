"""``xpnet check``: train one small model from one seed on NumPy and on another backend, compare.

This is how a user proves an installation: the same MLP (with dropout), the same batches and
the same Adam steps on both backends, then the largest relative difference in the loss, the
gradients and the weights against a tolerance per dtype. Differences are norm-wise per array,
``max|a - d| / max|d|``: entries formed by cancellation make element-wise ratios meaningless,
while a wrong kernel moves the whole array.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CHECK_TF32_RTOL",
    "BackendCheck",
    "CheckReport",
    "DtypeCheck",
    "check_backends",
    "format_check",
    "run_check",
]

#: Relative tolerance for float32 when the GPU's matrix products use TensorFloat-32 (10
#: mantissa bits: each product is good to about 1e-3 of its terms, a few steps compound it).
CHECK_TF32_RTOL = 1e-2
#: The compared model: widths, activation, dropout rate; data: standardized Gaussian blobs.
CHECK_SIZES = (32, 64, 32, 10)
CHECK_ACTIVATION = "tanh"
CHECK_DROPOUT = 0.2
CHECK_SAMPLES = 512
#: The timed model: the shape of ``xpnet train``'s default (784-512-256-10, dropout 0.2).
SPEED_SIZES = (784, 512, 256, 10)
SPEED_BATCH = 128
SPEED_WARMUP = 3


@dataclass
class DtypeCheck:
    """The comparison in one dtype: largest relative differences and the verdict."""

    dtype: str
    loss: float
    gradients: float
    weights: float
    rtol: float
    tf32: bool

    @property
    def agree(self) -> bool:
        return max(self.loss, self.gradients, self.weights) <= self.rtol


@dataclass
class BackendCheck:
    """One backend compared with NumPy, per dtype, and its training speed."""

    backend: str
    device: str
    dtypes: list[DtypeCheck]
    steps_per_second: float | None = None

    @property
    def agree(self) -> bool:
        return all(d.agree for d in self.dtypes)


@dataclass
class CheckReport:
    """Everything ``xpnet check`` prints; :meth:`to_dict` for JSON."""

    steps: int
    batch_size: int
    seed: int
    model: str
    speed_model: str | None
    numpy_steps_per_second: float | None
    backends: list[BackendCheck] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return all(b.agree for b in self.backends)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the verdicts added; infinite differences become None."""
        out = _finite(asdict(self))
        for b_dict, b in zip(out["backends"], self.backends, strict=True):
            b_dict["agree"] = b.agree
            for d_dict, d in zip(b_dict["dtypes"], b.dtypes, strict=True):
                d_dict["agree"] = d.agree
        out["agree"] = self.agree
        return out


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def check_backends(backend: str | None = None) -> list[str]:
    """The backends ``run_check`` compares with NumPy: ``backend``, or every available one.

    Raises
    ------
    BackendUnavailableError
        ``backend`` cannot run here, or (``backend=None``) no backend but NumPy can.
    ValueError
        ``backend`` is ``"numpy"`` (the reference) or unknown.
    """
    from ..backend import BACKEND_NAMES, _resolve, unavailable_reason
    from ..errors import BackendUnavailableError

    if backend is not None:
        name = _resolve(backend).name  # raises with the reason and the fix
        if name == "numpy":
            raise ValueError(
                "xpnet: check compares a backend with NumPy; choose another backend than "
                f"numpy (one of {', '.join(n for n in BACKEND_NAMES if n != 'numpy')})"
            )
        return [name]
    reasons = {n: unavailable_reason(n) for n in BACKEND_NAMES if n != "numpy"}
    names = [n for n, why in reasons.items() if why is None]
    if not names:
        why = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        raise BackendUnavailableError(f"no backend besides numpy can run here ({why})")
    return names


def _relative(actual: np.ndarray, desired: np.ndarray) -> float:
    a, d = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    if a.shape != d.shape:
        return float("inf")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = float(np.max(np.abs(a - d))) if a.size else 0.0
        scale = float(np.max(np.abs(d))) if d.size else 0.0
    if diff != diff:  # NaN: the same NaNs in both are no difference, any other is
        same = np.array_equal(np.isnan(a), np.isnan(d)) and np.array_equal(
            a[~np.isnan(a)], d[~np.isnan(d)]
        )
        return 0.0 if same else float("inf")
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")


def _keys(model: Any, seed: int) -> list[tuple[Any, int]]:
    layers = [layer for layer in model.layers if layer.stochastic]
    seeds = np.random.default_rng(seed).integers(0, 2**63 - 1, size=len(layers))
    return [(layer, int(s)) for layer, s in zip(layers, seeds, strict=True)]


def _trace(name: str, dtype: str, steps: int, batch: int, seed: int) -> dict[str, Any]:
    """Train the check model for ``steps`` Adam steps on ``name``; host copies of each step."""
    from ..backend import _resolve, to_numpy
    from ..losses import SoftmaxCrossEntropy
    from ..optimizers import Adam
    from ..testing import make_blobs, make_mlp

    backend = _resolve(name)
    X, y = make_blobs(CHECK_SAMPLES, CHECK_SIZES[0], CHECK_SIZES[-1], seed=seed)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = make_mlp(
        backend,
        CHECK_SIZES,
        activation=CHECK_ACTIVATION,
        dropout=CHECK_DROPOUT,
        dtype=dtype,
        seed=seed,
    )
    Xd, yd = backend.asarray(X, dtype=dtype), backend.asarray(y, dtype="int64")
    loss_fn, opt, params = SoftmaxCrossEntropy(), Adam(lr=1e-3), model.parameters()
    keys = _keys(model, seed + 1)
    losses, grads = [], []
    for step in range(steps):
        lo = (step * batch) % (CHECK_SAMPLES - batch + 1)
        for layer, key in keys:
            layer.set_random_key(key, step)
        value = loss_fn.forward(
            model.forward(Xd[lo : lo + batch, ...], training=True), yd[lo : lo + batch]
        )
        model.backward(loss_fn.backward())
        grads.append([to_numpy(p.grad).copy() for p in params])
        opt.step(params)
        losses.append(float(value))
    return {"losses": np.array(losses), "grads": grads, "weights": model.get_weights()}


def _steps_per_second(name: str, steps: int, seed: int) -> float:
    """Adam steps per second of the timed model on ``name`` (one read-back, at the end)."""
    from ..backend import _resolve
    from ..losses import SoftmaxCrossEntropy
    from ..optimizers import Adam
    from ..testing import make_mlp

    backend = _resolve(name)
    rng = np.random.default_rng(seed)
    X = backend.asarray(rng.standard_normal((SPEED_BATCH * 4, SPEED_SIZES[0])), "float32")
    y = backend.asarray(rng.integers(0, SPEED_SIZES[-1], SPEED_BATCH * 4), "int64")
    model = make_mlp(backend, SPEED_SIZES, dropout=CHECK_DROPOUT, dtype="float32", seed=seed)
    loss_fn, opt, params = SoftmaxCrossEntropy(), Adam(lr=1e-3), model.parameters()
    keys = _keys(model, seed)
    value: Any = None

    def step(i: int) -> Any:
        lo = (i % 4) * SPEED_BATCH
        for layer, key in keys:
            layer.set_random_key(key, i)
        out = loss_fn.forward(
            model.forward(X[lo : lo + SPEED_BATCH, ...], training=True), y[lo : lo + SPEED_BATCH]
        )
        model.backward(loss_fn.backward())
        opt.step(params)
        return out

    for i in range(SPEED_WARMUP):  # compile kernels, pick GEMM algorithms
        value = step(i)
    float(value)
    t0 = time.perf_counter()
    for i in range(steps):
        value = step(SPEED_WARMUP + i)
    float(value)  # waits for the device: the timing covers the work, not just its launch
    return steps / (time.perf_counter() - t0)


def _compare(name: str, dtype: str, steps: int, batch: int, seed: int) -> DtypeCheck:
    from ..testing import tf32_active, tolerance

    ref = _trace("numpy", dtype, steps, batch, seed)
    got = _trace(name, dtype, steps, batch, seed)
    tf32 = dtype == "float32" and tf32_active(name)
    grads = [
        _relative(a, d)
        for ga, gd in zip(got["grads"], ref["grads"], strict=True)
        for a, d in zip(ga, gd, strict=True)
    ]
    weights = [_relative(a, d) for a, d in zip(got["weights"], ref["weights"], strict=True)]
    return DtypeCheck(
        dtype=dtype,
        loss=max(_relative(a, d) for a, d in zip(got["losses"], ref["losses"], strict=True)),
        gradients=max(grads),
        weights=max(weights),
        rtol=CHECK_TF32_RTOL if tf32 else tolerance(dtype)[0],
        tf32=tf32,
    )


def run_check(
    backend: str | None = None,
    steps: int = 20,
    *,
    dtypes: Sequence[str] = ("float64", "float32"),
    batch_size: int = 64,
    seed: int = 0,
    speed: bool = True,
) -> CheckReport:
    """Train the check model on NumPy and on ``backend`` and compare them step for step.

    Parameters
    ----------
    backend : str, optional
        The backend to compare with NumPy; default: every available backend but NumPy.
    steps : int
        Adam steps (lr 1e-3) of a 32-64-32-10 tanh MLP with dropout 0.2 on standardized
        blobs, the same batches and dropout keys on both backends.
    dtypes : sequence of {"float64", "float32"}
        The precisions compared. Tolerances (relative, norm-wise per array): float64 1e-10,
        float32 1e-4, or :data:`CHECK_TF32_RTOL` when TF32 is on for the backend.
    batch_size : int
        Rows per step (at most 512).
    seed : int
        Seed of the weights, the data and the dropout keys.
    speed : bool
        Also time ``steps`` training steps of a 784-512-256-10 model (dropout 0.2, float32,
        batch 128) on NumPy and on each backend.

    Returns
    -------
    CheckReport
        ``report.agree`` is the verdict; :func:`format_check` prints it.

    Raises
    ------
    BackendUnavailableError
        The backend cannot run here (no package or device), or failed while running (for
        CuPy without the CUDA toolkit: no kernel compiles, no cuBLAS).
    ValueError
        A bad argument (``backend="numpy"``, ``steps < 1``, an unknown dtype).
    """
    from ..backend import _resolve
    from ..errors import BackendUnavailableError
    from ..model import _check_dtype
    from ..validation import check_positive_int

    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > CHECK_SAMPLES:
        raise ValueError(f"xpnet: batch_size must be at most {CHECK_SAMPLES}, got {batch_size}")
    dtypes = [_check_dtype(d) for d in dtypes]
    names = check_backends(backend)
    sizes = "-".join(map(str, CHECK_SIZES))
    report = CheckReport(
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        model=f"{sizes} {CHECK_ACTIVATION} MLP, dropout {CHECK_DROPOUT}, Adam lr 1e-3",
        speed_model=(
            f"{'-'.join(map(str, SPEED_SIZES))} relu MLP, dropout {CHECK_DROPOUT}, float32, "
            f"batch {SPEED_BATCH}"
        )
        if speed
        else None,
        numpy_steps_per_second=_steps_per_second("numpy", steps, seed) if speed else None,
    )
    for name in names:
        try:
            results = [_compare(name, d, steps, batch_size, seed) for d in dtypes]
            rate = _steps_per_second(name, steps, seed) if speed else None
        except Exception as exc:
            raise BackendUnavailableError(
                f"the {name!r} backend failed while running the check ({_one_line(exc)}); "
                "'xpnet info' shows its setup"
            ) from exc
        device = _resolve(name).device_name
        report.backends.append(BackendCheck(name, device, results, rate))
    return report


def format_check(report: CheckReport) -> str:
    """The report as text: a table per backend, then ``agree`` or ``DISAGREE``."""
    lines = [
        f"xpnet check: {report.steps} steps of a {report.model}, batch {report.batch_size}, "
        f"seed {report.seed}; largest relative difference from numpy (max|a-d| / max|d| per "
        "array)"
    ]
    for b in report.backends:
        lines += ["", f"{b.backend} on {b.device}:"]
        header = f"  {'dtype':<9}{'loss':>11}{'gradients':>11}{'weights':>11}{'tolerance':>11}"
        lines += [header + "  result", "  " + "-" * (len(header) + 6)]
        for d in b.dtypes:
            tol = f"{d.rtol:.0e}" + (" tf32" if d.tf32 else "")
            lines.append(
                f"  {d.dtype:<9}{d.loss:>11.2e}{d.gradients:>11.2e}{d.weights:>11.2e}"
                f"{tol:>11}  {'agree' if d.agree else 'DISAGREE'}"
            )
        if b.steps_per_second is not None and report.numpy_steps_per_second is not None:
            lines.append(
                f"  speed ({report.speed_model}): {b.steps_per_second:.1f} steps/s, "
                f"numpy {report.numpy_steps_per_second:.1f} steps/s"
            )
    lines += ["", "agree" if report.agree else "DISAGREE"]
    return "\n".join(lines)
