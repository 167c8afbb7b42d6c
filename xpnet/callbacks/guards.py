"""Callbacks that guard a run: the divergence check, the training state on disk, the bar."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from ..errors import DivergenceError
from ..io.training_state import TrainingCheckpointer
from ..validation import check_positive_int
from .base import Callback, ModelState

__all__ = ["BackupAndRestore", "ProgressBar", "TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Raise :class:`~xpnet.DivergenceError` when the loss becomes NaN or infinite.

    The model then keeps the last weights (and buffers) that were checked finite: every
    ``check_every`` batches the batch's loss is read (one number; the weights it was
    computed from are copied on the device first), and at the end of each epoch the epoch's
    loss and the finiteness of all weights arrive in the epoch's one read-back.

    ``fit`` always runs one (with its ``check_every``); pass your own to change the period.

    Parameters
    ----------
    check_every : int, default 50
        Batches between the reads of a batch loss. Each read waits for the device, so on a
        GPU it is kept off the per-batch path.
    """

    def __init__(self, check_every: int = 50) -> None:
        self.check_every = check_positive_int("TerminateOnNaN check_every", check_every)
        self._good: ModelState | None = None
        self._candidate: ModelState | None = None
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._good = self._candidate = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        if self._good is None:
            # Taken here, not in on_train_begin, so that a resumed state is what it holds.
            self._good = ModelState(self.model)

    def _due(self, batch: int) -> bool:
        return (batch + 1) % self.check_every == 0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._due(batch):
            # The weights the coming loss is computed from: if it is finite they become the
            # good copy, never the untested result of a possibly huge step.
            if self._candidate is None:
                self._candidate = ModelState(self.model)
            else:
                self._candidate.update()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._due(batch) or logs is None or self._candidate is None:
            return
        if math.isfinite(_global_loss(self.params.get("communicator"), logs)):
            self._good, self._candidate = self._candidate, self._good
            return
        self._diverged(batch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # The epoch's last update was never followed by a loss; the loop reports the loss as
        # NaN when any weight is not finite, so this checks the weights themselves.
        if logs is not None and math.isfinite(float(logs.get("loss", 0.0))):
            if self._good is not None:
                self._good.update()
            return
        self._diverged(int(self.params.get("steps", 1)) - 1)

    def _diverged(self, batch: int) -> None:
        if self._good is not None:
            self._good.restore()
        raise DivergenceError(diverged_message(self._epoch, batch, self.model.optimizer))


def _global_loss(comm: Any, logs: dict[str, Any]) -> float:
    """The global batch's mean loss; on N ranks a collective (every rank checks at the same
    step), so that a NaN on one rank stops them all."""
    value = float(logs["loss"])
    if comm is None or comm.size == 1:
        return value
    rows = int(logs.get("rank_size", logs["size"]))
    part = value * rows if rows else 0.0  # an empty part's loss is 0 and weighs nothing
    return float(comm.reduce_metrics([part])[0]) / int(logs["size"])


def diverged_message(epoch: int, step: int, opt: Any) -> str:
    lr = f" (lr={opt.lr:g})" if opt is not None else ""
    return (
        f"xpnet: the loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}; "
        f"try a smaller learning rate{lr} or scale the inputs. The model keeps the last "
        "weights that were checked finite."
    )


class BackupAndRestore(Callback):
    """Keep the training state in ``directory`` and resume from it (``fit(checkpoint=...)``).

    The state (weights, optimizer state, epoch, history and the random generator's state) is
    captured after every epoch and written atomically every ``every`` epochs, after the last
    epoch and when training ends early (stop, keyboard interrupt, divergence: the last
    completed epoch, never a partial one). Resuming with the same data, seed and settings is
    bit-identical to an uninterrupted run on the same backend; ``epochs`` counts the total.

    Parameters
    ----------
    directory : str or PathLike
    every : int, default 1
        Epochs between writes.
    resume : bool or None, default None
        True: continue from the directory's state (FileNotFoundError if there is none);
        False: start afresh and overwrite it; None: continue if there is a state, else
        start afresh (Keras' behaviour).
    """

    def __init__(
        self, directory: str | os.PathLike[str], every: int = 1, resume: bool | None = None
    ) -> None:
        every = check_positive_int("BackupAndRestore every", every)
        self.checkpointer = TrainingCheckpointer(directory, every)
        self.resume = resume

    def _fit_args(self) -> dict[str, Any]:
        return {"batch_size": self.params["batch_size"], "shuffle": self.params["shuffle"]}

    def _state(self) -> tuple[Any, Any, Any, Any, Any]:
        m = self.model
        return m, m.optimizer, m.loss, self.params["rng"], m.history

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.resume is False:
            return
        try:
            start = self.checkpointer.restore(*self._state(), **self._fit_args())
        except FileNotFoundError:
            if self.resume:
                raise
            return
        self.params["initial_epoch"] = start

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.is_root:  # every rank restores; rank 0 alone writes
            return
        final = epoch + 1 == self.params["epochs"] or bool(self.model.stop_training)
        self.checkpointer.end_epoch(*self._state(), **self._fit_args(), final=final)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.checkpointer.write_pending()


class ProgressBar(Callback):
    """A tqdm bar over each epoch's batches and a line per epoch (``fit(verbose=1)``;
    ``show_bar=False`` is ``verbose=2``: the lines only).

    The bar counts batches only: showing a running loss would read it back every few
    batches, which stalls a GPU; the epoch line has the epoch's values.
    """

    def __init__(self, show_bar: bool = True) -> None:
        self.show_bar = bool(show_bar)
        self._bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.show_bar and self.is_root:
            from tqdm.auto import tqdm  # optional until a bar is asked for

            self._bar = tqdm(
                total=self.params["steps"],
                desc=f"epoch {epoch + 1}/{self.params['epochs']}",
                unit="batch",
                leave=False,
            )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._close()
        if not self.is_root:
            return
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.params['epochs']}"]
        parts += [f"{k} {v:.4f}" for k, v in logs.items() if k not in ("seconds", "lr")]
        parts.append(f"{logs.get('seconds', 0.0):.2f}s")
        print(" - ".join(parts), flush=True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._close()
        history = getattr(self.model, "history", None)
        if self.is_root and history is not None and history.interrupted:
            print("xpnet: training interrupted; returning the history so far", file=sys.stderr)
