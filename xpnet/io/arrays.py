"""A model's state as named host arrays, and back, through the model's own methods.

This module never imports :mod:`xpnet.model`: it receives a model and uses only its ``layers``,
``parameters()``, ``set_weights()``, ``dtype`` and ``backend``, so both the writer (which the
model uses) and the training-state code can depend on it without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import to_numpy

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = ["buffer_arrays", "model_arrays", "parameter_names", "restore_buffers"]


def parameter_names(model: Sequential) -> list[str]:
    """Array names of the model's parameters, in :meth:`~xpnet.Sequential.parameters` order."""
    model.parameters()  # builds the layers, so that each one has its parameters
    return [
        f"layers.{i}.{p.name}" for i, layer in enumerate(model.layers) for p in layer.parameters()
    ]


def buffer_arrays(model: Sequential) -> dict[str, np.ndarray]:
    """Host copies of every layer's buffers, named ``buffers.<i>.<name>``."""
    model.parameters()
    return {
        f"buffers.{i}.{name}": np.array(to_numpy(a), copy=True)
        for i, layer in enumerate(model.layers)
        for name, a in layer.buffers().items()
    }


def model_arrays(model: Sequential) -> dict[str, np.ndarray]:
    """Host copies of the parameters and buffers, refusing non-finite values.

    Raises
    ------
    ValueError
        If an array is not of the model's dtype or holds NaN or infinite values (such a file
        would not load).
    """
    arrays: dict[str, np.ndarray] = {}
    params = model.parameters()
    for name, p in zip(parameter_names(model), params, strict=True):
        arrays[name] = np.array(to_numpy(p.data), copy=True)
    arrays.update(buffer_arrays(model))
    for name, a in arrays.items():
        if a.dtype != np.dtype(model.dtype):
            # The file holds one dtype, the model's; a buffer of another could not be loaded.
            raise ValueError(
                f"xpnet: {name} has dtype {a.dtype}, but the model's dtype is {model.dtype}; "
                "a layer's buffers must have the model's dtype to be saved"
            )
        if not np.isfinite(a).all():
            what = "weight" if name.startswith("layers.") else "buffer"
            raise ValueError(
                f"xpnet: {what} {name} holds NaN or infinite values; refusing to save a model "
                "that load_model would reject"
            )
    return arrays


def restore_buffers(model: Sequential, arrays: dict[str, Any]) -> None:
    """Write ``buffers.<i>.<name>`` arrays into the layers' buffers, in place.

    Every buffer of the model must be given, with its shape; all are checked before any is
    written, so a bad set changes nothing.

    Raises
    ------
    ValueError
        If a buffer is missing, extra, or of the wrong shape, or holds non-finite values.
    """
    model.parameters()
    targets = {
        f"buffers.{i}.{name}": buf
        for i, layer in enumerate(model.layers)
        for name, buf in layer.buffers().items()
    }
    given = {k for k in arrays if k.startswith("buffers.")}
    if given != set(targets):
        raise ValueError(
            f"xpnet: the model's buffers are {sorted(targets)}, the arrays hold {sorted(given)}"
        )
    staged = []
    for name, buf in targets.items():
        a = np.asarray(to_numpy(arrays[name]))
        if a.shape != tuple(buf.shape):
            raise ValueError(
                f"xpnet: buffer {name} must have shape {tuple(buf.shape)}, got {a.shape}"
            )
        if a.dtype.kind not in "iuf" or not np.isfinite(a).all():
            raise ValueError(f"xpnet: buffer {name} must hold finite numbers")
        staged.append((buf, model.backend.asarray(a, dtype=model.dtype)))
    for buf, a in staged:
        buf[...] = a
