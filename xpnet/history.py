"""The record a ``fit`` call returns."""

from __future__ import annotations

from typing import Any

from .callbacks.base import Callback


class History(Callback):
    """Per-epoch metrics of one ``fit`` call (the callback that records them).

    Attributes
    ----------
    history : dict of str to list of float
        ``"loss"``, ``"accuracy"`` (classification), ``"val_loss"``, ``"val_accuracy"`` (when
        validation data was given) and ``"seconds"``, one value per completed epoch.
    epoch : list of int
        The epoch numbers completed (0-based, counting from the start of training).
    interrupted : bool
        True when ``fit`` stopped early on a keyboard interrupt.
    """

    def __init__(self, keys: list[str]) -> None:
        self.history: dict[str, list[float]] = {k: [] for k in keys}
        self.epoch: list[int] = []
        self.interrupted = False

    def append(self, epoch: int, values: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in values.items():
            self.history.setdefault(k, []).append(float(v))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # Only its own keys: the epoch logs also carry values (the rate) that a checkpoint's
        # history does not record.
        logs = logs or {}
        self.append(epoch, {k: logs[k] for k in self.history if k in logs})

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()}}

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"
