"""Target checks on a device array (array_api_strict, not NumPy), pinned by exact messages.

Written against the mutants mutation testing found (docs/testing.md); the arrays are made
with array_api_strict directly, so these run whatever backends the suite is asked for.
"""

from __future__ import annotations

import pytest

from xpnet.validation import check_y

xps = pytest.importorskip("array_api_strict")


def _refused(y, n_classes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_y(y, int(y.shape[0]), n_classes)
    assert str(info.value) == message


def test_regression_targets_on_a_device_pass():
    for y in (
        xps.asarray([0.5, -1.0, 2.0]),
        xps.asarray([[0.5], [1.0], [2.0]]),
        xps.asarray([1, 2, 3]),
        xps.asarray([[1, 2], [3, 4], [5, 6]]),
        xps.asarray([True, False, True]),
    ):
        assert check_y(y, 3, None) is y


def test_device_labels_up_to_the_last_class_pass_and_one_more_is_refused():
    y = xps.asarray([0, 1, 2])
    assert check_y(y, 3, 3) is y
    _refused(
        xps.asarray([0, 1, 3]),
        3,
        "xpnet: labels must lie in [0, 3) for a model with 3 outputs, got values from 0 to 3",
    )
    _refused(
        xps.asarray([0.0, 1.0, 2.0]),
        3,
        "xpnet: y must hold integer class labels, got dtype array_api_strict.float64",
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_device_targets_that_are_not_finite_are_refused(bad):
    _refused(xps.asarray([0.5, bad, 1.0]), None, "xpnet: y contains NaN or infinite values")


def test_device_targets_that_are_not_numbers_are_refused():
    _refused(
        xps.asarray([1 + 2j, 0j, 1j]),
        None,
        "xpnet: y must be numeric, got dtype array_api_strict.complex128",
    )
