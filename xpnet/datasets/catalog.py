"""The data sets of the command line by name, loaded and scaled the same way every time.

Preprocessing happens here, so a saved model only ever sees inputs in [0, 1]: 28x28 pixels
(MNIST, Fashion-MNIST, CSV files) are divided by 255, and scikit-learn's 8x8 digits, whose
pixels run 0..16, by 16. :func:`pixel_scale` and :func:`image_shape` give the same choice from a
model's input width (784 or 64), so ``xpnet evaluate`` and ``xpnet predict`` scale as training
did.

>>> data = load_dataset("digits", need_train=False)
>>> data.X_test.shape, data.image_shape, float(data.X_test.max()) <= 1.0
((359, 64), (8, 8), True)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpnet.datasets.csvfile import load_csv
from xpnet.datasets.digits import load_digits
from xpnet.datasets.mnist import load_fashion_mnist, load_mnist
from xpnet.datasets.preprocessing import scale_pixels, train_val_split
from xpnet.errors import DataError
from xpnet.validation import InvalidArgumentError

__all__ = [
    "DATASETS",
    "FASHION_MNIST_LABELS",
    "TEST_FRACTION",
    "TEST_SPLIT_SEED",
    "Dataset",
    "DatasetSpec",
    "image_shape",
    "load_dataset",
    "parse_dataset_spec",
    "pixel_scale",
]

#: The named data sets; ``csv:PATH`` names a file.
DATASETS = ("mnist", "fashion-mnist", "digits")

#: Share of the digits and CSV data sets held out as their test set. The split uses a fixed
#: seed, not the training seed, so that ``xpnet evaluate`` sees the same test samples as
#: training did.
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0

FASHION_MNIST_LABELS = (
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
)


@dataclass(frozen=True)
class DatasetSpec:
    """A data set by name, or ``csv`` with the file's path."""

    name: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"csv:{self.path}" if self.path is not None else self.name


def parse_dataset_spec(text: str) -> DatasetSpec:
    """``"mnist"``, ``"fashion-mnist"`` (or ``fashion``), ``"digits"`` or ``"csv:PATH"``.

    Raises
    ------
    InvalidArgumentError
        For an unknown name (the message lists the valid ones).
    ValueError
        For ``csv:`` without a path.
    """
    if not isinstance(text, str):
        raise InvalidArgumentError("data set", "a name such as 'mnist' or 'csv:PATH'", text)
    key = text.strip()
    if key.lower().startswith("csv:"):
        path = key[4:]
        if not path:
            raise ValueError("xpnet: csv: needs a file path, as in csv:train.csv")
        return DatasetSpec("csv", Path(path).expanduser())
    key = key.lower().replace("_", "-")
    if key == "fashion":
        key = "fashion-mnist"
    # The original spelling in the message: that is what the user typed.
    choices = (*DATASETS, "csv:PATH")
    if key not in DATASETS:
        raise InvalidArgumentError("data set", "one of " + ", ".join(choices), text, choices)
    return DatasetSpec(key)


@dataclass
class Dataset:
    """A data set ready for the model: inputs scaled to [0, 1]."""

    name: str
    X_train: np.ndarray | None
    y_train: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    labels: list[str]


def image_shape(n_features: int) -> tuple[int, int]:
    """The square image shape of a model with ``n_features`` inputs (784: 28x28, 64: 8x8).

    Raises
    ------
    DataError
        If ``n_features`` is not a square.
    """
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise DataError(
            f"a model with {n_features} inputs does not take square images; the command line "
            "handles 28x28 (784 inputs) and 8x8 (64 inputs) images"
        )
    return side, side


def pixel_scale(n_features: int) -> int:
    """Full-scale raw pixel value of the data sets with this many inputs: digits 16, else 255."""
    return 16 if n_features == 64 else 255


def _split_test(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    return train_val_split(X, y, TEST_FRACTION, seed=TEST_SPLIT_SEED)


def load_dataset(
    spec: DatasetSpec | str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    dtype: str = "float32",
    need_train: bool = True,
) -> Dataset:
    """Load a data set, split a test set off when it has none, and scale it to [0, 1].

    Parameters
    ----------
    spec : DatasetSpec or str
        The data set, as :func:`parse_dataset_spec` reads it.
    data_dir : path-like, optional
        Where MNIST-format files live (see :func:`xpnet.datasets.resolve_data_dir`).
    download : bool, optional
        Whether missing MNIST / Fashion-MNIST files may be downloaded.
    dtype : str, optional
        Floating-point dtype of the scaled inputs.
    need_train : bool, optional
        False leaves ``X_train`` and ``y_train`` None (what evaluation needs).

    Raises
    ------
    DataError
        If a file is missing or malformed, or a CSV file has no labels or too few rows.
    """
    if not isinstance(spec, DatasetSpec):
        spec = parse_dataset_spec(spec)
    labels = [str(i) for i in range(10)]
    if spec.name in ("mnist", "fashion-mnist"):
        loader = load_mnist if spec.name == "mnist" else load_fashion_mnist
        (X, y), (Xt, yt) = loader(data_dir, download=download)
        if spec.name == "fashion-mnist":
            labels = list(FASHION_MNIST_LABELS)
        shape, scale = (28, 28), 255
    elif spec.name == "digits":
        X, y, Xt, yt = _split_test(*load_digits())
        shape, scale = (8, 8), 16
    else:
        assert spec.path is not None
        if not spec.path.is_file():
            raise DataError(f"CSV file {spec.path} does not exist")
        X, y_csv = load_csv(spec.path)
        if y_csv is None:
            raise DataError(
                f"{spec.path} has no 'label' column; training and evaluation need labelled "
                "rows (a Kaggle test.csv can go to 'xpnet predict' once saved as .npy)"
            )
        y = y_csv
        if y.shape[0] < 10:
            raise DataError(
                f"{spec.path} has {y.shape[0]} rows; at least 10 are needed to hold out a test set"
            )
        X, y, Xt, yt = _split_test(X, y)
        labels = [str(i) for i in range(max(10, int(y.max(initial=0)) + 1))]
        shape, scale = (28, 28), 255
    return Dataset(
        name=str(spec),
        X_train=scale_pixels(X, scale, dtype) if need_train else None,
        y_train=y if need_train else None,
        X_test=scale_pixels(Xt, scale, dtype),
        y_test=yt,
        image_shape=shape,
        labels=labels,
    )
