"""Feature-matrix checks and range phrases, pinned by exact messages.

Written against the mutants mutation testing left alive (docs/testing.md). The device arrays
are array_api_strict ones, made directly, so these run whatever backends the suite is asked for.
"""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.validation import check_number, check_X, check_y

xps = pytest.importorskip("array_api_strict")


def test_an_open_upper_bound_alone_is_phrased_with_less_than():
    with pytest.raises(ValueError) as info:
        check_number("rate", 1.0, high=1.0, high_open=True)
    assert str(info.value) == "xpnet: rate must be a finite number < 1, got 1.0"
    with pytest.raises(ValueError) as info:
        check_number("rate", 2.0, high=1.0)
    assert str(info.value) == "xpnet: rate must be a finite number <= 1, got 2.0"


class _ShapeOnly:
    shape = (2, 2)


class _DtypeOnly:
    dtype = np.dtype("float64")


@pytest.mark.parametrize("X", [_ShapeOnly(), _DtypeOnly()])
def test_an_object_without_both_shape_and_dtype_is_not_an_array(X):
    with pytest.raises(TypeError) as info:
        check_X(X)
    assert str(info.value) == f"xpnet: X must be an array, got {type(X).__name__}"


def test_a_non_finite_value_in_the_first_row_is_counted():
    X = np.ones((5, 3))
    X[0, 0] = np.nan
    with pytest.raises(ValueError) as info:
        check_X(X)
    assert str(info.value) == "xpnet: X contains 1 NaN or infinite values"


@pytest.mark.parametrize(
    "X",
    [
        xps.asarray([[1, 2], [3, 4]]),
        xps.asarray([[1, 2], [3, 4]], dtype=xps.uint8),
        xps.asarray([[True, False], [False, True]]),
        xps.asarray([[0.5, 1.0], [2.0, 3.0]]),
    ],
)
def test_integer_bool_and_float_device_features_pass(X):
    assert check_X(X, 2) is X


def test_complex_device_features_are_refused():
    X = xps.asarray([[1 + 2j, 0j]])
    with pytest.raises(ValueError) as info:
        check_X(X)
    assert str(info.value) == (
        "xpnet: X must hold numbers (int or float), got dtype array_api_strict.complex128"
    )


def test_ragged_targets_are_named_y():
    with pytest.raises(ValueError) as info:
        check_y([[1, 2], [3]], 2, None)
    assert str(info.value).startswith("xpnet: y is not a rectangular array (")


@pytest.mark.parametrize(
    ("kwargs", "value", "expected"),
    [
        ({}, 1.5, "an integer"),
        ({"minimum": 2}, 1, "an integer >= 2"),
        ({"maximum": 3}, 4, "an integer <= 3"),
        ({"minimum": 1, "maximum": 3}, 0, "an integer in [1, 3]"),
        ({"minimum": 1, "maximum": 3}, 4, "an integer in [1, 3]"),
        ({}, True, "an integer"),
    ],
)
def test_check_int_phrases_each_kind_of_bound(kwargs, value, expected):
    from xpnet.validation import check_int

    with pytest.raises(ValueError) as info:
        check_int("n", value, **kwargs)
    assert str(info.value) == f"xpnet: n must be {expected}, got {value!r}"


def test_check_int_accepts_its_bounds_and_returns_an_int():
    from xpnet.validation import check_int, check_positive_int

    assert check_int("n", np.int64(3), minimum=3, maximum=3) == 3
    assert type(check_int("n", np.int64(3))) is int
    assert check_int("n", -5) == -5
    assert check_positive_int("n", 1) == 1 and check_positive_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError) as info:
        check_positive_int("epochs", 0)
    assert str(info.value) == "xpnet: epochs must be an integer >= 1, got 0"
    with pytest.raises(ValueError) as info:
        check_positive_int("epochs", "2")
    assert str(info.value) == "xpnet: epochs must be an integer >= 1, got '2'"
