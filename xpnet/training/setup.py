"""What ``fit`` checks and assembles before the loop runs: its arguments and the callbacks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..callbacks import BackupAndRestore, Callback, ProgressBar, TerminateOnNaN
from ..distributed.communicator import Communicator
from ..history import History
from ..losses import Loss
from ..validation import check_positive_int

__all__ = [
    "check_callbacks",
    "check_communicator",
    "check_fit_arguments",
    "default_callbacks",
    "history_keys",
]


def check_fit_arguments(
    *,
    epochs: Any,
    batch_size: Any,
    check_every: Any,
    checkpoint: Any,
    checkpoint_every: Any,
    resume: bool,
    validation_data: Any,
) -> tuple[int, int, int, int]:
    """Validate ``fit``'s plain arguments; return epochs, batch_size, check_every, every."""
    epochs = check_positive_int("epochs", epochs, minimum=0)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if resume and checkpoint is None:
        raise ValueError("xpnet: resume=True needs checkpoint=DIR, the directory to resume")
    if validation_data is not None and not (
        isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
    ):
        got = type(validation_data).__name__
        if isinstance(validation_data, (tuple, list)):
            got += f" of length {len(validation_data)}"
        raise ValueError(f"xpnet: validation_data must be a pair (X_val, y_val), got {got}")
    batch_size = check_positive_int("batch_size", batch_size)
    check_every = check_positive_int("check_every", check_every)
    return epochs, batch_size, check_every, checkpoint_every


def check_communicator(communicator: Any) -> Communicator | None:
    """``fit``'s ``communicator``: None or an :class:`~xpnet.distributed.Communicator`."""
    if communicator is not None and not isinstance(communicator, Communicator):
        raise TypeError(
            "xpnet: communicator must be an xpnet.distributed.Communicator "
            f"(from xpnet.distributed.init()) or None, got {type(communicator).__name__}"
        )
    return communicator


def check_callbacks(callbacks: Any) -> list[Callback]:
    """The given callbacks as a list, refusing anything that is not a Callback instance."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            "xpnet: callbacks must be a list of xpnet.callbacks.Callback instances, got "
            f"{type(callbacks).__name__}"
        )
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(
                f"xpnet: callbacks[{i}] is the class {cb.__name__}, not an instance; pass "
                f"{cb.__name__}(...)"
            )
        if not isinstance(cb, Callback):
            raise TypeError(
                f"xpnet: callbacks[{i}] must be an xpnet.callbacks.Callback instance, got "
                f"{type(cb).__name__} {cb!r:.60}"
            )
    return list(callbacks)


def history_keys(loss: Loss, target_ndim: int, validation: bool) -> list[str]:
    """What the History of a fit records: the loss, its metrics (validation too), seconds."""
    keys = ["loss", *loss.metric_names(target_ndim)]
    keys += [f"val_{k}" for k in keys] if validation else []
    return [*keys, "seconds"]


def default_callbacks(
    callbacks: Sequence[Callback],
    history: History,
    *,
    verbose: int,
    check_every: int,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_every: int,
    resume: bool,
) -> list[Callback]:
    """The run's callbacks in calling order: the divergence guard, the history, the given
    ones, the training state on disk, the progress display.

    ``fit``'s arguments make the defaults; a guard, backup or bar among ``callbacks``
    replaces the default one.
    """

    def given(kind: type[Callback]) -> list[Callback]:
        return [cb for cb in callbacks if isinstance(cb, kind)]

    special = (TerminateOnNaN, BackupAndRestore, ProgressBar)
    guard = given(TerminateOnNaN) or [TerminateOnNaN(check_every)]
    backup = given(BackupAndRestore)
    if checkpoint is not None:
        if backup:
            raise ValueError(
                "xpnet: fit got both checkpoint= and a BackupAndRestore callback; give one"
            )
        backup = [BackupAndRestore(checkpoint, every=checkpoint_every, resume=resume)]
    bar = given(ProgressBar) or ([ProgressBar(show_bar=verbose == 1)] if verbose else [])
    rest = [cb for cb in callbacks if not isinstance(cb, special)]
    return [*guard, history, *rest, *backup, *bar]
