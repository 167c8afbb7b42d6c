"""Data sets by the command line's names (xpnet.datasets.catalog), pixel scaling, and the images
``xpnet predict`` reads (xpnet.datasets.images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xpnet.datasets import (
    TEST_FRACTION,
    DatasetSpec,
    image_shape,
    load_dataset,
    parse_dataset_spec,
    pixel_scale,
    read_inputs,
    scale_pixels,
)
from xpnet.errors import DataError
from xpnet.validation import InvalidArgumentError


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("mnist", DatasetSpec("mnist")),
        (" Fashion_MNIST ", DatasetSpec("fashion-mnist")),
        ("fashion", DatasetSpec("fashion-mnist")),
        ("DIGITS", DatasetSpec("digits")),
        ("csv:data/train.csv", DatasetSpec("csv", Path("data/train.csv"))),
    ],
)
def test_parse_dataset_spec(text: str, spec: DatasetSpec) -> None:
    assert parse_dataset_spec(text) == spec


def test_parse_dataset_spec_refuses_unknown_names() -> None:
    with pytest.raises(InvalidArgumentError, match="data set must be one of mnist") as info:
        parse_dataset_spec("cifar10")
    assert info.value.choices == ("mnist", "fashion-mnist", "digits", "csv:PATH")
    with pytest.raises(ValueError, match="csv: needs a file path"):
        parse_dataset_spec("csv:")
    assert str(DatasetSpec("csv", Path("a.csv"))) == "csv:a.csv"


def test_load_digits_by_name_is_scaled_and_split() -> None:
    pytest.importorskip("sklearn")
    data = load_dataset("digits", dtype="float64")
    assert data.X_train is not None and data.y_train is not None
    n = data.y_train.shape[0] + data.y_test.shape[0]
    assert n == 1797 and abs(data.y_test.shape[0] - TEST_FRACTION * n) <= 1
    assert data.X_test.dtype == np.float64 and 0.0 <= data.X_test.min() <= data.X_test.max() <= 1
    assert data.X_test.max() == 1.0  # 16 is full scale
    assert data.image_shape == (8, 8) and data.labels == [str(i) for i in range(10)]
    again = load_dataset(DatasetSpec("digits"), need_train=False)
    assert again.X_train is None and np.array_equal(again.y_test, data.y_test)


def test_missing_csv_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.csv does not exist"):
        load_dataset(f"csv:{tmp_path}/missing.csv")


def test_image_shape_and_pixel_scale() -> None:
    assert image_shape(784) == (28, 28) and image_shape(64) == (8, 8)
    assert (pixel_scale(784), pixel_scale(64)) == (255, 16)
    with pytest.raises(DataError, match="a model with 10 inputs does not take square images"):
        image_shape(10)


def test_scale_pixels() -> None:
    out = scale_pixels(np.array([[0, 8, 16]]), 16)
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(scale_pixels(np.array([255, 51]), 255, "float64"), [1.0, 0.2])
    with pytest.raises(DataError, match=r"expected pixel values in \[0, 16\], found min 0 and"):
        scale_pixels(np.array([0, 17]), 16)
    with pytest.raises(DataError, match="NaN or infinity"):
        scale_pixels(np.array([np.nan]), 16)
    with pytest.raises(ValueError, match="floating-point dtype"):
        scale_pixels(np.array([1]), 16, "int32")


def test_read_inputs_shapes(tmp_path: Path) -> None:
    raw = np.arange(2 * 64).reshape(2, 8, 8) % 17
    np.save(tmp_path / "two.npy", raw)
    X = read_inputs(tmp_path / "two.npy", 64, "float32")
    np.testing.assert_allclose(X, raw.reshape(2, 64) / 16, rtol=1e-6)
    np.save(tmp_path / "one.npy", raw[0])
    assert read_inputs(tmp_path / "one.npy", 64, "float64").shape == (1, 64)
    with pytest.raises(DataError, match="does not exist"):
        read_inputs(tmp_path / "none.npy", 64, "float32")
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    with pytest.raises(DataError, match=r"expected images of shape \(n, 64\)"):
        read_inputs(tmp_path / "bad.npy", 64, "float32")
