"""The model and the loop's evaluation, pinned by value: the summary table, the ``training``
flag inference passes to each layer, evaluation in several batches, the validation scores.

Written against the mutants mutation testing found (docs/testing.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.layers import Dense, Layer, ReLU
from xpnet.optimizers import SGD


class _Seen(Layer):
    """An identity layer that records the ``training`` argument of each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def forward(self, x: Any, training: bool = False) -> Any:
        self.seen.append(training)
        return x

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        return grad


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).normal(size=(n, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


def test_summary_table():
    model = xpnet.Sequential([Dense(3, 2), ReLU(), Dense(2, 12)], dtype="float64", seed=0)
    printed: list[str] = []
    text = model.summary(print_fn=printed.append)
    assert printed == [text]
    assert text == (
        "Layer            Output       Params\n"
        "------------------------------------\n"
        "0: Dense(3, 2)   (n, 2)            8\n"
        "1: ReLU()        (n, 2)            0\n"
        "2: Dense(2, 12)  (n, 12)          36\n"
        "------------------------------------\n"
        "Total parameters: 44  dtype: float64  backend: numpy (cpu)"
    )


def test_inference_and_validation_pass_training_false_to_each_layer():
    seen = _Seen()
    model = xpnet.Sequential([Dense(3, 2), seen], dtype="float64", seed=0)
    X, y = _data(10)
    model.fit(X, y, epochs=1, batch_size=10, validation_data=(X, y), verbose=0)
    assert seen.seen == [True, False]
    seen.seen.clear()
    model.predict(X)
    model.evaluate(X, y)
    assert seen.seen == [False, False] and all(s is False for s in seen.seen)


def test_evaluation_in_two_batches_is_the_evaluation_in_one():
    model = xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=0)
    X, y = _data(1100)
    one = model.evaluate(X, y, batch_size=2000)
    two = model.evaluate(X, y, batch_size=600)
    assert one.keys() == two.keys() == {"loss", "accuracy"}
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-12)
    assert two["accuracy"] == one["accuracy"]
    np.testing.assert_allclose(
        model.predict_proba(X, batch_size=600), model.predict_proba(X, batch_size=2000)
    )


class _Evaluate(xpnet.callbacks.Callback):
    """Evaluates the validation set itself at the end of each epoch."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y
        self.scores: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.scores.append({**self.model.evaluate(self.X, self.y), "logs": logs})


@pytest.mark.parametrize("n", [3, 11])
def test_validation_scores_are_the_evaluation_of_the_epochs_weights(n):
    """Bit for bit: the loss is the mean itself, never a sum divided back (a rounding off)."""
    model = xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=0)
    X, y = _data(20)
    Xv, yv = _data(n, seed=1)
    probe = _Evaluate(Xv, yv)
    history = model.fit(
        X,
        y,
        epochs=12,
        batch_size=5,
        optimizer=SGD(lr=0.5),  # losses below 1, where a sum divided back often rounds off
        validation_data=(Xv, yv),
        verbose=0,
        callbacks=[probe],
    )
    assert max(history.history["val_loss"][1:]) < 1.0
    assert history.history["val_loss"] == [s["loss"] for s in probe.scores]
    assert history.history["val_accuracy"] == [s["accuracy"] for s in probe.scores]
