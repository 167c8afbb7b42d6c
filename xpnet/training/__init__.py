"""The training loop (:func:`train`) and what ``fit`` prepares for it.

``Sequential.fit`` checks its arguments and data, then hands device arrays and callbacks to
:func:`train`; see :mod:`xpnet.callbacks` for everything the loop leaves to callbacks.
"""

from __future__ import annotations

from .loop import evaluate_arrays, train
from .setup import (
    check_callbacks,
    check_communicator,
    check_fit_arguments,
    default_callbacks,
    history_keys,
)

__all__ = [
    "check_callbacks",
    "check_communicator",
    "check_fit_arguments",
    "default_callbacks",
    "evaluate_arrays",
    "history_keys",
    "train",
]
