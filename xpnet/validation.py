"""Input checks in the spirit of scikit-learn's ``check_array``: say what was expected and
what was given, before any work starts."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import namespace_of

__all__ = ["check_X", "check_X_y", "check_positive_int"]


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"xpnet: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_X(X: Any, n_features: int | None = None, *, name: str = "X") -> np.ndarray | Any:
    """Validate a 2-D numeric feature matrix; return it unchanged (no copy)."""
    if isinstance(X, (list, tuple)):
        X = _from_sequence(X, name)
    shape = getattr(X, "shape", None)
    dtype = getattr(X, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"xpnet: {name} must be an array, got {type(X).__name__}")
    if len(shape) != 2:
        raise ValueError(
            f"xpnet: {name} must be 2-D (n_samples, n_features), got shape {tuple(shape)}"
            + ("; reshape a single sample with X.reshape(1, -1)" if len(shape) == 1 else "")
        )
    if shape[0] == 0:
        raise ValueError(f"xpnet: {name} has zero samples; at least one is needed")
    if _is_host(X):
        if X.dtype.kind not in "biuf":
            raise ValueError(f"xpnet: {name} must hold numbers (int or float), got dtype {X.dtype}")
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            bad = int(np.count_nonzero(~np.isfinite(X)))
            raise ValueError(f"xpnet: {name} contains {bad} NaN or infinite values")
    else:
        # One read-back per call (fit/evaluate/predict), never per batch.
        xp = namespace_of(X)
        if xp.isdtype(X.dtype, "real floating"):
            if not bool(xp.all(xp.isfinite(X))):
                raise ValueError(f"xpnet: {name} contains NaN or infinite values")
        elif not xp.isdtype(X.dtype, ("integral", "bool")):
            raise ValueError(f"xpnet: {name} must hold numbers (int or float), got dtype {X.dtype}")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(
            f"xpnet: {name} has {shape[1]} features but the model's first layer expects "
            f"{n_features}"
        )
    return X


def _is_host(a: Any) -> bool:
    return isinstance(a, np.ndarray)


def _from_sequence(a: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(a)
    except ValueError as exc:  # ragged nesting
        raise ValueError(f"xpnet: {name} is not a rectangular array ({exc})") from exc


def check_y(y: Any, n_samples: int, n_classes: int | None) -> Any:
    """Validate integer class labels in ``[0, n_classes)`` (or real targets if ``n_classes`` is
    None)."""
    if isinstance(y, (list, tuple)):
        y = _from_sequence(y, "y")
    shape = getattr(y, "shape", None)
    if shape is None:
        raise TypeError(f"xpnet: y must be an array, got {type(y).__name__}")
    if len(shape) not in (1, 2):
        raise ValueError(
            f"xpnet: y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape "
            f"{tuple(shape)}"
        )
    if shape[0] != n_samples:
        raise ValueError(f"xpnet: X has {n_samples} samples but y has {shape[0]}")
    if n_classes is not None and len(shape) == 2 and shape[1] != n_classes:
        raise ValueError(
            f"xpnet: y of shape {tuple(shape)} must be labels (n_samples,) or class "
            f"probabilities (n_samples, {n_classes}) for a model with {n_classes} outputs"
        )
    if not _is_host(y):
        _check_device_y(y, n_classes)
        return y
    if n_classes is not None and y.ndim == 1:
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError("xpnet: y must hold integer class labels, got non-integer values")
        elif y.dtype.kind not in "iu":
            raise ValueError(f"xpnet: y must hold integer class labels, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"xpnet: labels must lie in [0, {n_classes}) for a model with {n_classes} "
                f"outputs, got values from {int(y.min())} to {int(y.max())}"
            )
    elif y.dtype.kind not in "biuf":
        raise ValueError(f"xpnet: y must be numeric, got dtype {y.dtype}")
    elif y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("xpnet: y contains NaN or infinite values")
    return y


def _check_device_y(y: Any, n_classes: int | None) -> None:
    # A handful of read-backs per call, like the host checks; never per batch.
    xp = namespace_of(y)
    if n_classes is not None and y.ndim == 1:
        if not xp.isdtype(y.dtype, "integral"):
            raise ValueError(f"xpnet: y must hold integer class labels, got dtype {y.dtype}")
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"xpnet: labels must lie in [0, {n_classes}) for a model with {n_classes} "
                f"outputs, got values from {lo} to {hi}"
            )
    elif xp.isdtype(y.dtype, "real floating"):
        if not bool(xp.all(xp.isfinite(y))):
            raise ValueError("xpnet: y contains NaN or infinite values")
    elif not xp.isdtype(y.dtype, ("integral", "bool")):
        raise ValueError(f"xpnet: y must be numeric, got dtype {y.dtype}")


def check_X_y(
    X: Any, y: Any, n_features: int | None = None, n_classes: int | None = None
) -> tuple[Any, Any]:
    """Validate features and targets together."""
    X = check_X(X, n_features)
    y = check_y(y, X.shape[0], n_classes)
    return X, y
