"""The training loop, fit's setup and the model's data handling, pinned by value.

Written against the mutants mutation testing left alive (docs/testing.md): what the callbacks
are handed (their params, each hook's arguments), the epoch's finiteness check when the
parameters are not (or not all) views of the flat buffer, a model whose only layer has one
parameter, the targets' dtype on the device, and the exact limits of the input checks.
All small and fast: no MNIST, no subprocess.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from user_layers import ScaleLayer

import xpnet
from xpnet import DivergenceError
from xpnet.backend import to_numpy
from xpnet.callbacks import Callback, ProgressBar
from xpnet.history import History
from xpnet.layers import Dense, Layer
from xpnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.optimizers import SGD, L2Penalty
from xpnet.training import check_callbacks, default_callbacks, history_keys, train


class _Calls(Callback):
    """Records the params at the start and every hook's positional arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.seen: dict[str, Any] = {}

    def on_train_begin(self, *args: Any) -> None:
        self.seen = dict(self.params)
        self.calls.append(("train_begin", args))

    def on_epoch_begin(self, *args: Any) -> None:
        self.calls.append(("epoch_begin", args))

    def on_train_batch_begin(self, *args: Any) -> None:
        self.calls.append(("batch_begin", args))

    def on_epoch_end(self, *args: Any) -> None:
        self.calls.append(("epoch_end", args))


def _data(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(n, 3))
    return X, np.arange(n) % 2


def _model(**kw: Any) -> xpnet.Sequential:
    return xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=0, **kw)


# ----------------------------------------------------------------------------- the hooks
def test_callbacks_get_the_runs_params_and_each_hooks_arguments():
    X, y = _data(10)
    rec = _Calls()
    _model().fit(X, y, epochs=2, batch_size=4, shuffle=False, verbose=0, callbacks=[rec])
    seen = {k: v for k, v in rec.seen.items() if k not in ("rng", "communicator")}
    assert seen == {
        "epochs": 2,
        "steps": 3,
        "batch_size": 4,
        "samples": 10,
        "shuffle": False,
        "verbose": 0,
        "initial_epoch": 0,
    }
    assert [c for c in rec.calls if c[0] == "epoch_begin"] == [
        ("epoch_begin", (0, None)),
        ("epoch_begin", (1, None)),
    ]
    batches = [args for name, args in rec.calls if name == "batch_begin"]
    assert batches[:3] == [
        (0, {"batch": 0, "size": 4, "rank_size": 4}),
        (1, {"batch": 1, "size": 4, "rank_size": 4}),
        (2, {"batch": 2, "size": 2, "rank_size": 2}),
    ]
    assert rec.calls[0] == ("train_begin", (None,))


def test_shuffle_true_is_handed_to_the_callbacks():
    X, y = _data(6)
    rec = _Calls()
    _model().fit(X, y, epochs=1, batch_size=6, shuffle=True, verbose=0, callbacks=[rec])
    assert rec.seen["shuffle"] is True and rec.seen["samples"] == 6


def test_train_alone_defaults_to_silent():
    X, y = _data(8)
    model = _model()
    model.optimizer, model.loss = SGD(lr=0.1), SoftmaxCrossEntropy()
    b = model.backend
    rec = _Calls()
    history = History(history_keys(model.loss, 1, False))
    train(
        model,
        b.asarray(X, dtype="float64"),
        b.asarray(y, dtype="int64"),
        None,
        epochs=1,
        batch_size=4,
        shuffle=False,
        rng=np.random.default_rng(0),
        callbacks=[rec, history],
        history=history,
    )
    assert rec.seen["verbose"] == 0
    assert len(history.history["loss"]) == 1


def test_the_epochs_seconds_are_its_duration():
    X, y = _data(8)
    before = time.perf_counter()
    history = _model().fit(X, y, epochs=2, batch_size=4, verbose=0)
    took = time.perf_counter() - before
    assert all(0.0 <= s <= took for s in history.history["seconds"])


def test_a_single_callback_is_taken_as_a_list_of_one():
    X, y = _data(4)
    rec = _Calls()
    assert check_callbacks(rec) == [rec]
    _model().fit(X, y, epochs=1, batch_size=4, verbose=0, callbacks=rec)
    assert rec.calls[0][0] == "train_begin"


@pytest.mark.parametrize(("verbose", "bar"), [(1, True), (2, False)])
def test_verbose_1_draws_the_bar_and_verbose_2_prints_lines_only(verbose, bar):
    history = History(["loss", "seconds"])
    run = default_callbacks(
        [],
        history,
        verbose=verbose,
        check_every=50,
        checkpoint=None,
        checkpoint_every=1,
        resume=False,
    )
    (progress,) = [cb for cb in run if isinstance(cb, ProgressBar)]
    assert progress.show_bar is bar


# ----------------------------------------------------------------------------- the L2 term
def test_fit_tells_the_l2_term_the_rows_of_each_batch():
    """L2Penalty adds ``alpha * W / rows``: one SGD step over 8 rows with it moves W by
    ``-lr * alpha * W0 / 8`` more than without, and leaves the bias where it was."""
    X, y = _data(8)
    lr, alpha = 0.1, 0.8
    plain, decayed = _model(), _model()
    w0 = plain.get_weights()
    plain.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=SGD(lr=lr), verbose=0)
    opt = SGD(lr=lr, hooks=[L2Penalty(alpha)])
    decayed.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=opt, verbose=0)
    (wp, bp), (wd, bd) = plain.get_weights(), decayed.get_weights()
    np.testing.assert_allclose(wd - wp, -lr * alpha * w0[0] / 8, rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(bd, bp)


# ----------------------------------------------------------------------------- finiteness
def _rebind_bias(model: xpnet.Sequential) -> None:
    """The bias becomes its own array (no longer a view of the flat buffer)."""
    b = model.parameters()[-1]
    b.data = model.backend.asarray(to_numpy(b.data).copy())


def test_an_overflowing_parameter_outside_the_buffer_is_divergence():
    """16 zero rows: W's gradient is 0 (it stays finite), the bias's is ~-2e3, and an SGD step
    of lr=1e38 makes it infinite in float32 after a finite loss. The epoch's check must look
    at every parameter's own array, not the first one only nor the stale buffer."""
    model = xpnet.Sequential([Dense(2, 1)], dtype="float32", seed=0)
    _rebind_bias(model)
    buf = model.parameters()[0].buffer
    assert buf is not None and not buf.holds(model.parameters())
    X, y = np.zeros((16, 2), np.float32), np.full(16, 1e3, np.float32)
    with pytest.raises(DivergenceError, match="at epoch 1, step 1;"):
        model.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(lr=1e38), loss="mse", verbose=0)


def test_finite_parameters_outside_the_buffer_train_on():
    model = xpnet.Sequential([Dense(3, 4), Dense(4, 2)], dtype="float64", seed=0)
    _rebind_bias(model)
    X, y = _data(8)
    history = model.fit(X, y, epochs=2, batch_size=4, optimizer=SGD(lr=0.1), verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_a_model_whose_only_parameter_is_one_array_trains_and_diverges_cleanly():
    X = np.random.default_rng(1).normal(size=(6, 2))
    model = xpnet.Sequential([ScaleLayer(2)], dtype="float64", seed=0)
    history = model.fit(X, 2 * X, epochs=3, batch_size=3, optimizer=SGD(lr=0.1), loss="mse")
    assert history.history["loss"][-1] < history.history["loss"][0]
    before = model.get_weights()[0]
    # A step of lr=1e308 overflows the one parameter: the guard puts the last good copy back.
    with pytest.raises(DivergenceError):
        model.fit(X, 1e3 * X, epochs=1, batch_size=6, optimizer=SGD(lr=1e308), loss="mse")
    np.testing.assert_array_equal(model.get_weights()[0], before)


# ----------------------------------------------------------------------------- the model
class _SeesTargets:
    """Records the dtype of every target batch the loss is given."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[Any] = []

    def forward(self, output, target):
        self.dtypes.append(target.dtype)
        return super().forward(output, target)  # type: ignore[misc]


class _SeenTargets(_SeesTargets, SoftmaxCrossEntropy):
    pass


class _SeenMSE(_SeesTargets, MeanSquaredError):
    pass


def test_targets_reach_the_loss_in_the_dtype_it_asks_for():
    X, labels = _data(6)
    model = xpnet.Sequential([Dense(3, 2)], dtype="float32", seed=0)
    xp = model.backend.xp
    probs = np.eye(2)[labels] * 0.8 + 0.1  # class probabilities (n, 2), float64 on the host
    loss = _SeenTargets()
    model.fit(X, probs, epochs=1, batch_size=6, loss=loss, verbose=0)
    model.fit(X, labels, epochs=1, batch_size=6, loss=loss, verbose=0)
    assert loss.dtypes == [xp.float32, xp.int64]
    mse = _SeenMSE()
    model = xpnet.Sequential([Dense(3, 1)], dtype="float32", seed=0)
    model.fit(X, X[:, 0].astype(np.float64), epochs=1, batch_size=6, loss=mse, verbose=0)
    assert mse.dtypes == [xp.float32]


def test_probability_targets_keep_their_values():
    """(n, classes) targets must not be cast to integer labels on the way to the device."""
    X, labels = _data(6)
    probs = np.eye(2)[labels] * 0.8 + 0.1
    model = xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=0)
    got = model.evaluate(X, probs, loss="softmax_cross_entropy")["loss"]
    z = X @ model.get_weights()[0] + model.get_weights()[1]
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, -(probs * logp).sum(axis=1).mean(), rtol=1e-12)


def test_get_config_names_the_position_of_an_unregistered_layer():
    class Unlisted(Layer):
        kind = "TestUnlisted"

        def forward(self, x, training=False):
            return x

    model = xpnet.Sequential([Dense(2, 2), Unlisted()])
    with pytest.raises(ValueError, match=r"^xpnet: layer 1 \(Unlisted\) is not a registered"):
        model.get_config()


def test_inputs_exactly_at_the_dtypes_largest_value_are_accepted():
    top = float(np.finfo(np.float32).max)
    model = xpnet.Sequential([Dense(2, 2)], dtype="float32", seed=0)
    X = np.array([[top, 0.0], [0.0, -top]])  # float64, but each value fits float32 exactly
    with np.errstate(over="ignore", invalid="ignore"):  # the products overflow: not the point
        assert model.predict_proba(X).shape == (2, 2)
    with pytest.raises(ValueError, match="beyond the largest float32"):
        model.predict_proba(np.array([[np.nextafter(top, np.inf), 0.0]]))


def test_set_weights_casts_to_the_models_dtype():
    """The strict namespace refuses to write float64 (or int) values into a float32 array, so
    set_weights must cast the host arrays to the model's dtype first."""
    pytest.importorskip("array_api_strict")
    model = xpnet.Sequential([Dense(2, 2)], dtype="float32", seed=0, backend="array_api_strict")
    W = np.array([[0.5, -1.0], [2.0, 0.25]])  # float64
    model.set_weights([W, np.array([1, 2], dtype=np.int64)])
    got_W, got_b = model.get_weights()
    assert got_W.dtype == np.float32 and got_b.dtype == np.float32
    np.testing.assert_array_equal(got_W, W)
    np.testing.assert_array_equal(got_b, [1.0, 2.0])


class _RaisingAt(Callback):
    """Raises ``error`` from hook ``where`` and counts the calls of on_train_end."""

    def __init__(self, where: str, error: BaseException) -> None:
        self.where, self.error, self.train_ends = where, error, 0

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.where == "epoch_end":
            raise self.error

    def on_train_end(self, logs: Any = None) -> None:
        self.train_ends += 1
        if self.where == "train_end":
            raise self.error


@pytest.mark.parametrize(
    "error",
    [KeyboardInterrupt(), DivergenceError("diverged in the callback"), RuntimeError("boom")],
    ids=["interrupt", "divergence", "runtime"],
)
def test_what_on_train_end_raises_propagates_after_one_call(error):
    X, y = _data(10)
    cb = _RaisingAt("train_end", error)
    model = _model()
    with pytest.raises(type(error)):
        model.fit(X, y, epochs=2, batch_size=4, verbose=0, callbacks=[cb])
    assert cb.train_ends == 1
    assert not model.history.interrupted


def test_an_interrupt_during_the_epochs_ends_the_fit_with_one_on_train_end():
    X, y = _data(10)
    cb = _RaisingAt("epoch_end", KeyboardInterrupt())
    history = _model().fit(X, y, epochs=3, batch_size=4, verbose=0, callbacks=[cb])
    assert history.interrupted and cb.train_ends == 1
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("error", [DivergenceError("diverged"), RuntimeError("boom")])
def test_an_error_during_the_epochs_propagates(error):
    X, y = _data(10)
    cb = _RaisingAt("epoch_end", error)
    with pytest.raises(type(error)):
        _model().fit(X, y, epochs=3, batch_size=4, verbose=0, callbacks=[cb])
    # A divergence ends the fit as a fit (on_train_end runs); another error does not.
    assert cb.train_ends == (1 if isinstance(error, DivergenceError) else 0)
