"""The one set of argument validators (xpnet.validation) that the library, the estimators and
the command line share: what they accept, and messages that say what was expected and what
was given."""

from __future__ import annotations

import argparse
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from xpnet.cli import arguments
from xpnet.datasets import fetch_file, one_hot, train_val_split
from xpnet.errors import XpnetError
from xpnet.schedules import StepDecay
from xpnet.validation import (
    InvalidArgumentError,
    check_choice,
    check_finite,
    check_int,
    check_non_negative,
    check_non_negative_int,
    check_number,
    check_positive,
    check_positive_int,
)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: check_int("n", 3), 3),
        (lambda: check_int("n", np.int64(-2)), -2),
        (lambda: check_int("n", 5, minimum=5, maximum=5), 5),
        (lambda: check_positive_int("n", 1), 1),
        (lambda: check_positive_int("n", 2, minimum=2), 2),
        (lambda: check_non_negative_int("n", 0), 0),
        (lambda: check_number("x", 0, low=0.0, high=1.0, high_open=True), 0.0),
        (lambda: check_number("x", 1, low=0.0, high=1.0), 1.0),
        (lambda: check_number("x", np.float32(0.5), low=0.0, high=1.0, low_open=True), 0.5),
        (lambda: check_number("x", -7.5, high=-7.5), -7.5),
        (lambda: check_finite("x", -1e300), -1e300),
        (lambda: check_positive("x", 1e-12), 1e-12),
        (lambda: check_non_negative("x", 0), 0.0),
        (lambda: check_choice("c", "b", ("a", "b")), "b"),
        (lambda: check_choice("c", np.str_("a"), ("a", "b")), "a"),
    ],
)
def test_valid_values_come_back_as_plain_python(call, expected):
    value = call()
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_int("n", 2.0), "n must be an integer, got 2.0"),
        (lambda: check_int("n", True, minimum=0), "n must be an integer >= 0, got True"),
        (lambda: check_int("n", 9, maximum=8), "n must be an integer <= 8, got 9"),
        (lambda: check_int("n", 0, minimum=1, maximum=3), r"n must be an integer in \[1, 3\]"),
        (lambda: check_positive_int("n", "4"), "n must be an integer >= 1, got '4'"),
        (lambda: check_non_negative_int("n", -1), "n must be an integer >= 0, got -1"),
        (
            lambda: check_number("p", 1.0, low=0.0, high=1.0, high_open=True),
            r"p must be a number in \[0, 1\), got 1.0",
        ),
        (
            lambda: check_number("p", 0.0, low=0.0, high=1.0, low_open=True),
            r"p must be a number in \(0, 1\], got 0.0",
        ),
        (lambda: check_number("p", math.nan, low=0.0, high=1.0), r"in \[0, 1\], got nan"),
        (lambda: check_number("x", 3, low=2, low_open=True, high=3, high_open=True), r"\(2, 3\)"),
        (lambda: check_number("x", 1.5, high=1), "x must be a finite number <= 1, got 1.5"),
        (lambda: check_number("x", 1, low=1, low_open=True), "x must be a finite number > 1"),
        (lambda: check_finite("x", math.inf), "x must be a finite number, got inf"),
        (lambda: check_finite("x", None), "x must be a finite number, got None"),
        (lambda: check_positive("lr", 0), "lr must be a positive finite number, got 0"),
        (lambda: check_positive("lr", np.float64(-1.5)), "positive finite number, got -1.5$"),
        (lambda: check_positive("lr", True), "lr must be a positive finite number, got True"),
        (lambda: check_non_negative("tol", -0.1), "tol must be a finite number >= 0, got -0.1"),
        (lambda: check_choice("c", "z", ("a", "b")), "c must be one of a, b, got 'z'"),
        (lambda: check_choice("c", 1, (True, "a")), "c must be one of True, a, got 1"),
        (lambda: check_choice("c", np.zeros(2), ("a",)), "c must be one of a, got array"),
    ],
)
def test_invalid_values_say_what_was_expected_and_given(call, message):
    with pytest.raises(InvalidArgumentError, match=message) as info:
        call()
    assert str(info.value).startswith("xpnet: ")


def test_the_error_is_a_value_error_that_keeps_its_parts():
    with pytest.raises(ValueError) as info:
        check_choice("solver", "lbfgs", ("adam", "sgd"))
    exc = info.value
    assert isinstance(exc, XpnetError) and isinstance(exc, InvalidArgumentError)
    assert (exc.name, exc.expected, exc.value, exc.choices) == (
        "solver",
        "one of adam, sgd",
        "lbfgs",
        ("adam", "sgd"),
    )
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == str(exc) and again.choices == exc.choices


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (arguments.positive_int, "12", 12),
        (arguments.non_negative_int, "0", 0),
        (arguments.probability, "0.25", 0.25),
        (arguments.positive_float, "1e-3", 1e-3),
        (arguments.hidden, "64, 32", (64, 32)),
        (arguments.hidden, "none", ()),
        (arguments.backend_name, "Array-API-Strict", "array_api_strict"),
        (arguments.activation, "LeakyReLU", "leaky_relu"),
    ],
)
def test_argument_types_accept_what_the_library_accepts(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (arguments.positive_int, "0", "expected a positive integer, got '0'"),
        (arguments.positive_int, "2.5", "expected a positive integer, got '2.5'"),
        (arguments.non_negative_int, "-1", "expected an integer >= 0, got '-1'"),
        (arguments.probability, "1", r"expected a number in [0, 1), got '1'"),
        (arguments.probability, "nan", r"expected a number in [0, 1), got 'nan'"),
        (arguments.positive_float, "abc", "expected a positive finite number, got 'abc'"),
        (arguments.hidden, "8,0", "expected comma-separated positive layer widths"),
        (arguments.backend_name, "tpu", "unknown backend 'tpu'; choose from numpy, cupy"),
        (arguments.activation, "swish", "unknown activation 'swish'; choose from relu"),
        (arguments.dataset, "cifar10", "unknown data set 'cifar10'; choose from mnist"),
        (arguments.dataset, "csv:", "csv: needs a file path"),
    ],
)
def test_argument_types_turn_value_errors_into_argparse_errors(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value).startswith(message)
    assert not str(info.value).startswith("xpnet: ")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: train_val_split(np.zeros((4, 1)), np.arange(4), 1.0),
            r"val_fraction must be a number in \(0, 1\), got 1.0",
        ),
        (lambda: one_hot(np.arange(3), -1), "n_classes must be an integer >= 0, got -1"),
        (
            lambda: fetch_file("f", "/nonexistent", ["http://127.0.0.1:9/"], Path, timeout=0),
            "timeout must be a positive finite number, got 0",
        ),
        (lambda: StepDecay(-1), "schedule at_step must be an integer >= 0, got -1"),
        (lambda: StepDecay(3, factor=2), r"schedule factor must be a number in \[0, 1\], got 2"),
    ],
)
def test_the_library_uses_the_shared_validators(call, message):
    with pytest.raises(InvalidArgumentError, match=message):
        call()


def test_the_estimators_use_the_shared_validators():
    pytest.importorskip("sklearn")
    from xpnet.sklearn import MLPClassifier

    X, y = np.random.default_rng(0).normal(size=(8, 2)), np.arange(8) % 2
    with pytest.raises(InvalidArgumentError, match=r"tol must be a finite number >= 0, got -1\.0"):
        MLPClassifier(tol=-1.0).fit(X, y)
    with pytest.raises(InvalidArgumentError, match="max_iter must be an integer >= 1, got 0"):
        MLPClassifier(max_iter=0).fit(X, y)
