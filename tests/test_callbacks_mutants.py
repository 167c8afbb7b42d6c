"""The callbacks, pinned by value: each hook driven directly with a real model and chosen logs.

Written against the mutants mutation testing found (docs/testing.md): ties and margins of the
monitored comparisons, the defaults each hook falls back on, the exact lines the progress bar
and the divergence guard print, the files the checkpoint callbacks write and when.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import DivergenceError, Sequential
from xpnet.callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
    TerminateOnNaN,
)
from xpnet.callbacks.base import ModelState
from xpnet.distributed import Communicator
from xpnet.history import History
from xpnet.io import codec
from xpnet.layers import Dense, ReLU


def _model() -> Sequential:
    return Sequential([Dense(3, 2)], dtype="float64", seed=0)


def _data() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(8, 3))
    return X, np.arange(8) % 2


def _hooked(cb: Callback, model: Sequential | None = None, **params) -> Sequential:
    model = _model() if model is None else model
    cb.set_model(model)
    cb.set_params(params)
    return model


# ----------------------------------------------------------------------------- ModelState
def test_model_state_of_a_model_without_parameters():
    model = Sequential([ReLU()])
    state = ModelState(model)
    state.update()
    state.restore()
    assert state.arrays == [] and state.copies == []


def test_model_state_follows_a_rebound_parameter(backend):
    model = _model()
    p = model.parameters()[0]
    p.data = backend.xp.asarray(np.ones((3, 2)))  # no longer a view of the flat buffer
    state = ModelState(model)
    p.data[...] = 5.0
    state.restore()
    np.testing.assert_array_equal(np.asarray(xpnet.backend.to_numpy(p.data)), np.ones((3, 2)))


# ----------------------------------------------------------------------------- EarlyStopping
def test_early_stopping_needs_the_full_margin_when_maximizing():
    es = EarlyStopping(monitor="score", mode="max", min_delta=0.1, patience=5)
    model = _hooked(es)
    es.on_train_begin()
    es.on_epoch_end(0, {"score": 0.5})
    es.on_epoch_end(1, {"score": 0.55})  # within min_delta: not an improvement
    assert (es.best, es.best_epoch, es.wait) == (0.5, 0, 1)
    es.on_epoch_end(2, {"score": 0.65})
    assert (es.best, es.best_epoch, es.wait) == (0.65, 2, 0)
    assert model.stop_training is False


def test_early_stopping_a_tie_is_not_an_improvement():
    es = EarlyStopping(monitor="loss", patience=1)
    model = _hooked(es)
    es.on_train_begin()
    es.on_epoch_end(0, {"loss": 1.0})
    es.on_epoch_end(1, {"loss": 1.0})
    assert model.stop_training is True
    assert (es.stopped_epoch, es.best_epoch, es.best) == (1, 0, 1.0)


def test_early_stopping_never_stops_on_the_first_epoch():
    es = EarlyStopping(monitor="loss", patience=0)
    model = _hooked(es)
    es.on_train_begin()
    es.on_epoch_end(0, {"loss": math.inf})  # no improvement on inf, but epoch 0
    assert model.stop_training is False and es.wait == 1


def test_early_stopping_skips_a_nan_epoch():
    es = EarlyStopping(monitor="loss", patience=0)
    model = _hooked(es)
    es.on_train_begin()
    es.on_epoch_end(0, {"loss": 1.0})
    es.on_epoch_end(1, {"loss": math.nan})
    assert model.stop_training is False and es.wait == 0


@pytest.mark.parametrize(
    ("cb", "owner"),
    [
        (EarlyStopping(), "EarlyStopping"),
        (ModelCheckpoint("unused-{epoch}", save_best_only=True), "ModelCheckpoint"),
    ],
)
def test_a_missing_monitored_key_warns_with_the_owners_name(cb, owner):
    _hooked(cb)
    cb.on_train_begin()
    with pytest.warns(UserWarning) as record:
        cb.on_epoch_end(0, {"loss": 1.0})
    assert str(record[0].message) == (
        f"xpnet: {owner} monitors 'val_loss', which is not in the epoch logs "
        "(available: loss); pass validation_data for val_ keys"
    )


# ----------------------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_bad_mode_names_itself():
    with pytest.raises(ValueError) as info:
        ModelCheckpoint("m", mode="up")
    assert str(info.value) == (
        "xpnet: ModelCheckpoint mode must be 'auto', 'min' or 'max', got 'up'"
    )


def test_model_checkpoint_starts_from_the_worst_value():
    assert ModelCheckpoint("m").best == math.inf
    assert ModelCheckpoint("m", monitor="val_accuracy").best == -math.inf
    assert ModelCheckpoint("m", mode="max").best == -math.inf
    assert ModelCheckpoint("m").last_path is None
    assert ModelCheckpoint("m").monitor == "val_loss"


def test_model_checkpoint_saves_only_strict_improvements(tmp_path):
    cb = ModelCheckpoint(tmp_path / "m-{epoch}.npz", monitor="val_accuracy", save_best_only=True)
    _hooked(cb)
    cb.on_train_begin()
    for epoch, acc in enumerate([0.5, 0.7, 0.7, 0.6, 0.8]):
        cb.on_epoch_end(epoch, {"val_accuracy": acc})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.npz", "m-2.npz", "m-5.npz"]
    assert cb.best == 0.8 and cb.last_path == tmp_path / "m-5.npz"
    cb.on_train_begin()
    assert cb.best == -math.inf


def test_model_checkpoint_without_monitor_default_watches_val_loss(tmp_path):
    cb = ModelCheckpoint(tmp_path / "m-{epoch}.npz", save_best_only=True)
    _hooked(cb)
    cb.on_train_begin()
    for epoch, (loss, val) in enumerate([(1.0, 2.0), (0.5, 2.0), (0.4, 1.0)]):
        cb.on_epoch_end(epoch, {"loss": loss, "val_loss": val})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.npz", "m-3.npz"]


# ----------------------------------------------------------------------------- CSVLogger
def test_csv_logger_hooks_before_and_after_training_do_nothing(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    _hooked(cb)
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_train_end()
    assert not path.exists()
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    cb.on_epoch_end(1, {"loss": 0.5})  # a key missing from the first epoch's: an empty cell
    cb.on_train_end()
    cb.on_train_end()
    cb.on_epoch_end(2, {"loss": 0.25})  # after the end: nothing more is written
    assert path.read_bytes() == b"epoch,loss,val_loss\n0,1.0,2.0\n1,0.5,\n"


def test_csv_logger_appends_a_header_to_an_empty_file_only(tmp_path):
    empty, one = tmp_path / "empty.csv", tmp_path / "one.csv"
    empty.write_text("")
    one.write_text("\n")
    for path in (empty, one):
        cb = CSVLogger(path, append=True)
        _hooked(cb)
        cb.on_train_begin()
        cb.on_epoch_end(0, {"loss": 1.0})
        cb.on_train_end()
    assert empty.read_text() == "epoch,loss\n0,1.0\n"
    assert one.read_text() == "\n0,1.0\n"


# ----------------------------------------------------------------------------- rate scheduler
class _Rates(Callback):
    def __init__(self) -> None:
        self.lr: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.lr.append(logs["lr"])


def test_the_scheduler_gets_the_epoch():
    X, y = _data()
    rates = _Rates()
    scheduler = LearningRateScheduler(lambda epoch, lr: 0.1 * (epoch + 1))
    _model().fit(X, y, epochs=3, batch_size=4, verbose=0, callbacks=[scheduler, rates])
    assert rates.lr == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("bad", [True, 0.0, -1.0])
def test_the_scheduler_refuses_a_rate_that_is_not_positive(bad):
    X, y = _data()
    with pytest.raises(ValueError) as info:
        _model().fit(
            X,
            y,
            epochs=1,
            batch_size=4,
            verbose=0,
            callbacks=[LearningRateScheduler(lambda epoch, lr: bad)],
        )
    assert str(info.value) == (
        f"xpnet: LearningRateScheduler schedule(0, 0.001) must return a positive number, "
        f"got {bad!r}"
    )


# ----------------------------------------------------------------------------- TerminateOnNaN
def test_terminate_on_nan_ignores_a_batch_without_a_copy_or_logs():
    cb = TerminateOnNaN(check_every=1)
    _hooked(cb)
    cb.on_train_begin()
    cb.on_train_batch_end(0, {"loss": math.nan})  # no copy taken before: nothing to check
    cb.on_epoch_begin(0)
    cb.on_train_batch_begin(0)
    cb.on_train_batch_end(0, None)


def test_terminate_on_nan_restores_the_last_epoch_checked_finite():
    cb = TerminateOnNaN(check_every=100)
    model = _hooked(cb)
    w0 = [w.copy() for w in model.get_weights()]
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    w1 = [w + 1.0 for w in w0]
    model.set_weights(w1)
    cb.on_epoch_end(0, {})  # no loss in the logs: nothing to refuse
    cb.on_epoch_begin(1)
    model.set_weights([w + 2.0 for w in w0])
    with pytest.raises(DivergenceError) as info:
        cb.on_epoch_end(1, {"loss": math.nan})
    for got, want in zip(model.get_weights(), w1, strict=True):
        np.testing.assert_array_equal(got, want)
    # No optimizer (none was set) and no steps in the params: step 1 and no rate.
    assert str(info.value) == (
        "xpnet: the loss became NaN or infinite at epoch 2, step 1; try a smaller learning "
        "rate or scale the inputs. The model keeps the last weights that were checked finite."
    )


@pytest.mark.parametrize("comm", [None, Communicator(None)])
def test_terminate_on_nan_checks_the_batch_loss_itself(comm):
    """Alone, the batch loss is taken as it is: a huge finite loss is no divergence."""
    cb = TerminateOnNaN(check_every=1)
    _hooked(cb, communicator=comm)
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    cb.on_train_batch_begin(0)
    cb.on_train_batch_end(0, {"batch": 0, "size": 16, "rank_size": 16, "loss": 1e308})
    cb.on_train_batch_begin(0)
    with pytest.raises(DivergenceError, match="at epoch 1, step 1;"):
        cb.on_train_batch_end(0, {"batch": 0, "size": 16, "rank_size": 16, "loss": math.inf})


# ----------------------------------------------------------------------------- BackupAndRestore
def test_backup_and_restore_refuses_every_zero_by_name():
    with pytest.raises(ValueError) as info:
        BackupAndRestore("unused", every=0)
    assert str(info.value) == "xpnet: BackupAndRestore every must be an integer >= 1, got 0"


class _Probe(Callback):
    """Records how many epochs the state file in ``directory`` holds at the start of each
    later epoch and when training ends (it runs before BackupAndRestore's own hooks)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: list[int | None] = []

    def _look(self) -> None:
        path = self.directory / "state.safetensors"
        if not path.exists():
            self.seen.append(None)
            return
        self.seen.append(codec.decode(path.read_bytes())[0]["training"]["epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        if epoch > 0:
            self._look()

    def on_train_end(self, logs=None):
        self._look()


class _StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


@pytest.mark.parametrize(
    ("every", "epochs", "stop", "seen"),
    [
        (None, 3, None, [1, 2, 3]),  # the default: every epoch
        (2, 3, None, [None, 2, 3]),  # and after the last one
        (5, 3, 0, [1]),  # and when a callback stops the run
    ],
)
def test_backup_and_restore_writes_when_due(tmp_path, every, epochs, stop, seen):
    X, y = _data()
    kw = {} if every is None else {"every": every}
    probe = _Probe(tmp_path)
    callbacks = [] if stop is None else [_StopAt(stop)]
    callbacks += [probe, BackupAndRestore(tmp_path, **kw)]
    _model().fit(X, y, epochs=epochs, batch_size=4, verbose=0, callbacks=callbacks)
    assert probe.seen == seen


# ----------------------------------------------------------------------------- ProgressBar
def _fit_with(cb: Callback, epochs: int = 2) -> Sequential:
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=epochs, batch_size=4, verbose=0, callbacks=[cb])
    return model


def test_progress_bar_draws_a_batch_bar_it_clears(capsys):
    _fit_with(ProgressBar())
    err = capsys.readouterr().err
    assert "epoch 1/2:   0%|" in err and "epoch 2/2:   0%|" in err
    assert "| 0/2 [" in err
    assert "batch/s]" in err
    assert "\n" not in err and err.endswith("\r")  # leave=False: nothing stays


def test_progress_bar_without_the_bar_prints_only_the_lines(capsys):
    _fit_with(ProgressBar(show_bar=False))
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    for i, line in enumerate(lines):
        # The rate is not shown; the seconds are.
        pattern = rf"epoch {i + 1}/2 - loss \d+\.\d{{4}} - accuracy \d\.\d{{4}} - \d+\.\d\ds"
        assert re.fullmatch(pattern, line), line


def test_progress_bar_epoch_line_seconds(capsys):
    cb = ProgressBar(show_bar=False)
    _hooked(cb, epochs=3)
    cb.on_epoch_end(0, {"loss": 1.0, "seconds": 1.5, "lr": 0.1})
    cb.on_epoch_end(1, {"loss": 0.5})
    cb.on_epoch_end(2, None)
    assert capsys.readouterr().out == (
        "epoch 1/3 - loss 1.0000 - 1.50s\nepoch 2/3 - loss 0.5000 - 0.00s\nepoch 3/3 - 0.00s\n"
    )


def test_progress_bar_reports_an_interrupt_only(capsys):
    cb = ProgressBar(show_bar=False)
    model = _hooked(cb)
    cb.on_train_end()  # no history yet
    model.history = History(["loss"])
    cb.on_train_end()
    assert capsys.readouterr().err == ""
    model.history.interrupted = True
    cb.on_train_end()
    assert capsys.readouterr().err == (
        "xpnet: training interrupted; returning the history so far\n"
    )


def test_progress_bar_counts_one_per_batch():
    cb = ProgressBar()
    _hooked(cb, steps=3, epochs=1)
    cb.on_epoch_begin(0)
    bar = cb._bar
    for step in range(3):
        cb.on_train_batch_end(step)
    assert (bar.n, bar.total, bar.unit, bar.desc) == (3, 3, "batch", "epoch 1/1")
    cb.on_epoch_end(0, {})
    assert cb._bar is None
