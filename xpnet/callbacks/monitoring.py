"""Callbacks that watch the epoch logs: early stopping, model files, a CSV log, the rate."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..validation import check_non_negative_int
from .base import Callback, ModelState, mode_is_max, monitored

__all__ = ["CSVLogger", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint"]


class EarlyStopping(Callback):
    """Stop training when a monitored value has stopped improving (Keras' semantics).

    Parameters
    ----------
    monitor : str, default "val_loss"
        The epoch log to watch.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    patience : int, default 0
        Epochs without improvement after which training stops.
    mode : {"auto", "min", "max"}, default "auto"
        Whether smaller or larger is better; ``"auto"`` takes larger for names containing
        ``"acc"``, smaller otherwise.
    restore_best_weights : bool, default False
        On stopping, put back the model state of the best epoch: the weights and every
        layer's non-trainable buffers. (If training ends by running out of epochs, the last
        state stays, as in Keras.)
    start_from_epoch : int, default 0
        Epochs to let pass before watching (a warm-up).

    Attributes
    ----------
    stopped_epoch : int
        The epoch at which training was stopped (0 if it was not).
    best_epoch : int
        The epoch of the best monitored value.
    best : float
        The best monitored value.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        self.monitor = str(monitor)
        self.min_delta = abs(float(min_delta))
        self.patience = check_non_negative_int("EarlyStopping patience", patience)
        self.start_from_epoch = check_non_negative_int(
            "EarlyStopping start_from_epoch", start_from_epoch
        )
        self.maximize = mode_is_max(self.monitor, mode, "EarlyStopping")
        self.mode = mode
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best = -math.inf if self.maximize else math.inf
        self.best_state: ModelState | None = None

    def _improved(self, current: float, reference: float) -> bool:
        if self.maximize:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_state is None:
            # Until something improves, the first watched epoch is the best one.
            self.best_state = ModelState(self.model)
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.best_state is not None:
                self.best_state.update()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.best_state is not None:
                self.best_state.restore()


class ModelCheckpoint(Callback):
    """Save the model with :meth:`~xpnet.Sequential.save` (atomically) after epochs (in a
    data-parallel fit, on rank 0 only: the other ranks track ``best`` but write nothing).

    Parameters
    ----------
    filepath : str or PathLike
        The file to write; may hold ``{epoch}`` (1-based, as in Keras) and any epoch log,
        with format specs: ``"ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"``.
    monitor : str, default "val_loss"
        The value that decides "best" for ``save_best_only``.
    save_best_only : bool, default False
        Write only when the monitored value improves on the best so far.
    mode : {"auto", "min", "max"}, default "auto"
        As for :class:`EarlyStopping`.

    Attributes
    ----------
    best : float
        The best monitored value so far.
    last_path : pathlib.Path or None
        The last file written.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
    ) -> None:
        self.filepath = os.fspath(filepath)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        self.maximize = mode_is_max(self.monitor, mode, "ModelCheckpoint")
        self.best = -math.inf if self.maximize else math.inf
        self.last_path: Path | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.best = -math.inf if self.maximize else math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        if self.save_best_only:
            current = monitored(logs, self.monitor, "ModelCheckpoint")
            better = current is not None and (
                current > self.best if self.maximize else current < self.best
            )
            if not better:
                return
            assert current is not None
            self.best = current
        try:
            path = self.filepath.format(**{**logs, "epoch": epoch + 1})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"xpnet: ModelCheckpoint filepath {self.filepath!r} cannot be filled from "
                f"epoch and the logs {sorted(logs)}: {exc!r}"
            ) from exc
        if self.is_root:  # in a data-parallel fit rank 0 alone writes
            self.last_path = Path(self.model.save(path))


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (0-based) then the epoch logs.

    The header is ``epoch`` followed by the logs' keys (the History keys and ``lr``), in
    the order of the first epoch; the file is flushed after each row, so it can be read
    while training runs. In a data-parallel fit only rank 0 writes it.

    Parameters
    ----------
    filename : str or PathLike
    separator : str, default ","
    append : bool, default False
        Append to an existing file (no second header) instead of overwriting it.
    """

    def __init__(
        self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False
    ) -> None:
        self.filename = Path(filename)
        self.separator = str(separator)
        self.append = bool(append)
        self.keys: list[str] | None = None
        self._file: IO[str] | None = None
        self._needs_header = True

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.is_root:  # in a data-parallel fit rank 0 alone writes
            return
        existing = self.append and self.filename.is_file() and self.filename.stat().st_size > 0
        self._needs_header = not existing
        self.keys = None
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._file is None:
            return
        logs = logs or {}
        if self.keys is None:
            self.keys = list(logs)
            if self._needs_header:
                self._file.write(self.separator.join(["epoch", *self.keys]) + "\n")
        row = [str(epoch)] + [_cell(logs.get(k)) for k in self.keys]
        self._file.write(self.separator.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _cell(value: Any) -> str:
    return "" if value is None else repr(float(value))


class LearningRateScheduler(Callback):
    """Set the optimizer's rate at the start of each epoch to ``schedule(epoch, lr)``.

    ``epoch`` is 0-based and ``lr`` the current rate; the result must be a positive finite
    number. Every optimizer (SGD, Adam, AdamW, RMSProp) steps with the rate set here. It
    replaces the rate, so it does not combine with an optimizer's own ``schedule=``.
    """

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        if not callable(schedule):
            raise TypeError(
                f"xpnet: LearningRateScheduler needs a callable schedule(epoch, lr), "
                f"got {type(schedule).__name__}"
            )
        self.schedule = schedule

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.model.optimizer.schedule is not None:
            raise ValueError(
                "xpnet: LearningRateScheduler and an optimizer schedule= both set the rate; "
                "use one of them"
            )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        opt = self.model.optimizer
        lr = self.schedule(epoch, float(opt.lr))
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0.0:
            raise ValueError(
                f"xpnet: LearningRateScheduler schedule({epoch}, {opt.lr}) must return a "
                f"positive number, got {lr!r}"
            )
        if not math.isfinite(lr):
            raise ValueError(f"xpnet: LearningRateScheduler schedule returned {lr!r}")
        opt.lr = float(lr)
