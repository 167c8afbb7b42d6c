"""Writing model files: the metadata record and :func:`save_model`.

It needs only a model's :meth:`~xpnet.Sequential.get_config` and its arrays, so it never imports
:mod:`xpnet.model`; the model's ``save`` goes through here (model -> writer -> codec).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..io_utils import atomic_write
from .arrays import model_arrays
from .codec import FORMAT_NAME, default_format, encode
from .schema import FORMAT_VERSION

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = ["base_metadata", "save_model"]


def base_metadata(model: Sequential) -> dict[str, Any]:
    """The metadata of a model file before its digests: format, versions, dtype, layers."""
    config = model.get_config()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "xpnet_version": __version__,
        "dtype": config["dtype"],
        "layers": config["layers"],
    }


def save_model(model: Sequential, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write ``model``'s architecture, weights and buffers to exactly ``path``, atomically.

    Parameters
    ----------
    model : Sequential
    path : str or PathLike
        The file to write (no extension is added). Its directory must exist.
    format : {"safetensors", "npz"}, optional
        Default: safetensors when installed, else npz.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        If a layer is not a registered layer type, or a weight or buffer is not finite.
    """
    arrays = model_arrays(model)
    fmt = default_format() if format is None else format
    return atomic_write(path, encode(arrays, base_metadata(model), fmt))
