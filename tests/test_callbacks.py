"""xpnet.callbacks: the hook order, stop_training, each callback, the argument checks."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import xpnet
from xpnet import DivergenceError, Sequential
from xpnet.backend import namespace_of, to_numpy
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
from xpnet.layers import Dense, Layer
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp
from xpnet.testing import make_blobs, make_mlp


@pytest.fixture
def data():
    return make_blobs(n_samples=96, n_features=4, n_classes=3, seed=1)


def model(seed: int = 0) -> Sequential:
    return make_mlp(sizes=(4, 8, 3), dtype="float64", seed=seed)


class Recorder(Callback):
    """Records every hook call; the logs it saw are kept per epoch."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.epoch_logs: list[dict] = []
        self.batch_logs: list[dict] = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch))
        self.epoch_logs.append(dict(logs))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch))
        self.batch_logs.append(dict(logs))


class Scripted(Callback):
    """Writes a scripted ``score`` into the epoch logs (for the callbacks after it)."""

    def __init__(self, scores):
        self.scores = list(scores)

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]


def test_custom_callback_sees_the_hooks_in_order(backend, data):
    X, y = data
    rec = Recorder()
    history = model().fit(X, y, epochs=2, batch_size=48, validation_data=(X, y), callbacks=[rec])
    expected = [("train_begin",)]
    for e in range(2):
        expected.append(("epoch_begin", e))
        for b in range(2):
            expected += [("batch_begin", b), ("batch_end", b)]
        expected.append(("epoch_end", e))
    expected.append(("train_end",))
    assert rec.calls == expected
    assert rec.params["epochs"] == 2 and rec.params["steps"] == 2
    assert rec.params["batch_size"] == 48
    assert isinstance(rec.model, Sequential)
    logs = rec.epoch_logs[-1]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr"}
    assert all(type(v) is float for v in logs.values())
    assert logs["loss"] == history.history["loss"][-1]
    assert logs["lr"] == pytest.approx(1e-3)
    # Batch logs: host integers and the loss still on the device, never read back.
    for blog in rec.batch_logs:
        assert type(blog["batch"]) is int and type(blog["size"]) is int
        assert type(blog["loss"]) is not float
        assert namespace_of(blog["loss"]) is namespace_of(backend.asarray(np.zeros(1)))


def test_stop_training_ends_after_the_current_epoch(data):
    X, y = data

    class StopAt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.params and batch == 0 and len(self.model.history.epoch) == 1:
                self.model.stop_training = True

    rec = Recorder()
    history = model().fit(X, y, epochs=5, batch_size=32, callbacks=[StopAt(), rec])
    assert history.epoch == [0, 1]  # the epoch in which it was set still completes
    assert [c for c in rec.calls if c[0] == "batch_end" and c[1] == 2][-1] == ("batch_end", 2)
    assert rec.calls[-1] == ("train_end",)


def test_early_stopping_patience_and_attributes(data):
    X, y = data
    stop = EarlyStopping(monitor="score", patience=2)
    history = model().fit(
        X, y, epochs=10, batch_size=32, callbacks=[Scripted([5, 3, 4, 4, 2, 1, 1, 1, 1, 1]), stop]
    )
    assert stop.best_epoch == 1 and stop.best == 3
    assert stop.stopped_epoch == 3 and len(history.epoch) == 4
    # min_delta: an improvement smaller than it does not count.
    stop = EarlyStopping(monitor="score", patience=1, min_delta=0.5)
    model().fit(X, y, epochs=5, batch_size=32, callbacks=[Scripted([5, 4.8, 4.7, 1, 1]), stop])
    assert stop.best_epoch == 0 and stop.stopped_epoch == 1


def test_early_stopping_mode_and_start_from_epoch(data):
    X, y = data
    stop = EarlyStopping(monitor="val_accuracy", patience=0)
    assert stop.maximize  # "auto" takes larger as better for accuracies
    stop = EarlyStopping(monitor="score", mode="max", patience=1, start_from_epoch=2)
    model().fit(X, y, epochs=6, batch_size=32, callbacks=[Scripted([9, 9, 1, 2, 2, 2]), stop])
    assert stop.best_epoch == 3 and stop.stopped_epoch == 4
    with pytest.raises(ValueError, match="mode must be"):
        EarlyStopping(mode="largest")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_early_stopping_warns_about_a_missing_key(data):
    X, y = data
    with pytest.warns(UserWarning, match="val_loss.*not in the epoch logs"):
        model().fit(X, y, epochs=1, batch_size=32, callbacks=[EarlyStopping()])


class Counting(Layer):
    """An identity layer with a buffer: the training forwards it has seen."""

    kind = "Counting"

    def build(self, backend, dtype, rng, next_activation=None):
        self.count = backend.asarray(np.zeros(1), dtype=dtype)

    def forward(self, x, training=False):
        if training:
            self.count += 1.0
        return x

    def backward(self, grad, need_input_grad=True):
        return grad

    def buffers(self):
        return {"count": self.count}


def test_early_stopping_restores_weights_and_buffers_of_the_best_epoch(backend, data):
    X, y = data
    counting = Counting()
    net = Sequential([Dense(4, 8, activation="relu"), counting, Dense(8, 3)], seed=0)
    seen: list[tuple[list[np.ndarray], float]] = []

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((self.model.get_weights(), float(to_numpy(counting.count)[0])))

    stop = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    net.fit(
        X, y, epochs=8, batch_size=32, callbacks=[Snap(), Scripted([4, 2, 3, 3, 3, 3, 3, 3]), stop]
    )
    assert stop.best_epoch == 1 and stop.stopped_epoch == 3
    best_weights, best_count = seen[1]
    assert best_count == 6.0 and float(to_numpy(counting.count)[0]) == 6.0
    for a, b in zip(net.get_weights(), best_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(seen[3][0], best_weights, strict=True))


def test_model_checkpoint_fills_the_filepath_and_saves_the_best(tmp_path, data):
    X, y = data
    every = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{loss:.3f}.npz", monitor="loss")
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="score", save_best_only=True)
    written: list[float] = []

    class Watch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            written.append((tmp_path / "best.npz").stat().st_mtime_ns)

    net = model()
    history = net.fit(
        X, y, epochs=3, batch_size=32, callbacks=[Scripted([3, 1, 2]), every, best, Watch()]
    )
    names = sorted(p.name for p in tmp_path.glob("m-*.npz"))
    expected = [f"m-{e + 1:02d}-{history.history['loss'][e]:.3f}.npz" for e in range(3)]
    assert names == sorted(expected)
    assert best.best == 1 and written[1] == written[2] != written[0]
    loaded = xpnet.load_model(tmp_path / expected[-1])
    for a, b in zip(loaded.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="cannot be filled"):
        model().fit(X, y, epochs=1, callbacks=[ModelCheckpoint(tmp_path / "{nope}.npz")])


def test_csv_logger_writes_a_header_and_a_flushed_row_per_epoch(tmp_path, data):
    X, y = data
    path = tmp_path / "log.csv"
    rows_during: list[int] = []

    class Peek(Callback):
        def on_epoch_end(self, epoch, logs=None):
            rows_during.append(len(path.read_text().splitlines()))

    logger = CSVLogger(path)
    history = model().fit(X, y, epochs=2, batch_size=32, callbacks=[logger, Peek()])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "seconds", "lr"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert [float(r[1]) for r in rows[1:]] == history.history["loss"]
    assert rows_during == [2, 3]
    # append=True continues the file without a second header; a separator of choice.
    model().fit(X, y, epochs=1, batch_size=32, callbacks=[CSVLogger(path, append=True)])
    assert len(list(csv.reader(path.open()))) == 4
    model().fit(X, y, epochs=1, batch_size=32, callbacks=[CSVLogger(path, separator=";")])
    assert path.read_text().splitlines()[0] == "epoch;loss;accuracy;seconds;lr"


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda lr: SGD(lr=lr, momentum=0.9),
        lambda lr: Adam(lr=lr),
        lambda lr: AdamW(lr=lr, weight_decay=0.1),
        lambda lr: RMSProp(lr=lr, momentum=0.5),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop"],
)
def test_every_optimizer_steps_with_the_scheduled_rate(data, make_opt):
    X, y = data
    scheduled, direct = model(), model()
    rates = []
    sched = LearningRateScheduler(lambda epoch, lr: rates.append(lr) or 0.003)
    h = scheduled.fit(X, y, epochs=2, batch_size=32, optimizer=make_opt(0.1), callbacks=[sched])
    direct.fit(X, y, epochs=2, batch_size=32, optimizer=make_opt(0.003))
    assert rates == [0.1, 0.003]
    for a, b in zip(scheduled.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # And the rate really matters: the unscheduled run moves differently.
    other = model()
    other.fit(X, y, epochs=2, batch_size=32, optimizer=make_opt(0.1))
    assert not np.array_equal(other.get_weights()[0], scheduled.get_weights()[0])
    assert h.history["loss"]  # the run recorded its epochs


def test_learning_rate_scheduler_checks_its_schedule(data):
    X, y = data
    with pytest.raises(TypeError, match="callable"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="positive number"):
        model().fit(X, y, callbacks=[LearningRateScheduler(lambda e, lr: -1.0)])


def test_progress_bar_prints_the_epoch_lines(capsys, data):
    X, y = data
    model().fit(X, y, epochs=2, batch_size=32, verbose=2)
    by_verbose = capsys.readouterr().out.splitlines()
    model().fit(X, y, epochs=2, batch_size=32, callbacks=[ProgressBar(show_bar=False)])
    by_callback = capsys.readouterr().out.splitlines()
    assert len(by_verbose) == 2 and by_verbose[0].startswith("epoch 1/2 - loss ")
    assert " - accuracy " in by_verbose[0] and by_verbose[0].endswith("s")
    assert [line.rsplit(" - ", 1)[0] for line in by_verbose] == [
        line.rsplit(" - ", 1)[0] for line in by_callback
    ]


def test_terminate_on_nan_keeps_the_last_finite_weights(backend, data):
    X, y = data
    net = make_mlp(sizes=(4, 8, 3), dtype="float32", seed=0)
    guard = TerminateOnNaN(check_every=1)
    with pytest.raises(DivergenceError, match="epoch 1, step 2;"):
        net.fit(X * 100, y, epochs=3, batch_size=8, optimizer=SGD(lr=1e38), callbacks=[guard])
    assert all(np.isfinite(w).all() for w in net.get_weights())
    with pytest.raises(ValueError, match="check_every"):
        TerminateOnNaN(check_every=0)


def test_backup_and_restore_resumes_like_fit_checkpoint(tmp_path, data):
    X, y = data
    full = model()
    full.fit(X, y, epochs=4, batch_size=32, seed=3)
    first = model()
    first.fit(X, y, epochs=2, batch_size=32, seed=3, callbacks=[BackupAndRestore(tmp_path)])
    again = model()
    history = again.fit(
        X, y, epochs=4, batch_size=32, seed=3, callbacks=[BackupAndRestore(tmp_path)]
    )
    assert history.epoch == [0, 1, 2, 3]
    for a, b in zip(again.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # resume=None on an empty directory starts afresh; resume=True insists on a state.
    model().fit(X, y, epochs=1, callbacks=[BackupAndRestore(tmp_path / "new")])
    assert (tmp_path / "new").is_dir()
    with pytest.raises(FileNotFoundError):
        model().fit(X, y, epochs=1, callbacks=[BackupAndRestore(tmp_path / "x", resume=True)])
    with pytest.raises(ValueError, match="give one"):
        model().fit(X, y, checkpoint=tmp_path, callbacks=[BackupAndRestore(tmp_path)])


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        ("EarlyStopping", "must be a list"),
        ([EarlyStopping], r"callbacks\[0\] is the class EarlyStopping, not an instance"),
        ([EarlyStopping(), "csv"], r"callbacks\[1\] must be an xpnet.callbacks.Callback"),
        ([lambda epoch: None], r"callbacks\[0\] must be an xpnet.callbacks.Callback"),
        (42, "must be a list"),
    ],
)
def test_callbacks_that_are_not_callbacks_are_refused(data, callbacks, message):
    X, y = data
    net = model()
    before = net.get_weights()
    with pytest.raises(TypeError, match=message):
        net.fit(X, y, callbacks=callbacks)
    for a, b in zip(net.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)  # nothing trained


def test_an_epoch_reads_the_device_once():
    """The loss sum, the correct count and the finiteness of every weight arrive in one read
    per epoch, however many batches (array_api_strict, where each read path can be seen)."""
    strict = pytest.importorskip("array_api_strict")
    array_type = type(strict.asarray(1.0))
    reads = {"n": 0}
    mp = pytest.MonkeyPatch()

    def counted(original):
        def wrapper(self, *args, **kwargs):
            reads["n"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("__float__", "__int__", "__bool__", "__index__", "__dlpack__", "item", "tolist"):
        if hasattr(array_type, name):
            mp.setattr(array_type, name, counted(getattr(array_type, name)))
    try:
        found = {}
        for n, check_every in ((64, 10**6), (512, 10**6), (512, 5)):
            X, y = make_blobs(n_samples=n, n_features=10, n_classes=3, seed=0)
            net = make_mlp("array_api_strict", sizes=(10, 16, 3), dtype="float32", seed=0)
            net.parameters()
            reads["n"] = 0
            net.fit(X, y, epochs=2, batch_size=16, check_every=check_every, seed=0)
            found[(n, check_every)] = reads["n"]
    finally:
        mp.undo()
    assert found[(64, 10**6)] == found[(512, 10**6)] == 2  # one per epoch
    assert found[(512, 5)] == 2 + 2 * (32 // 5)  # plus the periodic loss checks


def test_the_loop_and_callbacks_never_import_the_model():
    """model -> training -> callbacks, one way: no import of xpnet.model (or the estimators)
    in the loop or the callbacks, imports inside functions included."""
    import ast
    from pathlib import Path

    root = Path(xpnet.__file__).parent
    for path in [
        *sorted((root / "training").glob("*.py")),
        *sorted((root / "callbacks").glob("*.py")),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert name.split(".")[-1] not in ("model", "sklearn"), (path.name, name)
