"""Callbacks: everything a training run does besides the step itself.

``Sequential.fit(..., callbacks=[...])`` calls them around epochs and batches (Keras' names
and semantics); ``fit``'s own arguments assemble the defaults (``verbose`` a
:class:`ProgressBar`, ``check_every`` the :class:`TerminateOnNaN` guard, ``checkpoint`` /
``resume`` a :class:`BackupAndRestore`). Write your own by subclassing :class:`Callback`.

Order of the calls in each hook: the :class:`TerminateOnNaN` guard, the returned
:class:`~xpnet.History`, your callbacks in the order given, :class:`BackupAndRestore`, then
:class:`ProgressBar`.
"""

from __future__ import annotations

from .base import Callback, ModelState
from .guards import BackupAndRestore, ProgressBar, TerminateOnNaN
from .monitoring import CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ModelState",
    "ProgressBar",
    "TerminateOnNaN",
]
