"""Data sets and preprocessing for xpnet.

Loaders return NumPy arrays on the host: :func:`load_mnist` and :func:`load_fashion_mnist`
(downloaded once into a verified cache, see :func:`resolve_data_dir`), :func:`load_digits`
(bundled with scikit-learn) and :func:`load_csv` (Kaggle "Digit Recognizer" CSV files).
:func:`load_dataset` loads any of them by the command line's name, scaled to [0, 1], and
:func:`read_inputs` reads images to classify from a ``.npy`` array or an image file.
"""

from __future__ import annotations

from xpnet.datasets.catalog import (
    DATASETS,
    FASHION_MNIST_LABELS,
    TEST_FRACTION,
    TEST_SPLIT_SEED,
    Dataset,
    DatasetSpec,
    image_shape,
    load_dataset,
    parse_dataset_spec,
    pixel_scale,
)
from xpnet.datasets.csvfile import load_csv
from xpnet.datasets.digits import load_digits
from xpnet.datasets.download import fetch_file
from xpnet.datasets.idx import parse_idx, read_idx
from xpnet.datasets.images import read_image_file, read_inputs
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
from xpnet.datasets.preprocessing import (
    one_hot,
    scale_pixels,
    standardize,
    to_unit_range,
    train_val_split,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST_LABELS",
    "FASHION_MNIST_MIRRORS",
    "FASHION_MNIST_SHA256",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "TEST_FRACTION",
    "TEST_SPLIT_SEED",
    "Dataset",
    "DatasetSpec",
    "fetch_file",
    "image_shape",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "one_hot",
    "parse_dataset_spec",
    "parse_idx",
    "pixel_scale",
    "read_idx",
    "read_image_file",
    "read_inputs",
    "resolve_data_dir",
    "scale_pixels",
    "standardize",
    "to_unit_range",
    "train_val_split",
]
