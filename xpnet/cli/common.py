"""What every command shares: the :class:`Command` record, the runtime error type and the
output helpers (messages, JSON files, the confusion matrix, loading a model)."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import load_model
from ..errors import XpnetError
from ..io_utils import atomic_write_bytes
from ..metrics import confusion_matrix, format_confusion_matrix

__all__ = [
    "Command",
    "CommandError",
    "check_output_parent",
    "confusion",
    "finite_or_none",
    "load_model_file",
    "print_confusion",
    "say",
    "write_json_atomic",
]


class CommandError(XpnetError):
    """A runtime failure reported as one line and exit status 1."""


@dataclass(frozen=True)
class Command:
    """One sub-command: its module defines ``COMMAND = Command(...)`` and the parser lists
    the module in :data:`xpnet.cli.parser.COMMAND_MODULES`.

    Attributes
    ----------
    name : str
        As typed: ``xpnet NAME``.
    help : str
        Its line in ``xpnet --help``.
    description : str
        The paragraph of ``xpnet NAME --help``.
    add_arguments : callable
        Adds the command's own options to its sub-parser.
    run : callable
        Runs the parsed command; returns the exit status.
    data_options : bool
        Whether it takes ``--data-dir`` and ``--no-download`` (it loads a data set).
    check : callable, optional
        ``check(parser, args)``: errors between options, reported with ``parser.error``.
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    data_options: bool = False
    check: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = None


def say(quiet: bool, *parts: Any) -> None:
    """Print a progress line unless ``quiet``."""
    if not quiet:
        print(*parts, flush=True)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as JSON so that ``path`` holds either the old file or the whole new one."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_parent(option: str, path: str | None) -> None:
    """Fail before training, not after it, when an output file cannot be created."""
    if path is None:
        return
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise CommandError(f"{option} {path}: directory {parent} does not exist")


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a non-finite score becomes null."""
    return value if math.isfinite(value) else None


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """The (n_classes, n_classes) confusion matrix, rows the true class."""
    return confusion_matrix(y_true, y_pred, n_classes)


def print_confusion(cm: np.ndarray, labels: list[str]) -> None:
    """The confusion matrix, and the class names where they are not just the indices."""
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion_matrix(cm, [str(i) for i in range(cm.shape[0])]))
    if any(label != str(i) for i, label in enumerate(labels)):
        print("classes: " + ", ".join(f"{i}={label}" for i, label in enumerate(labels)))


def load_model_file(path: str, backend: str | None) -> Any:
    """A model saved by ``xpnet train --save``, on ``backend`` (None: the current one)."""
    if not Path(path).exists():
        raise CommandError(f"model file {path} does not exist")
    return load_model(path, backend=backend)
