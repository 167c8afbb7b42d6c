"""Classification metrics: accuracy, the confusion matrix and its text table."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.metrics import accuracy, confusion_matrix, format_confusion_matrix

Y_TRUE = np.array([0, 1, 2, 2, 1, 0, 2, 1])
Y_PRED = np.array([0, 2, 2, 2, 1, 1, 0, 1])


def test_accuracy():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 8)
    assert accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert isinstance(accuracy(Y_TRUE, Y_PRED), float)


def test_accuracy_on_backend_arrays(backend):
    assert accuracy(backend.asarray(Y_TRUE), backend.asarray(Y_PRED)) == pytest.approx(5 / 8)


def test_accuracy_checks_its_input():
    with pytest.raises(ValueError, match=r"\(3,\) true labels and \(2,\) predictions"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="zero samples"):
        accuracy([], [])


def test_confusion_matrix():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 2]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    assert cm.sum() == len(Y_TRUE)
    assert np.trace(cm) / cm.sum() == accuracy(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(Y_TRUE))


def test_confusion_matrix_agrees_with_scikit_learn(rng):
    sk_metrics = pytest.importorskip("sklearn.metrics")
    t, p = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    np.testing.assert_array_equal(
        confusion_matrix(t, p, n_classes=7), sk_metrics.confusion_matrix(t, p, labels=range(7))
    )


def test_confusion_matrix_pads_to_n_classes(backend):
    cm = confusion_matrix(backend.asarray(np.array([0, 1])), backend.asarray(np.array([0, 0])), 4)
    assert cm.shape == (4, 4)
    assert cm[0, 0] == 1
    assert cm[1, 0] == 1
    assert cm.sum() == 2


def test_confusion_matrix_checks_its_input():
    with pytest.raises(ValueError, match="3 labels and 2 predictions"):
        confusion_matrix([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        confusion_matrix([0, 1, 2], [0, 1, 1], n_classes=2)
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix([0, -1], [0, 0], n_classes=2)


def test_format_confusion_matrix():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    text = format_confusion_matrix(cm)
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("true\\pred")
    assert lines[0].split()[1:] == ["0", "1", "2"]
    for i, line in enumerate(lines[1:]):
        assert [int(v) for v in line.split()[1:]] == cm[i].tolist()
        assert line.split()[0] == str(i)
    assert len({len(line) for line in lines}) == 1  # fixed width


def test_format_confusion_matrix_with_labels_and_wide_counts():
    cm = np.array([[12345, 0], [7, 3]])
    text = format_confusion_matrix(cm, labels=["cat", "dog"])
    lines = text.splitlines()
    assert lines[0].split()[1:] == ["cat", "dog"]
    assert lines[1].split() == ["cat", "12345", "0"]
    assert lines[2].split() == ["dog", "7", "3"]
    assert len({len(line) for line in lines}) == 1
