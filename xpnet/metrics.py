"""Classification metrics on host (NumPy) arrays."""

from __future__ import annotations

import numpy as np

from .backend import to_numpy

__all__ = ["accuracy", "confusion_matrix", "format_confusion_matrix"]


def accuracy(y_true: object, y_pred: object) -> float:
    """Fraction of labels predicted right."""
    t, p = np.asarray(to_numpy(y_true)), np.asarray(to_numpy(y_pred))
    if t.shape != p.shape:
        raise ValueError(f"xpnet: accuracy got {t.shape} true labels and {p.shape} predictions")
    if t.size == 0:
        raise ValueError("xpnet: accuracy of zero samples is undefined")
    return float(np.mean(t == p))


def confusion_matrix(y_true: object, y_pred: object, n_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as ``j`` (int64)."""
    t = np.asarray(to_numpy(y_true)).astype(np.int64, copy=False).ravel()
    p = np.asarray(to_numpy(y_pred)).astype(np.int64, copy=False).ravel()
    if t.shape != p.shape:
        raise ValueError(f"xpnet: confusion_matrix got {t.size} labels and {p.size} predictions")
    if n_classes is None:
        n_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"xpnet: confusion_matrix labels must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def format_confusion_matrix(cm: np.ndarray, labels: list[str] | None = None) -> str:
    """A fixed-width text table: rows are true classes, columns predicted classes."""
    n = cm.shape[0]
    labels = labels or [str(i) for i in range(n)]
    width = max(len(str(int(cm.max(initial=0)))), max(len(s) for s in labels), 4)
    head = "true\\pred".ljust(10) + " ".join(s.rjust(width) for s in labels)
    rows = [
        labels[i].ljust(10) + " ".join(str(int(v)).rjust(width) for v in cm[i]) for i in range(n)
    ]
    return "\n".join([head, *rows])
