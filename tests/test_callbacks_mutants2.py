"""EarlyStopping's and TerminateOnNaN's defaults, messages and counters, pinned by value.

Written against the mutants mutation testing left alive (docs/testing.md). The callbacks are
driven by hand, hook by hook, as a custom training loop would: no fit, a few milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet import DivergenceError
from xpnet.callbacks import EarlyStopping, ModelCheckpoint, TerminateOnNaN
from xpnet.layers import Dense


def _model() -> xpnet.Sequential:
    return xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=0)


# ----------------------------------------------------------------------------- EarlyStopping
def test_early_stopping_defaults():
    es = EarlyStopping()
    assert es.monitor == "val_loss"
    assert es.min_delta == 0.0
    assert es.patience == 0
    assert es.mode == "auto"
    assert es.restore_best_weights is False
    assert es.start_from_epoch == 0
    assert es.maximize is False
    assert (es.wait, es.stopped_epoch, es.best_epoch, es.best) == (0, 0, 0, math.inf)


@pytest.mark.parametrize(("mode", "maximize"), [("min", False), ("max", True), ("auto", False)])
def test_each_mode_is_accepted_and_kept(mode, maximize):
    es = EarlyStopping(monitor="val_accuracy" if mode == "min" else "val_loss", mode=mode)
    assert es.mode == mode and es.maximize is maximize
    assert ModelCheckpoint("m.safetensors", mode=mode).maximize is maximize


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patience": -1}, "xpnet: EarlyStopping patience must be an integer >= 0, got -1"),
        (
            {"start_from_epoch": -2},
            "xpnet: EarlyStopping start_from_epoch must be an integer >= 0, got -2",
        ),
        (
            {"mode": "best"},
            "xpnet: EarlyStopping mode must be 'auto', 'min' or 'max', got 'best'",
        ),
    ],
)
def test_early_stopping_arguments_are_named_in_their_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        EarlyStopping(**kwargs)
    assert str(info.value) == message


def _run(es: EarlyStopping, values: list[float]) -> xpnet.Sequential:
    model = _model()
    es.set_model(model)
    es.on_train_begin()
    for epoch, v in enumerate(values):
        es.on_epoch_end(epoch, {"val_loss": v})
        if model.stop_training:
            break
    return model


def test_patience_counts_every_epoch_without_improvement_from_the_first():
    """An infinite loss never improves on the start (inf): with patience 3 the third such
    epoch stops, and the best epoch stays the first."""
    es = EarlyStopping(patience=3)
    model = _run(es, [math.inf] * 6)
    assert model.stop_training
    assert (es.stopped_epoch, es.best_epoch, es.wait) == (2, 0, 3)


def test_a_run_that_is_never_stopped_keeps_stopped_epoch_0():
    es = EarlyStopping(patience=5)
    model = _run(es, [math.inf, math.inf])
    assert not model.stop_training
    assert (es.stopped_epoch, es.best_epoch, es.wait) == (0, 0, 2)
    es.on_train_begin()  # a new run starts its counters afresh
    assert (es.stopped_epoch, es.best_epoch, es.wait) == (0, 0, 0)


# ----------------------------------------------------------------------------- TerminateOnNaN
def test_terminate_on_nan_defaults_and_its_error():
    assert TerminateOnNaN().check_every == 50
    with pytest.raises(ValueError) as info:
        TerminateOnNaN(0)
    assert str(info.value) == "xpnet: TerminateOnNaN check_every must be an integer >= 1, got 0"


def _guarded(check_every: int) -> tuple[xpnet.Sequential, list, TerminateOnNaN]:
    model = _model()
    guard = TerminateOnNaN(check_every=check_every)
    guard.set_model(model)
    guard.set_params({"steps": 2})
    return model, model.get_weights(), guard


def _assert_weights(model: xpnet.Sequential, want: list) -> None:
    for got, w in zip(model.get_weights(), want, strict=True):
        np.testing.assert_array_equal(got, w)


def test_a_hand_loop_without_on_train_begin_restores_the_epochs_start():
    model, start, guard = _guarded(check_every=50)
    guard.on_epoch_begin(0)  # the good copy is taken here
    model.set_weights([w + 2.0 for w in start])
    with pytest.raises(DivergenceError, match="at epoch 1, step 2;"):
        guard.on_epoch_end(0, {"loss": math.nan})
    _assert_weights(model, start)


def test_a_hand_loop_checking_every_batch_restores_the_last_checked_weights():
    model, start, guard = _guarded(check_every=1)
    guard.on_epoch_begin(0)
    guard.on_train_batch_begin(0, {"batch": 0, "size": 4, "rank_size": 4})
    model.set_weights([w + 1.0 for w in start])  # the first batch's update
    guard.on_train_batch_end(0, {"batch": 0, "size": 4, "rank_size": 4, "loss": 0.5})
    guard.on_train_batch_begin(1, {"batch": 1, "size": 4, "rank_size": 4})
    model.set_weights([w + 2.0 for w in start])  # the second batch's update
    with pytest.raises(DivergenceError, match="at epoch 1, step 2;"):
        guard.on_train_batch_end(1, {"batch": 1, "size": 4, "rank_size": 4, "loss": math.inf})
    # The second loss was computed from the first update's weights, which were not checked:
    # the last checked ones are the epoch's start.
    _assert_weights(model, start)


def test_the_epoch_counter_starts_at_the_first_epoch():
    model = _model()
    guard = TerminateOnNaN()
    guard.set_model(model)
    guard.set_params({"steps": 3})
    with pytest.raises(DivergenceError) as info:
        guard.on_epoch_end(0, {"loss": math.inf})
    assert "the loss became NaN or infinite at epoch 1, step 3;" in str(info.value)
