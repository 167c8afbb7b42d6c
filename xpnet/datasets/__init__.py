"""Data sets and preprocessing for xpnet.

Loaders return NumPy arrays on the host: :func:`load_mnist` and :func:`load_fashion_mnist`
(downloaded once into a verified cache, see :func:`resolve_data_dir`), :func:`load_digits`
(bundled with scikit-learn) and :func:`load_csv` (Kaggle "Digit Recognizer" CSV files).
"""

from __future__ import annotations

from xpnet.datasets.csvfile import load_csv
from xpnet.datasets.digits import load_digits
from xpnet.datasets.download import fetch_file
from xpnet.datasets.idx import parse_idx, read_idx
from xpnet.datasets.mnist import (
    FASHION_MNIST_MIRRORS,
    FASHION_MNIST_SHA256,
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    load_fashion_mnist,
    load_mnist,
    resolve_data_dir,
)
from xpnet.datasets.preprocessing import one_hot, standardize, to_unit_range, train_val_split

__all__ = [
    "FASHION_MNIST_MIRRORS",
    "FASHION_MNIST_SHA256",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "fetch_file",
    "load_csv",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "one_hot",
    "parse_idx",
    "read_idx",
    "resolve_data_dir",
    "standardize",
    "to_unit_range",
    "train_val_split",
]
