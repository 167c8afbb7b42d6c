"""Saving and loading models and training state, verified, atomic and pickle-free.

This module gathers the public names of :mod:`xpnet.io`, where the work is done (the codec, the
schema checks, the writer, the reader, the loader and the training state, each importing one
way only).

File format
-----------
One file holds the arrays and a JSON metadata record:

* safetensors (the default when the optional ``safetensors`` package is installed): the JSON
  record is the string ``__metadata__["xpnet"]`` of the safetensors header;
* otherwise an uncompressed NumPy ``.npz`` whose member ``__xpnet__.npy`` holds the JSON record
  as UTF-8 bytes.

The format is detected from the file's first bytes, never from its name. Both are parsed with
NumPy alone (no pickle, no ``eval``, bounded header sizes), so a file of either format loads
whether or not ``safetensors`` is installed.

Arrays are named ``layers.<i>.<W|b>`` (the parameters of layer ``i``), ``buffers.<i>.<name>``
(the non-trainable buffers of layer ``i``, see :meth:`xpnet.layers.Layer.buffers`) and, in
training checkpoints, ``optimizer.<j>.<state>`` (the optimizer state of parameter ``j``).

The metadata records the format version, the xpnet version, the model's
:meth:`~xpnet.Sequential.get_config` (its dtype and each layer's ``kind`` and ``config()``), a
SHA-256 of the arrays over a canonical serialization (name, dtype, shape, then the
little-endian C-order bytes, for each array in name order), and a SHA-256 of the metadata
itself, so any change to a stored value is detected on load. Training checkpoints add a
``training`` record: completed epochs, history, optimizer kind, hyperparameters and step
counts, loss kind, the fit settings and the state of the host random generator.

Format version 2 added the buffers; files of version 1 (xpnet 0.1.0) still load and resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .io.codec import FORMAT_NAME as FORMAT_NAME  # public before the split into xpnet.io
from .io.codec import MAX_HEADER_BYTES, default_format
from .io.loader import load_model
from .io.reader import STATE_FILES as STATE_FILES  # public before the split, too
from .io.reader import read_checkpoint
from .io.schema import FORMAT_VERSION
from .io.training_state import TrainingCheckpointer
from .io.writer import save_model

if TYPE_CHECKING:
    from .model import Sequential

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "TrainingCheckpointer",
    "default_format",
    "load_model",
    "read_checkpoint",
    "save_model",
]


def architecture(model: Sequential) -> list[dict[str, Any]]:
    """The JSON description of a model's layers: ``[{"kind": ..., "config": {...}}, ...]``.

    The ``"layers"`` entry of :meth:`~xpnet.Sequential.get_config`.
    """
    layers: list[dict[str, Any]] = model.get_config()["layers"]
    return layers
