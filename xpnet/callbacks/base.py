"""The callback interface, and the device copy of a model's state that callbacks keep."""

from __future__ import annotations

import math
import warnings
from typing import Any

from ..backend import namespace_of

__all__ = ["Callback", "ModelState"]


class Callback:
    """Base class of the objects ``fit(..., callbacks=[...])`` calls during training.

    Every hook is a no-op here; override the ones you need. Keras' names and semantics.

    Attributes
    ----------
    model : Sequential
        The model being trained (set by ``fit`` before ``on_train_begin``). Setting
        ``model.stop_training = True`` in any hook ends training after the current epoch.
    params : dict
        ``epochs`` (the epoch count of the run), ``steps`` (batches per epoch),
        ``batch_size``, ``samples``, ``shuffle``, ``verbose``, ``initial_epoch`` (the first
        epoch this call trains; :class:`BackupAndRestore` advances it on resume), ``rng``
        (the fit's host ``numpy.random.Generator``) and ``communicator`` (the
        :class:`~xpnet.distributed.Communicator` of a data-parallel fit, a size-1 one
        otherwise).

    Notes
    -----
    Epoch logs hold the epoch's values as Python floats: ``loss``, the loss's metrics
    (``accuracy`` for classification), ``val_loss`` and ``val_...`` with validation data,
    ``seconds`` and ``lr``. Batch logs hold ``batch``, ``size`` (rows, host integers),
    ``rank_size`` (this rank's rows of them; ``size`` when training alone) and ``loss``, the
    mean loss over this rank's rows as a 0-d array *on the model's device*: nothing in them
    has been read back, since a per-batch read would stall a GPU. Reading ``loss`` (with
    ``float``) waits for the device; do it every few batches at most.

    In a data-parallel fit every rank runs every callback on the same epoch logs (they are
    reduced over the ranks); a callback that prints or writes files does so only where
    :attr:`is_root` is true.
    """

    model: Any = None
    params: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance by set_params

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    @property
    def is_root(self) -> bool:
        """Whether this process prints and writes: rank 0 of a data-parallel fit, or the
        only process."""
        comm = self.params.get("communicator")
        return comm is None or bool(comm.is_root)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called once before the first epoch."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called once when training ends: after the last epoch, on ``stop_training``, on a
        keyboard interrupt and on a :class:`~xpnet.DivergenceError` (before it propagates)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of epoch ``epoch`` (0-based, counting from the first run)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after epoch ``epoch`` and its validation, with the epoch's values."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before batch ``batch`` (its index in the epoch) of training."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after the update of batch ``batch``; see the class notes for its logs."""


def mode_is_max(monitor: str, mode: str, owner: str) -> bool:
    """Whether larger values of ``monitor`` are better (Keras' rule for ``mode="auto"``)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"xpnet: {owner} mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "acc" in monitor
    return mode == "max"


def monitored(logs: dict[str, Any] | None, monitor: str, owner: str) -> float | None:
    """The monitored value from epoch logs, or None (with a warning) when it is missing."""
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(
            f"xpnet: {owner} monitors {monitor!r}, which is not in the epoch logs "
            f"(available: {', '.join(sorted(logs or {}))}); pass validation_data for val_ keys",
            UserWarning,
            stacklevel=3,
        )
        return None
    value = float(value)
    return value if not math.isnan(value) else None


class ModelState:
    """A device copy of a model's whole state: its parameters and its layers' buffers.

    The parameters are copied as their flat buffer in one operation when they share one.
    :meth:`update` overwrites the copy from the model, :meth:`restore` writes it back in
    place, so views of the model's arrays stay valid. No array is read back to the host.
    """

    def __init__(self, model: Any) -> None:
        self.arrays = _state_arrays(model)
        self.copies = [namespace_of(a).asarray(a, copy=True) for a in self.arrays]

    def update(self) -> None:
        for c, a in zip(self.copies, self.arrays, strict=True):
            c[...] = a

    def restore(self) -> None:
        for c, a in zip(self.copies, self.arrays, strict=True):
            a[...] = c


def _state_arrays(model: Any) -> list[Any]:
    params = model.parameters()
    buf = params[0].buffer if params else None
    arrays = [buf.data] if buf is not None and buf.holds(params) else [p.data for p in params]
    for layer in model.layers:
        arrays.extend(layer.buffers().values())
    return arrays
