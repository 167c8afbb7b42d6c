"""PNG figures of a training run: learning curves, confusion matrix, predictions, weights.

Needs matplotlib (``pip install "xpnet[plot]"``). Figures are drawn on matplotlib's Agg
canvas directly, without ``pyplot``: nothing global is switched or left open, so these
functions are safe on a headless server, in threads, and inside a Jupyter session that uses
another backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import to_numpy

__all__ = [
    "plot_confusion_matrix",
    "plot_first_layer_weights",
    "plot_learning_curves",
    "plot_sample_predictions",
    "require_matplotlib",
]

_INSTALL_HINT = 'plotting needs matplotlib: pip install "xpnet[plot]"'
_DPI = 110
_WRONG = "#d62728"
_RIGHT = "#2ca02c"


def require_matplotlib() -> None:
    """Raise ImportError with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.1)
    return path


def _history_dict(history: Any) -> dict[str, list[float]]:
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if not isinstance(history, Mapping):
        raise TypeError(
            "plot_learning_curves expects a History or a mapping of metric name to per-epoch "
            f"values, got {type(history).__name__}"
        )
    if not history.get("loss"):
        raise ValueError("plot_learning_curves: the history has no 'loss' values to plot")
    return {str(k): list(v) for k, v in history.items() if isinstance(v, Sequence)}


def _series(values: Sequence[Any] | None, n: int) -> np.ndarray | None:
    """Per-epoch values as floats (None -> NaN, a gap in the line); None if absent."""
    if not values or all(v is None for v in values):
        return None
    if len(values) != n:
        raise ValueError(
            f"plot_learning_curves: every metric needs one value per epoch ({n}), got {len(values)}"
        )
    return np.array([np.nan if v is None else float(v) for v in values])


def plot_learning_curves(history: Any, path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : History or mapping
        A :class:`~xpnet.History`, its ``history`` dict, or the ``history`` entry of the
        ``xpnet train --json`` summary: ``"loss"`` and optionally ``"accuracy"``,
        ``"val_loss"``, ``"val_accuracy"``, one value per epoch (``None`` leaves a gap).
    path : str or os.PathLike
        The PNG file to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    h = _history_dict(history)
    n = len(h["loss"])
    epochs = np.arange(1, n + 1)
    has_acc = _series(h.get("accuracy"), n) is not None
    fig = _figure(10.0 if has_acc else 5.5, 4.0)
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    panels = [("loss", "Loss (cross-entropy)")]
    if has_acc:
        panels.append(("accuracy", "Accuracy"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for prefix, label, style in (("", "train", "-o"), ("val_", "validation", "-s")):
            values = _series(h.get(prefix + key), n)
            if values is not None:
                ax.plot(epochs, values, style, markersize=4, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
        # Whole epochs only; a fractional tick would suggest a measurement that was not taken.
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def plot_confusion_matrix(
    cm: Any, path: str | os.PathLike[str], labels: Sequence[str] | None = None
) -> Path:
    """The confusion matrix as a heat map with the count in every cell.

    Parameters
    ----------
    cm : array of shape (k, k)
        ``cm[i, j]``: samples of true class ``i`` predicted as ``j``
        (:func:`xpnet.metrics.confusion_matrix`).
    path : str or os.PathLike
        The PNG file to write.
    labels : sequence of str, optional
        Class names; default ``0 .. k-1``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Colours follow each row's share of its true class, so a rare class's errors are as
    visible as a common one's, on a compressed scale (a 1% confusion is clearly tinted); the
    numbers are the raw counts.
    """
    cm = np.asarray(to_numpy(cm))
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"plot_confusion_matrix expects a square (k, k) array, got {cm.shape}")
    if cm.dtype.kind not in "iuf" or (cm.size and cm.min() < 0):
        raise ValueError("plot_confusion_matrix expects non-negative counts")
    k = cm.shape[0]
    labels = [str(i) for i in range(k)] if labels is None else [str(s) for s in labels]
    if len(labels) != k:
        raise ValueError(f"plot_confusion_matrix: {k} classes but {len(labels)} labels")
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    side = max(4.5, 0.55 * k + 1.5)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    from matplotlib.colors import PowerNorm

    # A compressing norm: at 98% accuracy the errors are 1% shares, invisible on a linear scale.
    norm = PowerNorm(gamma=0.3, vmin=0.0, vmax=1.0)
    image = ax.imshow(share, cmap="Blues", norm=norm)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 30:
        fontsize = 9 if k <= 12 else 6
        for i in range(k):
            for j in range(k):
                count = cm[i, j]
                text = f"{count:g}" if cm.dtype.kind == "f" else str(int(count))
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if norm(share[i, j]) > 0.6 else "black",
                )
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = cm.sum()
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"Confusion matrix (accuracy {acc:.2%}, {int(total):,} samples)")
    return _save(fig, path)


def _as_images(
    images: Any, image_shape: tuple[int, int], what: str
) -> tuple[np.ndarray, tuple[int, int]]:
    images = np.asarray(to_numpy(images))
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"{what}: image_shape must be (height, width), got {image_shape!r}")
    size = shape[0] * shape[1]
    if images.ndim == 3 and images.shape[1:] == shape:
        images = images.reshape(images.shape[0], size)
    if images.ndim != 2 or images.shape[1] != size:
        raise ValueError(
            f"{what}: expected images of shape (n, {size}) or (n, {shape[0]}, {shape[1]}) "
            f"for image_shape {shape}, got {images.shape}"
        )
    if images.dtype.kind not in "biuf":
        raise ValueError(f"{what}: images must be numeric, got dtype {images.dtype}")
    return images, shape


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def plot_sample_predictions(
    images: Any,
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str],
    image_shape: tuple[int, int] = (28, 28),
    n: int = 25,
) -> Path:
    """A grid of the first ``n`` images titled with prediction and truth; mistakes in red.

    Parameters
    ----------
    images : array of shape (m, h*w) or (m, h, w)
        The images, any intensity scale (each is drawn with the grid's common range).
    y_true, y_pred : array of shape (m,)
        True and predicted labels.
    path : str or os.PathLike
        The PNG file to write.
    image_shape : (int, int)
        Height and width of one image: (28, 28) for MNIST, (8, 8) for digits.
    n : int
        Images to draw (at most ``m``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    images, shape = _as_images(images, image_shape, "plot_sample_predictions")
    t = np.asarray(to_numpy(y_true)).ravel()
    p = np.asarray(to_numpy(y_pred)).ravel()
    if not (t.shape[0] == p.shape[0] == images.shape[0]):
        raise ValueError(
            f"plot_sample_predictions: {images.shape[0]} images, {t.shape[0]} true labels and "
            f"{p.shape[0]} predictions; expected one of each per image"
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"plot_sample_predictions: n must be a positive integer, got {n!r}")
    m = min(int(n), images.shape[0])
    if m == 0:
        raise ValueError("plot_sample_predictions: no images to plot")
    rows, cols = _grid(m)
    fig = _figure(1.5 * cols, 1.65 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    lo, hi = float(images[:m].min()), float(images[:m].max())
    wrong = 0
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= m:
            ax.set_axis_off()
            continue
        ok = t[i] == p[i]
        wrong += not ok
        ax.imshow(images[i].reshape(shape), cmap="gray_r", vmin=lo, vmax=hi)
        color = _RIGHT if ok else _WRONG
        ax.set_title(
            f"pred {p[i]}" if ok else f"pred {p[i]} (true {t[i]})",
            color=color,
            fontsize=9,
            fontweight="normal" if ok else "bold",
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(1.0 if ok else 3.0)
    fig.suptitle(f"Sample predictions: {m - wrong} right, {wrong} wrong (red)")
    return _save(fig, path)


def plot_first_layer_weights(
    W: Any,
    path: str | os.PathLike[str],
    image_shape: tuple[int, int] = (28, 28),
    n: int = 64,
) -> Path:
    """Each of the first ``n`` hidden units' input weights drawn as an image.

    Parameters
    ----------
    W : array of shape (h*w, units)
        The first Dense layer's weight matrix (``model.get_weights()[0]``); column ``j`` holds
        the weights from every pixel into unit ``j``.
    path : str or os.PathLike
        The PNG file to write.
    image_shape : (int, int)
        Height and width of one input image.
    n : int
        Units to draw (at most ``units``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Each unit gets its own symmetric colour scale (red positive, blue negative, white zero),
    since units differ in overall weight size and a common scale would wash most of them out.
    """
    W = np.asarray(to_numpy(W))
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"plot_first_layer_weights: image_shape must be (height, width), got {image_shape!r}"
        )
    if W.ndim != 2 or W.shape[0] != shape[0] * shape[1]:
        raise ValueError(
            f"plot_first_layer_weights: expected a weight matrix of shape "
            f"({shape[0] * shape[1]}, units) for {shape[0]}x{shape[1]} images, got {W.shape}"
        )
    if W.dtype.kind not in "iuf" or not np.isfinite(W).all():
        raise ValueError("plot_first_layer_weights: W must hold finite numbers")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"plot_first_layer_weights: n must be a positive integer, got {n!r}")
    m = min(int(n), W.shape[1])
    rows, cols = _grid(m)
    fig = _figure(1.1 * cols, 1.1 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for j, ax in enumerate(axes):
        ax.set_axis_off()
        if j >= m:
            continue
        w = W[:, j].reshape(shape)
        scale = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    fig.suptitle(f"First-layer weights: {m} of {W.shape[1]} units (red +, blue -)")
    return _save(fig, path)
