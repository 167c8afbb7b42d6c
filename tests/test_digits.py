"""End to end on scikit-learn's bundled 8x8 digits: a small MLP reaches >= 95% test accuracy."""

from __future__ import annotations

import time

import numpy as np
import pytest

import xpnet
from xpnet import Sequential
from xpnet.layers import Dense, Dropout
from xpnet.metrics import accuracy, confusion_matrix
from xpnet.optimizers import Adam

pytest.importorskip("sklearn", reason="load_digits needs scikit-learn")


@pytest.fixture(scope="module")
def digits():
    from xpnet.datasets import load_digits

    X, y = load_digits()
    X = X / 16.0  # pixel values are 0..16
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:360], order[360:]
    return X[train], y[train], X[test], y[test]


def test_digits_end_to_end(backend, digits):
    X_train, y_train, X_test, y_test = digits
    model = Sequential(
        [Dense(64, 128, activation="relu"), Dropout(0.1), Dense(128, 10)],
        seed=0,
    )
    t0 = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        epochs=15,
        batch_size=32,
        optimizer=Adam(lr=3e-3),
        validation_data=(X_test, y_test),
    )
    seconds = time.perf_counter() - t0
    predicted = model.predict(X_test)
    acc = accuracy(y_test, predicted)
    print(f"digits on {backend.name}: test accuracy {acc:.4f} in {seconds:.2f}s")
    assert acc >= 0.95
    assert model.evaluate(X_test, y_test)["accuracy"] == pytest.approx(acc)
    assert history.history["val_accuracy"][-1] == pytest.approx(acc)
    cm = confusion_matrix(y_test, predicted, n_classes=10)
    assert cm.sum() == len(y_test)
    assert np.trace(cm) == round(acc * len(y_test))
    assert all(isinstance(p.data, type(backend.asarray([0.0]))) for p in model.parameters())
    assert xpnet.get_backend() is backend
