"""Preprocessing helpers: scaling, standardization, one-hot encoding and a stratified split.

These run on NumPy arrays on the host, before data is moved to an accelerator.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from xpnet.errors import DataError
from xpnet.validation import check_non_negative_int, check_number

__all__ = ["one_hot", "scale_pixels", "standardize", "to_unit_range", "train_val_split"]


def _float_dtype(dtype: DTypeLike, name: str = "dtype") -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"{name} must be a floating-point dtype, got {dt}")
    return dt


def to_unit_range(X: ArrayLike, dtype: DTypeLike = "float32") -> np.ndarray:
    """Scale pixel intensities from 0..255 to [0, 1].

    Parameters
    ----------
    X : array_like
        Pixel values in [0, 255], integer (typically uint8) or floating-point.
    dtype : dtype-like, optional
        Floating-point dtype of the result.

    Returns
    -------
    numpy.ndarray
        ``X / 255`` as a new array of ``dtype``, same shape as ``X``.

    Raises
    ------
    DataError
        If ``X`` is not numeric, or holds values outside [0, 255] or non-finite values.
    ValueError
        If ``dtype`` is not a floating-point dtype.
    """
    dt = _float_dtype(dtype)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"to_unit_range expects numeric pixel values, got dtype {X.dtype}")
    # uint8 cannot leave the range, so the (full-array) check is skipped for the common case.
    if X.dtype != np.uint8 and X.size:
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise DataError("to_unit_range: X holds non-finite values")
        lo, hi = X.min(), X.max()
        if lo < 0 or hi > 255:
            raise DataError(
                f"to_unit_range expects values in [0, 255], found min {lo} and max {hi}; "
                "is X already scaled or standardized?"
            )
    out = X.astype(dt, copy=True)
    out /= dt.type(255)
    return out


def scale_pixels(X: ArrayLike, max_value: int, dtype: DTypeLike = "float32") -> np.ndarray:
    """Scale raw pixels from 0..``max_value`` to [0, 1] (255: :func:`to_unit_range`).

    Parameters
    ----------
    X : array_like
        Pixel values in [0, ``max_value``], such as 0..16 for scikit-learn's 8x8 digits.
    max_value : int
        The full-scale pixel value.
    dtype : dtype-like, optional
        Floating-point dtype of the result.

    Returns
    -------
    numpy.ndarray
        ``X / max_value`` as a new array of ``dtype``, same shape as ``X``.

    Raises
    ------
    DataError
        If ``X`` is not numeric, or holds values outside [0, ``max_value``] or non-finite values.
    """
    if max_value == 255:
        return to_unit_range(X, dtype)
    dt = _float_dtype(dtype)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"expected numeric pixel values, got dtype {X.dtype}")
    if X.size and X.dtype.kind == "f" and not np.isfinite(X).all():
        raise DataError("the pixel values include NaN or infinity")
    if X.size and (X.min() < 0 or X.max() > max_value):
        raise DataError(
            f"expected pixel values in [0, {max_value}], found min {X.min():g} and max {X.max():g}"
        )
    return X.astype(dt) / np.asarray(max_value, dtype=dt)


def standardize(
    X: ArrayLike,
    mean: ArrayLike | None = None,
    std: ArrayLike | None = None,
    eps: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardize each feature (column) to zero mean and unit variance.

    Fit on the training set, then pass the returned ``mean`` and ``std`` to transform the
    validation and test sets identically.

    Parameters
    ----------
    X : array_like
        Samples along axis 0, shape ``(n, ...)``.
    mean, std : array_like, optional
        Per-feature statistics of shape ``X.shape[1:]``; computed from ``X`` when omitted.
    eps : float, optional
        Standard deviations at or below ``eps`` (constant features) are replaced by 1,
        so those features are centred but not blown up.

    Returns
    -------
    Z : numpy.ndarray
        ``(X - mean) / std``; floating-point ``X`` keeps its dtype, other input gives float64.
    mean, std : numpy.ndarray
        The statistics used, in ``Z``'s dtype (``std`` after the constant-feature fix).

    Raises
    ------
    DataError
        If ``X`` is not at least 1-D, is empty while statistics must be computed, or
        ``mean``/``std`` do not match the feature shape.
    """
    X = np.asarray(X)
    if X.ndim < 1:
        raise DataError("standardize expects an array of samples along axis 0, got a scalar")
    if X.dtype.kind not in "biuf":
        raise DataError(f"standardize expects numeric data, got dtype {X.dtype}")
    out_dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
    if (mean is None or std is None) and X.shape[0] == 0:
        raise DataError("standardize cannot compute statistics from zero samples")
    features = X.shape[1:]
    # Statistics in float64: float32 sums over 60,000 samples lose digits.
    if mean is None:
        mean_ = X.mean(axis=0, dtype=np.float64)
    else:
        mean_ = np.asarray(mean, dtype=np.float64)
    if std is None:
        std_ = X.std(axis=0, dtype=np.float64)
    else:
        std_ = np.asarray(std, dtype=np.float64)
    for name, value in (("mean", mean_), ("std", std_)):
        if value.shape != features:
            raise DataError(
                f"standardize: {name} has shape {value.shape}, expected the feature shape "
                f"{features}"
            )
    mean_ = mean_.astype(out_dtype)
    std_ = np.where(std_ <= eps, 1.0, std_).astype(out_dtype)
    # Arithmetic in the output dtype avoids float64 temporaries the size of X.
    Z = X.astype(out_dtype, copy=True)
    Z -= mean_
    Z /= std_
    return Z, mean_, std_


def one_hot(y: ArrayLike, n_classes: int | None = None, dtype: DTypeLike = "float32") -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Parameters
    ----------
    y : array_like
        1-D integer labels in ``0..n_classes-1``.
    n_classes : int, optional
        Number of classes; default ``max(y) + 1``.
    dtype : dtype-like, optional
        dtype of the result.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(len(y), n_classes)`` with a single 1 per row.

    Raises
    ------
    DataError
        If ``y`` is not a 1-D integer array or holds a label outside ``0..n_classes-1``.
    ValueError
        If ``n_classes`` is negative.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"one_hot expects 1-D labels, got shape {y.shape}")
    if y.dtype.kind not in "iub":
        raise DataError(f"one_hot expects integer labels, got dtype {y.dtype}")
    if n_classes is None:
        n_classes = int(y.max()) + 1 if y.size else 0
    else:
        n_classes = check_non_negative_int("n_classes", n_classes)
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise DataError(
            f"one_hot: labels must lie in 0..{n_classes - 1}, found min {int(y.min())} and "
            f"max {int(y.max())}"
        )
    out = np.zeros((y.shape[0], n_classes), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def _stratified_val_counts(counts: np.ndarray, n_val: int) -> np.ndarray:
    """Validation samples per class: proportional (largest remainder), >=1 each side if n>=2."""
    n = int(counts.sum())
    quota = counts * (n_val / n)
    take = np.floor(quota).astype(np.int64)
    remainder = n_val - int(take.sum())
    if remainder > 0:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:remainder]] += 1
    # A class with one sample cannot be on both sides; it stays in training.
    lo = np.where(counts >= 2, 1, 0)
    hi = np.where(counts >= 2, counts - 1, 0)
    return np.clip(take, lo, hi)


def train_val_split(
    X: ArrayLike,
    y: ArrayLike,
    val_fraction: float = 0.1,
    *,
    seed: int | np.random.Generator | None = 0,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split samples into a training and a validation set, at random but reproducibly.

    Parameters
    ----------
    X : array_like
        Samples along axis 0.
    y : array_like
        Labels, shape ``(n,)``.
    val_fraction : float, optional
        Share of the samples for validation, strictly between 0 and 1.
    seed : int, numpy.random.Generator or None, optional
        Seed for :func:`numpy.random.default_rng`; the same seed gives the same split.
    stratify : bool, optional
        Keep each class's share equal on both sides (up to rounding), and give every class
        with at least two samples at least one sample on each side. The validation size
        can then differ from ``round(n * val_fraction)`` by a few samples.

    Returns
    -------
    X_train, y_train, X_val, y_val : numpy.ndarray
        New arrays; rows are shuffled within each side.

    Raises
    ------
    ValueError
        If ``val_fraction`` is not in (0, 1).
    DataError
        If ``X`` and ``y`` have different lengths, ``y`` is not 1-D, or there are fewer
        than two samples.
    """
    val_fraction = check_number(
        "val_fraction", val_fraction, low=0.0, high=1.0, low_open=True, high_open=True
    )
    X = np.asarray(X)
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"train_val_split expects 1-D labels, got shape {y.shape}")
    if X.ndim < 1 or X.shape[0] != y.shape[0]:
        raise DataError(
            f"train_val_split: X has {X.shape[0] if X.ndim else 0} samples but y has "
            f"{y.shape[0]}; expected equal counts"
        )
    n = y.shape[0]
    if n < 2:
        raise DataError(f"train_val_split needs at least 2 samples, got {n}")
    rng = np.random.default_rng(seed)
    n_val = min(max(round(n * float(val_fraction)), 1), n - 1)

    if stratify:
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        take = _stratified_val_counts(counts, n_val)
        # Stable sort groups sample indices by class, in one pass instead of one per class.
        by_class = np.argsort(inverse, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        val_parts: list[np.ndarray] = []
        train_parts: list[np.ndarray] = []
        for start, count, k in zip(starts, counts, take, strict=True):
            members = rng.permutation(by_class[start : start + count])
            val_parts.append(members[:k])
            train_parts.append(members[k:])
        val_idx = rng.permutation(np.concatenate(val_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    else:
        perm = rng.permutation(n)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    return X[train_idx], y[train_idx], X[val_idx], y[val_idx]
