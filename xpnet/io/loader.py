"""Loading model files: :func:`load_model` rebuilds a :class:`~xpnet.Sequential`.

This is the one part of :mod:`xpnet.io` that imports the model (io loader -> model); nothing on
the model's own import path imports it.
"""

from __future__ import annotations

import os

from ..backend import Backend, get_backend, resolve_backend
from ..model import Sequential
from .arrays import parameter_names, restore_buffers
from .reader import read_checkpoint, resolve_path
from .schema import fail

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str], backend: str | Backend | None = None) -> Sequential:
    """Rebuild a :class:`~xpnet.Sequential` saved with :meth:`~xpnet.Sequential.save`.

    Parameters
    ----------
    path : str or PathLike
        A file written by ``save``, a training checkpoint file, or a checkpoint directory
        given to ``fit(checkpoint=...)``.
    backend : str or Backend, optional
        Where to put the parameters; default: the active backend.

    Returns
    -------
    Sequential
        The model, with every value verified (format, metadata, architecture, shapes, dtypes,
        SHA-256 digests, finiteness) before it is returned, its weights and buffers restored.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is truncated, corrupt, tampered with, or not an xpnet checkpoint. Nothing
        in the file is ever executed or unpickled.
    """
    target = get_backend() if backend is None else resolve_backend(backend)
    p = resolve_path(path)
    meta, arrays = read_checkpoint(p)
    config = {"dtype": meta["dtype"], "layers": meta["layers"]}
    try:
        model = Sequential.from_config(config, backend=target)
    except ValueError as exc:
        raise fail(p, f"the layers do not fit together ({exc})") from exc
    order = parameter_names(model)
    if sorted(order) != sorted(n for n in arrays if n.startswith("layers.")):
        raise fail(p, "the arrays do not match the rebuilt model's parameters")
    try:
        restore_buffers(model, arrays)
    except ValueError as exc:
        raise fail(p, f"the buffers do not match the rebuilt model's ({exc})") from exc
    model.set_weights([arrays[n] for n in order])
    return model
