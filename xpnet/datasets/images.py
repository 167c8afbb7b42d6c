"""Images to classify, from a ``.npy`` array of raw pixels or an image file such as a PNG.

What ``xpnet predict`` reads: the pixels come back scaled to [0, 1] the way the model's
training data was (see :mod:`xpnet.datasets.catalog`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xpnet.datasets.catalog import image_shape, pixel_scale
from xpnet.datasets.preprocessing import scale_pixels
from xpnet.errors import DataError

__all__ = ["read_image_file", "read_inputs"]


def read_image_file(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    """An image file as a (1, h * w) uint8 array: grayscale, resized to ``shape`` (h, w), light
    strokes on a dark background as in MNIST.

    Raises
    ------
    ImportError
        If Pillow is not installed.
    DataError
        If the file is not a readable image.
    """
    path = Path(path)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise ImportError(
            f"reading {path.suffix or 'image'} files needs Pillow (pip install pillow); "
            "or pass the pixels as a .npy file"
        ) from exc
    try:
        with Image.open(path) as img:
            gray = img.convert("L").resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
            pixels = np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path} is not a readable image ({exc})") from exc
    # MNIST digits are light on dark; a scan or a drawing is usually dark on light. The
    # border says which: it is background in any centred digit.
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels = 255 - pixels
    return pixels.reshape(1, -1)


def read_inputs(path: str | os.PathLike[str], n_features: int, dtype: str) -> np.ndarray:
    """Images for a model with ``n_features`` inputs, as a (n, n_features) array in [0, 1].

    Parameters
    ----------
    path : path-like
        A ``.npy`` array of raw pixels, (n, n_features), (n, h, w), one (h, w) image or
        (n_features,), values 0..255 (0..16 for a 64-input digits model); any other suffix is
        read as an image file (needs Pillow).
    n_features : int
        The model's input width: a square, such as 784 or 64.
    dtype : str
        Floating-point dtype of the result.

    Raises
    ------
    DataError
        If the file is missing or unreadable, or its shape or values do not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    shape = image_shape(n_features)
    if path.suffix.lower() != ".npy":
        return scale_pixels(read_image_file(path, shape), 255, dtype)
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc})") from exc
    if X.shape in ((n_features,), shape):
        X = X.reshape(1, n_features)
    elif X.ndim == 3 and X.shape[1:] == shape:
        X = X.reshape(X.shape[0], n_features)
    if X.ndim != 2 or X.shape[1] != n_features or X.shape[0] == 0:
        h, w = shape
        raise DataError(
            f"{path}: expected images of shape (n, {n_features}), (n, {h}, {w}), ({h}, {w}) or "
            f"({n_features},) for this model, got an array of shape {X.shape}"
        )
    max_value = pixel_scale(n_features)
    if X.dtype.kind == "f" and X.size and 0 < np.nanmax(X) <= 1.0:
        raise DataError(
            f"{path}: the values all lie in [0, 1], but xpnet predict expects raw pixel values "
            f"0..{max_value} (it scales them itself); multiply by {max_value} first"
        )
    try:
        return scale_pixels(X, max_value, dtype)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
