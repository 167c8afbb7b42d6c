"""Training state on disk: :class:`TrainingCheckpointer`, used to resume an interrupted fit.

It never imports :mod:`xpnet.model`: it is handed the model, optimizer, loss, generator and
history and works through their methods, so the training loop and its callbacks can use it.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError
from ..io_utils import atomic_write
from .arrays import model_arrays, parameter_names, restore_buffers
from .codec import FORMATS, default_format, encode
from .reader import STATE_FILES, find_state, read_checkpoint
from .writer import base_metadata

if TYPE_CHECKING:
    from types import FrameType

    from ..history import History
    from ..losses import Loss
    from ..model import Sequential
    from ..optimizers import Optimizer

__all__ = ["TrainingCheckpointer"]


class TrainingCheckpointer:
    """Training state in one directory: ``state.safetensors`` (or ``state.npz``), atomically.

    Used by :meth:`~xpnet.Sequential.fit`; the file is also loadable by
    :func:`~xpnet.load_model`. At the end of every epoch the state (weights, buffers, optimizer
    state, generator, history) is copied to the host; it is written every ``every`` epochs,
    after the last epoch, and on a keyboard interrupt (the last completed epoch, never a partial
    one).

    Parameters
    ----------
    directory : str or PathLike
        The checkpoint directory (created on the first write).
    every : int, default 1
        Epochs between writes.
    format : {"safetensors", "npz"}, optional
        Default: safetensors when installed, else npz.
    """

    def __init__(
        self, directory: str | os.PathLike[str], every: int = 1, format: str | None = None
    ) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"xpnet: checkpoint path {str(directory)!r} is a file")
        self.every = every
        self.format = default_format() if format is None else format
        if self.format not in FORMATS:
            raise ValueError(f"xpnet: format must be 'safetensors' or 'npz', got {format!r}")
        self._pending: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    @property
    def path(self) -> Path:
        """The file this checkpointer writes."""
        return self.directory / STATE_FILES[self.format]

    # -------------------------------------------------------------- save
    def end_epoch(
        self,
        model: Sequential,
        optimizer: Optimizer,
        loss: Loss,
        rng: np.random.Generator,
        history: History,
        *,
        batch_size: int,
        shuffle: bool,
        final: bool,
    ) -> None:
        """Capture the state after a completed epoch; write it when due."""
        self._pending = self._capture(model, optimizer, loss, rng, history, batch_size, shuffle)
        completed = len(history.epoch)
        if final or completed % self.every == 0:
            self.write_pending()

    def write_pending(self) -> bool:
        """Write the last captured state if it is not on disk yet; return whether it wrote."""
        if self._pending is None:
            return False
        arrays, meta = self._pending
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, encode(arrays, meta, self.format))
        self._pending = None
        for other in STATE_FILES.values():
            # A leftover of the other format (safetensors installed or removed since) would
            # be an older state; only one may remain so resume never picks the stale one.
            if other != self.path.name and (self.directory / other).exists():
                (self.directory / other).unlink()
        return True

    def _capture(
        self,
        model: Sequential,
        optimizer: Optimizer,
        loss: Loss,
        rng: np.random.Generator,
        history: History,
        batch_size: int,
        shuffle: bool,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = model_arrays(model)
        state = optimizer.state_dict(model.parameters())
        steps = []
        for j, entry in enumerate(state["state"]):
            steps.append(int(entry.get("step", 0)))
            for k, v in entry.items():
                if k != "step":
                    arrays[f"optimizer.{j}.{k}"] = np.array(v, dtype=model.dtype, copy=True)
        meta = base_metadata(model)
        meta["training"] = {
            "epoch": len(history.epoch),
            "history": history.to_dict(),
            "optimizer": {
                "name": optimizer.name,
                "hyperparameters": _jsonable(optimizer.hyperparameters()),
                "steps": steps,
            },
            "loss": loss.name,
            "fit": {"batch_size": int(batch_size), "shuffle": bool(shuffle)},
            "rng_state": _jsonable(copy.deepcopy(rng.bit_generator.state)),
        }
        return arrays, meta

    # -------------------------------------------------------------- resume
    def restore(
        self,
        model: Sequential,
        optimizer: Optimizer,
        loss: Loss,
        rng: np.random.Generator,
        history: History,
        *,
        batch_size: int,
        shuffle: bool,
    ) -> int:
        """Load the directory's state into the model, optimizer, generator and history.

        Everything is checked before anything is changed. Returns the number of epochs the
        checkpoint had completed.

        Raises
        ------
        FileNotFoundError
            If the directory holds no checkpoint.
        CheckpointError
            If the file is damaged, or was written for another architecture, dtype, optimizer
            kind, loss or set of recorded metrics.
        """
        path = find_state(self.directory)
        if path is None:
            raise FileNotFoundError(
                f"xpnet: resume=True but {str(self.directory)!r} holds no checkpoint "
                f"({' or '.join(STATE_FILES.values())}); run without resume to start fresh"
            )
        meta, arrays = read_checkpoint(path)
        if "training" not in meta:
            raise CheckpointError(
                f"xpnet: {path} holds a model but no training state (it was written by "
                "Sequential.save, not by fit(checkpoint=...)); use xpnet.load_model for it"
            )
        t = meta["training"]

        def refuse(what: str, saved: Any, now: Any) -> CheckpointError:
            return CheckpointError(
                f"xpnet: cannot resume from {path}: it was written for {what} {saved}, but this "
                f"fit uses {now}; resume with the same settings or start a new checkpoint "
                "directory"
            )

        mine = model.get_config()
        if meta["layers"] != mine["layers"]:
            raise refuse("the architecture", _describe(meta["layers"]), _describe(mine["layers"]))
        if meta["dtype"] != mine["dtype"]:
            raise refuse("dtype", meta["dtype"], mine["dtype"])
        if t["optimizer"]["name"] != optimizer.name:
            raise refuse("optimizer", t["optimizer"]["name"], optimizer.name)
        if t["loss"] != loss.name:
            raise refuse("loss", t["loss"], loss.name)
        saved_keys = sorted(k for k in t["history"] if k != "epoch")
        if saved_keys != sorted(history.history):
            raise refuse("the metrics", saved_keys, sorted(history.history))
        names = set(getattr(optimizer, "state_names", ()))
        bad = sorted(
            n for n in arrays if n.startswith("optimizer.") and n.split(".")[2] not in names
        )
        if bad:
            raise CheckpointError(
                f"xpnet: cannot resume from {path}: optimizer state {bad} is not state of "
                f"{type(optimizer).__name__}"
            )
        bit_gen = type(rng.bit_generator)()
        try:
            bit_gen.state = t["rng_state"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"xpnet: cannot resume from {path}: its random generator state does not fit "
                f"this run's {type(rng.bit_generator).__name__} ({exc})"
            ) from exc
        saved_hp = t["optimizer"]["hyperparameters"]
        if saved_hp != _jsonable(optimizer.hyperparameters()):
            warnings.warn(
                f"xpnet: resuming with optimizer hyperparameters {optimizer.hyperparameters()} "
                f"instead of the checkpoint's {saved_hp}; the run will differ from an "
                "uninterrupted one",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )
        for key, now in (("batch_size", batch_size), ("shuffle", shuffle)):
            if t["fit"][key] != now:
                warnings.warn(
                    f"xpnet: resuming with {key}={now!r}, the checkpoint used "
                    f"{t['fit'][key]!r}; the run will differ from an uninterrupted one",
                    UserWarning,
                    stacklevel=_user_stacklevel(),
                )

        params = model.parameters()
        order = parameter_names(model)
        try:
            restore_buffers(model, arrays)
        except ValueError as exc:
            raise CheckpointError(f"xpnet: cannot resume from {path}: {exc}") from exc
        model.set_weights([arrays[n] for n in order])
        entries: list[dict[str, Any]] = [{"step": s} for s in t["optimizer"]["steps"]]
        for name, a in arrays.items():
            if name.startswith("optimizer."):
                _, j, k = name.split(".")
                entries[int(j)][k] = a
        optimizer.load_state_dict(
            {"name": optimizer.name, "hyperparameters": saved_hp, "state": entries}, params
        )
        rng.bit_generator.state = bit_gen.state
        history.epoch = list(t["history"]["epoch"])
        for k in saved_keys:
            history.history[k] = [float(v) for v in t["history"][k]]
        return int(t["epoch"])


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside xpnet and NumPy
    (``fit`` is wrapped by ``np.errstate``, so a fixed level would name NumPy's wrapper)."""
    here = Path(__file__).resolve().parents[1]
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        file = Path(frame.f_code.co_filename)
        if not (here in file.parents or "numpy" in file.parts):
            break
        frame = frame.f_back
        level += 1
    return level


def _describe(layers: list[dict[str, Any]]) -> str:
    parts = []
    for entry in layers:
        args = ", ".join(f"{k}={v!r}" for k, v in entry["config"].items() if v is not None)
        parts.append(f"{entry['kind']}({args})")
    return "[" + ", ".join(parts) + "]"


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (tuples to lists, NumPy scalars to Python numbers)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
