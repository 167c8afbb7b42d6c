"""Preprocessing: unit-range scaling, standardization, one-hot, stratified split, digits."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.datasets import load_digits, one_hot, standardize, to_unit_range, train_val_split
from xpnet.errors import DataError


def test_to_unit_range_uint8():
    X = np.array([[0, 51, 255]], dtype=np.uint8)
    out = to_unit_range(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], rtol=1e-7)
    assert to_unit_range(X, dtype="float64").dtype == np.float64
    assert X[0, 2] == 255  # input untouched


def test_to_unit_range_other_numeric_input():
    np.testing.assert_allclose(to_unit_range(np.array([0.0, 127.5, 255.0])), [0, 0.5, 1])
    np.testing.assert_allclose(to_unit_range([[0, 255]]), [[0, 1]])
    assert to_unit_range(np.zeros((0, 3), np.int64)).shape == (0, 3)


@pytest.mark.parametrize(
    ("X", "pattern"),
    [
        (np.array([0.0, 1.5, 300.0]), r"\[0, 255\].*max 300"),
        (np.array([-0.5, 1.0]), r"min -0\.5"),
        (np.array([-3, 2], dtype=np.int16), "min -3"),
        (np.array([np.nan, 1.0]), "non-finite"),
        (np.array(["a"]), "numeric"),
    ],
)
def test_to_unit_range_rejects(X, pattern):
    with pytest.raises(DataError, match=pattern):
        to_unit_range(X)


def test_to_unit_range_rejects_integer_dtype():
    with pytest.raises(ValueError, match="floating-point dtype"):
        to_unit_range(np.zeros(3, np.uint8), dtype="int32")


def test_standardize_fit_and_apply():
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 3.0, (500, 4)).astype(np.float32)
    X[:, 2] = 7.0  # constant feature
    Z, mean, std = standardize(X)
    assert Z.dtype == mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), [1, 1, 0, 1], atol=1e-5)
    assert std[2] == 1.0 and mean[2] == 7.0
    np.testing.assert_allclose(mean, X.astype(np.float64).mean(axis=0), rtol=1e-6)
    # Transform new data with the training statistics.
    Z2, mean2, std2 = standardize(X[:10] + 1, mean, std)
    np.testing.assert_allclose(Z2, (X[:10] + 1 - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(std2, std)


def test_standardize_integer_input_gives_float64():
    Z, mean, std = standardize(np.array([[0, 10], [2, 10]], dtype=np.uint8))
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z, [[-1, 0], [1, 0]])
    np.testing.assert_array_equal(mean, [1, 10])
    np.testing.assert_array_equal(std, [1, 1])


def test_standardize_errors():
    with pytest.raises(DataError, match=r"mean has shape \(3,\), expected .*\(2,\)"):
        standardize(np.ones((4, 2)), mean=np.zeros(3), std=np.ones(2))
    with pytest.raises(DataError, match="zero samples"):
        standardize(np.ones((0, 2)))


def test_one_hot():
    out = one_hot(np.array([2, 0, 1, 2]))
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out.argmax(axis=1), [2, 0, 1, 2])
    np.testing.assert_array_equal(out.sum(axis=1), 1)
    assert one_hot([1], n_classes=10, dtype=np.float64).shape == (1, 10)
    assert one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)


@pytest.mark.parametrize(
    ("y", "n_classes", "pattern"),
    [
        (np.array([0, 3]), 3, r"0\.\.2, found min 0 and max 3"),
        (np.array([-1, 0]), None, "min -1"),
        (np.array([0.0, 1.0]), None, "integer labels"),
        (np.array([[0, 1]]), None, "1-D labels"),
    ],
)
def test_one_hot_errors(y, n_classes, pattern):
    with pytest.raises(DataError, match=pattern):
        one_hot(y, n_classes)


def _imbalanced(n_per_class=(500, 300, 150, 40, 9, 2)):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    X = np.arange(y.size * 2).reshape(-1, 2)
    return X, y


def test_stratified_split_preserves_proportions():
    X, y = _imbalanced()
    X_tr, y_tr, X_val, y_val = train_val_split(X, y, 0.2, seed=1)
    assert len(y_tr) + len(y_val) == len(y)
    assert abs(len(y_val) - round(0.2 * len(y))) <= 3
    counts = np.bincount(y)
    val_counts = np.bincount(y_val, minlength=counts.size)
    # Each class's share, within one sample of rounding (and at least 1 on each side).
    assert np.all(np.abs(val_counts - 0.2 * counts) <= 1)
    assert np.all(val_counts >= 1) and np.all(counts - val_counts >= 1)
    # Rows stay paired with their labels and no sample is lost or duplicated.
    np.testing.assert_array_equal(y[X_tr[:, 0] // 2], y_tr)
    np.testing.assert_array_equal(y[X_val[:, 0] // 2], y_val)
    all_rows = np.sort(np.concatenate([X_tr[:, 0], X_val[:, 0]]))
    np.testing.assert_array_equal(all_rows, X[:, 0])


def test_split_is_deterministic_by_seed():
    X, y = _imbalanced()
    a = train_val_split(X, y, seed=3)
    b = train_val_split(X, y, seed=3)
    c = train_val_split(X, y, seed=4)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3]) or not np.array_equal(a[2], c[2])


def test_split_shuffles_classes_together():
    X, y = _imbalanced()
    _, y_tr, _, _ = train_val_split(X, y, seed=0)
    assert not np.all(np.diff(y_tr) >= 0)


def test_unstratified_split():
    X, y = _imbalanced()
    _, y_tr, _, y_val = train_val_split(X, y, 0.25, seed=0, stratify=False)
    assert len(y_val) == round(0.25 * len(y))
    assert len(y_tr) == len(y) - len(y_val)


def test_singleton_class_stays_in_training():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    _, y_tr, _, y_val = train_val_split(np.zeros((9, 1)), y, 0.5, seed=0)
    assert 2 in y_tr and 2 not in y_val
    assert set(y_val) == {0, 1}


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(np.zeros((10, 1)), np.zeros(10), fraction)


def test_split_rejects_mismatched_lengths():
    with pytest.raises(DataError, match="X has 10 samples but y has 9"):
        train_val_split(np.zeros((10, 1)), np.zeros(9))
    with pytest.raises(DataError, match="at least 2 samples"):
        train_val_split(np.zeros((1, 1)), np.zeros(1))


def test_load_digits():
    pytest.importorskip("sklearn")
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16
    np.testing.assert_array_equal(np.unique(y), np.arange(10))


def test_load_digits_without_sklearn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "xpnet\[sklearn\]"'):
        load_digits()
