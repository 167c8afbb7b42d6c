"""Argument types: the library's validators (:mod:`xpnet.validation`) as argparse ``type=``
functions, so an option accepts exactly what the library accepts.

Each type converts the text, calls the validator and turns its ``ValueError`` into the
``argparse.ArgumentTypeError`` that argparse reports with the usage line (exit status 2):
``argument --epochs: expected a positive integer, got '0'``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from ..backend import BACKEND_NAMES
from ..datasets.catalog import DatasetSpec, parse_dataset_spec
from ..recipe import HIDDEN_ACTIVATIONS
from ..validation import (
    InvalidArgumentError,
    check_choice,
    check_non_negative,
    check_non_negative_int,
    check_number,
    check_positive,
    check_positive_int,
)

__all__ = [
    "activation",
    "argument_type",
    "backend_name",
    "dataset",
    "hidden",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
]

T = TypeVar("T")


def argument_type(parse: Callable[[str], T], *, expected: str | None = None) -> Callable[[str], T]:
    """An argparse type from ``parse(text)``, which raises ValueError for bad text.

    An :class:`~xpnet.validation.InvalidArgumentError` becomes ``expected ..., got 'TEXT'``
    (``expected`` overrides the validator's phrase), or ``unknown NAME 'TEXT'; choose from ...``
    for a choice; any other ValueError keeps its message.
    """

    def convert(text: str) -> T:
        try:
            return parse(text)
        except InvalidArgumentError as exc:
            if exc.choices is not None and expected is None:
                options = ", ".join(map(str, exc.choices))
                message = f"unknown {exc.name} {text!r}; choose from {options}"
            else:
                message = f"expected {expected or exc.expected}, got {text!r}"
        except ValueError as exc:
            message = str(exc).removeprefix("xpnet: ")
        raise argparse.ArgumentTypeError(message)

    # argparse names the type in some of its own messages.
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _from_text(convert: Callable[[str], Any], check: Callable[[Any], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            value = text  # not a number at all: the validator refuses it, saying what it wants
        return check(value)

    return parse


positive_int = argument_type(
    _from_text(int, lambda v: check_positive_int("value", v)), expected="a positive integer"
)
non_negative_int = argument_type(_from_text(int, lambda v: check_non_negative_int("value", v)))
probability = argument_type(
    _from_text(float, lambda v: check_number("value", v, low=0.0, high=1.0, high_open=True))
)
positive_float = argument_type(_from_text(float, lambda v: check_positive("value", v)))
non_negative_float = argument_type(_from_text(float, lambda v: check_non_negative("value", v)))
label_smoothing = probability  # [0, 1), the range SoftmaxCrossEntropy accepts


def _hidden(text: str) -> tuple[int, ...]:
    """``"256,128"`` -> (256, 128); ``""`` or ``"none"`` -> () (a linear classifier)."""
    if text.strip().lower() in ("", "none"):
        return ()
    check = _from_text(int, lambda v: check_positive_int("width", v))
    try:
        return tuple(check(part.strip()) for part in text.split(","))
    except InvalidArgumentError:
        raise InvalidArgumentError(
            "--hidden", "comma-separated positive layer widths such as 256,128", text
        ) from None


def _backend_name(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    return str(check_choice("backend", key, BACKEND_NAMES))


def _activation(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    if key == "leakyrelu":
        key = "leaky_relu"
    return str(check_choice("activation", key, HIDDEN_ACTIVATIONS))


hidden = argument_type(_hidden)
backend_name = argument_type(_backend_name)
activation = argument_type(_activation)
dataset: Callable[[str], DatasetSpec] = argument_type(parse_dataset_spec)
