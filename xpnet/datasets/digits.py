"""The 8x8 handwritten digits bundled with scikit-learn (1,797 samples, no download needed)."""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's bundled 8x8 digits data set.

    Returns
    -------
    X : numpy.ndarray
        float64 array of shape ``(1797, 64)`` with the original pixel values in 0..16.
    y : numpy.ndarray
        int64 array of shape ``(1797,)`` with labels in 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    # Imported here so that scikit-learn stays an optional dependency.
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            'load_digits needs scikit-learn; install it with: pip install "xpnet[sklearn]"'
        ) from exc
    X, y = _sk_load_digits(return_X_y=True)
    return np.ascontiguousarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)
