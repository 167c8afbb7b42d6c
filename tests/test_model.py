"""The Sequential model on every backend: structure, weights, training, inference, validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpnet
from xpnet import DivergenceError, Sequential
from xpnet.backend import backend_of
from xpnet.layers import Dense, Dropout, ReLU, Softmax, Tanh
from xpnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.metrics import accuracy
from xpnet.optimizers import SGD, Adam
from xpnet.testing import assert_allclose, make_blobs, make_mlp


@pytest.fixture
def data():
    return make_blobs(120, n_features=4, n_classes=3, seed=1)


def small_model(dtype="float64", seed=0, dropout=0.0):
    return make_mlp(sizes=(4, 16, 8, 3), dropout=dropout, dtype=dtype, seed=seed)


def params_of(model):
    return [xpnet.to_numpy(p.data) for p in model.parameters()]


# --------------------------------------------------------------------------- structure
def test_shapes(backend, data):
    X, _ = data
    model = small_model()
    assert model.n_features_in == 4
    assert model.n_outputs == 3
    assert [w.shape for w in model.get_weights()] == [(4, 16), (16,), (16, 8), (8,), (8, 3), (3,)]
    assert [p.name for p in model.parameters()] == ["W", "b"] * 3
    out = model.forward(backend.asarray(X, dtype="float64"))
    assert tuple(out.shape) == (120, 3)
    assert backend_of(out).name == backend.name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_of_parameters_and_outputs(backend, dtype, data):
    model = small_model(dtype=dtype)
    assert all(p.data.dtype == getattr(backend.xp, dtype) for p in model.parameters())
    assert model.predict_proba(data[0]).dtype == np.dtype(dtype)


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype must be one of float32, float64, got 'int32'"):
        Sequential([Dense(2, 2)], dtype="int32")


def test_add_chains_and_checks_its_argument():
    model = Sequential(seed=0)
    assert model.add(Dense(3, 5)).add(ReLU()).add(Dense(5, 2)) is model
    assert [type(layer) for layer in model.layers] == [Dense, ReLU, Dense]
    assert model.n_outputs == 2
    with pytest.raises(TypeError, match="expects a Layer, got str"):
        model.add("relu")


def test_dense_activation_shorthand_equals_a_separate_layer(backend, data):
    X, _ = data
    short = Sequential([Dense(4, 6, activation="relu"), Dense(6, 3)], dtype="float64", seed=2)
    long = Sequential([Dense(4, 6), ReLU(), Dense(6, 3)], dtype="float64", seed=2)
    for a, b in zip(short.get_weights(), long.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # He initialisation either way
    assert_allclose(short.predict_proba(X), long.predict_proba(X), rtol=0, atol=0)


def test_summary(capsys):
    model = Sequential([Dense(4, 8, activation="relu"), Dropout(0.2), Dense(8, 3)], seed=0)
    text = model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    assert lines[0].split() == ["Layer", "Output", "Params"]
    assert "Dense(4, 8, activation='relu')" in text
    assert "Dropout(p=0.2)" in text
    assert "(n, 3)" in text
    assert lines[-1].startswith("Total parameters: 67 ")  # 4*8 + 8 + 8*3 + 3
    assert "float32" in lines[-1]
    # One level of parentheses: "numpy (cpu)", not "numpy (cpu (NumPy))".
    assert lines[-1].endswith("backend: numpy (cpu)")
    assert model.summary(print_fn=None) == text
    assert capsys.readouterr().out == ""


def test_repr():
    model = Sequential([Dense(2, 3), Tanh()], seed=0, backend="numpy")
    assert repr(model) == "Sequential([Dense(2, 3), Tanh()], dtype='float32', backend='numpy')"


# --------------------------------------------------------------------------- weights
def test_get_set_weights_round_trip(backend, data):
    X, y = data
    model = small_model()
    saved = model.get_weights()
    before = model.predict_proba(X)
    model.fit(X, y, epochs=2, batch_size=16, optimizer=Adam(lr=0.05))
    assert not np.allclose(model.predict_proba(X), before)
    model.set_weights(saved)
    for a, b in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(a, b)
    assert_allclose(model.predict_proba(X), before, rtol=0, atol=0)
    # Into a fresh model of the same architecture, seeded differently.
    other = small_model(seed=99)
    other.set_weights(saved)
    assert_allclose(other.predict_proba(X), before, rtol=0, atol=0)


def test_get_weights_returns_host_copies(backend):
    model = small_model()
    weights = model.get_weights()
    assert all(isinstance(w, np.ndarray) for w in weights)
    weights[0][...] = 123.0
    assert not np.any(model.get_weights()[0] == 123.0)


def test_set_weights_accepts_backend_arrays(backend):
    model = small_model()
    new = [backend.asarray(np.full(w.shape, 0.5)) for w in model.get_weights()]
    model.set_weights(new)
    for w in model.get_weights():
        np.testing.assert_array_equal(w, 0.5)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda ws: ws[:-1], "expected 6 arrays"),
        (lambda ws: [*ws, ws[-1]], "expected 6 arrays"),
        (lambda ws: [*ws[:-1], np.zeros(4)], r"array 5 \(b\) must have shape \(3,\)"),
        (lambda ws: [ws[0].T, *ws[1:]], r"array 0 \(W\) must have shape \(4, 16\)"),
        (lambda ws: [*ws[:-1], np.full(3, np.nan)], "finite numbers"),
        (lambda ws: [*ws[:-1], np.array(["a", "b", "c"])], "finite numbers"),
    ],
)
def test_bad_set_weights_leaves_the_weights_unchanged(backend, mutate, match):
    model = small_model()
    before = model.get_weights()
    # Every array but the offending one is different, so a partial write would show.
    candidate = mutate([w + 1.0 for w in before])
    with pytest.raises(ValueError, match=match):
        model.set_weights(candidate)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- fit
def test_fit_history_keys_and_lengths(backend, data):
    X, y = data
    model = small_model(dropout=0.1)
    history = model.fit(X, y, epochs=3, batch_size=32)
    assert list(history.history) == ["loss", "accuracy", "seconds"]
    assert history.epoch == [0, 1, 2]
    assert all(len(v) == 3 for v in history.history.values())
    assert all(isinstance(v, float) for vs in history.history.values() for v in vs)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert not history.interrupted

    history = model.fit(X, y, epochs=2, batch_size=32, validation_data=(X[:30], y[:30]))
    assert list(history.history) == [
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    ]
    assert all(len(v) == 2 for v in history.history.values())
    assert history.to_dict()["epoch"] == [0, 1]


def test_fit_learns_the_blobs(backend, data):
    X, y = data
    model = small_model()
    model.fit(X, y, epochs=15, batch_size=16, optimizer=Adam(lr=0.01))
    assert accuracy(y, model.predict(X)) >= 0.95


def test_fit_regression_with_mse(backend, rng):
    X = rng.standard_normal((100, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    model = Sequential([Dense(3, 1)], dtype="float64", seed=0)
    history = model.fit(X, y, epochs=40, batch_size=10, loss="mse", optimizer=SGD(lr=0.05))
    assert list(history.history) == ["loss", "seconds"]
    assert history.history["loss"][-1] < 1e-6
    W, _b = model.get_weights()
    assert_allclose(W[:, 0], [1.0, -2.0, 0.5], rtol=1e-3, atol=1e-3)
    assert set(model.evaluate(X, y)) == {"loss"}


def test_epochs_zero_changes_nothing(backend, data):
    X, y = data
    model = small_model()
    before = model.get_weights()
    history = model.fit(X, y, epochs=0)
    assert history.epoch == []
    assert all(v == [] for v in history.history.values())
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_seed_makes_training_repeatable(backend, data):
    X, y = data
    runs = []
    for _ in range(2):
        model = small_model(dropout=0.2)
        h = model.fit(X, y, epochs=2, batch_size=16, seed=7)
        runs.append((h.history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_reuses_the_previous_optimizer(data):
    X, y = data
    model = small_model()
    opt = SGD(lr=0.1, momentum=0.9)
    model.fit(X, y, epochs=1, optimizer=opt)
    model.fit(X, y, epochs=1)
    assert model.optimizer is opt


def test_fit_accepts_data_already_on_the_backend(backend, data):
    X, y = data
    a, b = small_model(), small_model()
    ha = a.fit(X, y, epochs=2, batch_size=32, seed=3)
    hb = b.fit(backend.asarray(X, "float64"), backend.asarray(y), epochs=2, batch_size=32, seed=3)
    assert_allclose(hb.history["loss"], ha.history["loss"], rtol=0, atol=0)


def test_integer_valued_float_labels_are_accepted(backend, data):
    # Documented in xpnet.validation.check_y: float labels are fine if they are whole numbers.
    X, y = data
    a, b = small_model(), small_model()
    ha = a.fit(X, y, epochs=2, batch_size=32, seed=0)
    hb = b.fit(X, y.astype(np.float64), epochs=2, batch_size=32, seed=0)
    assert ha.history["loss"] == hb.history["loss"]
    assert a.evaluate(X, y) == b.evaluate(X, y.astype(np.float32))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (lambda y: y + 0.5, "integer class labels, got non-integer values"),
        (lambda y: np.where(y == 0, np.nan, y), "integer class labels"),
        (lambda y: y + 1, r"labels must lie in \[0, 3\).*from 1 to 3"),
        (lambda y: y - 1, r"labels must lie in \[0, 3\)"),
        (lambda y: y.astype(str), "integer class labels, got dtype"),
        (lambda y: y[:-1], "X has 120 samples but y has 119"),
    ],
)
def test_bad_labels_are_rejected(data, labels, match):
    X, y = data
    model = small_model()
    with pytest.raises(ValueError, match=match):
        model.fit(X, labels(y), epochs=1)


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (lambda X: X[:, :3], "X has 3 features but the model's first layer expects 4"),
        (lambda X: X[0], r"must be 2-D.*reshape a single sample"),
        (lambda X: np.where(X > 2, np.inf, X), "NaN or infinite"),
        (lambda X: X[:0], "zero samples"),
        (lambda X: X.astype(str), "must hold numbers"),
    ],
)
def test_bad_features_are_rejected(data, features, match):
    X, y = data
    model = small_model()
    with pytest.raises(ValueError, match=match):
        model.fit(features(X), y[: len(features(X))] if features(X).ndim == 2 else y, epochs=1)
    with pytest.raises(ValueError, match=match):
        model.predict(features(X))


@pytest.mark.parametrize(
    "kwargs", [{"epochs": -1}, {"batch_size": 0}, {"epochs": 1.5}, {"check_every": 0}]
)
def test_bad_fit_arguments(data, kwargs):
    X, y = data
    with pytest.raises(ValueError, match="must be an integer"):
        small_model().fit(X, y, **kwargs)


def test_fit_accepts_lists():
    model = Sequential([Dense(2, 2)], seed=0)
    history = model.fit([[0.0, 1.0], [1.0, 0.0]], [1, 0], epochs=1)
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize(("lr", "check_every"), [(1e30, 1), (1e38, 1), (1e38, 50)])
def test_divergence_is_reported_and_weights_stay_finite(backend, data, lr, check_every):
    X, y = data
    model = small_model(dtype="float32")
    with warnings.catch_warnings():
        # DivergenceError is the report; no overflow warnings on the way to it.
        warnings.simplefilter("error")
        with pytest.raises(DivergenceError, match="smaller learning rate") as info:
            model.fit(
                X * 100, y, epochs=5, batch_size=8, optimizer=SGD(lr=lr), check_every=check_every
            )
    assert isinstance(info.value, FloatingPointError)
    assert f"lr={lr:g}" in str(info.value)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    # The weights kept are ones whose loss was seen finite, so they still predict.
    assert np.all(np.isfinite(model.predict_proba(X)))


def test_explicit_loop_equals_one_fit_step(backend, data):
    """The README's hand-written loop is exactly one fit step on the whole data set."""
    X, y = data
    by_fit = small_model(dropout=0.25)
    by_hand = small_model(dropout=0.25)

    history = by_fit.fit(X, y, epochs=1, batch_size=len(X), shuffle=False, optimizer=Adam(lr=0.01))

    xb = backend.asarray(X, dtype="float64")
    yb = backend.asarray(y)
    # fit starts each epoch by drawing one seed per stochastic layer from its generator
    # (after the shuffle, which shuffle=False skips) and keys each layer before a forward.
    by_hand.parameters()  # the weights are drawn first, as in fit
    dropout = [layer for layer in by_hand.layers if layer.stochastic]
    seeds = by_hand._rng.integers(0, 2**63 - 1, size=len(dropout))
    for layer, seed in zip(dropout, seeds, strict=True):
        layer.set_random_key(int(seed), 0, row_offset=0)
    logits = by_hand.forward(xb, training=True)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, yb)
    by_hand.backward(loss.backward())
    Adam(lr=0.01).step(by_hand.parameters())

    assert history.history["loss"][0] == pytest.approx(float(xpnet.to_numpy(value)), rel=1e-12)
    for a, b in zip(params_of(by_fit), params_of(by_hand), strict=True):
        assert_allclose(a, b, rtol=0, atol=0)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(params_of(by_fit), small_model().get_weights(), strict=True)
    ]
    assert all(moved)


# --------------------------------------------------------------------------- inference
def test_evaluate(backend, data):
    X, y = data
    model = small_model()
    model.fit(X, y, epochs=2, batch_size=16)
    scores = model.evaluate(X, y)
    assert set(scores) == {"loss", "accuracy"}
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["accuracy"] == pytest.approx(accuracy(y, model.predict(X)))
    loss = SoftmaxCrossEntropy().forward(
        model.forward(backend.asarray(X, "float64")), backend.asarray(y)
    )
    assert scores["loss"] == pytest.approx(float(xpnet.to_numpy(loss)), rel=1e-12)
    # Batching does not change the result.
    small = model.evaluate(X, y, batch_size=7)
    assert small["accuracy"] == scores["accuracy"]
    assert small["loss"] == pytest.approx(scores["loss"], rel=1e-12)
    mse = model.evaluate(X, np.eye(3)[y], loss=MeanSquaredError())
    assert set(mse) == {"loss"}


def test_predict_and_predict_proba(backend, data):
    X, _ = data
    model = small_model()
    proba = model.predict_proba(X)
    labels = model.predict(X)
    assert isinstance(proba, np.ndarray)
    assert isinstance(labels, np.ndarray)
    assert proba.shape == (120, 3)
    assert labels.shape == (120,)
    assert labels.dtype == np.int64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    assert_allclose(model.predict_proba(X, batch_size=7), proba)
    np.testing.assert_array_equal(model.predict(X, batch_size=7), labels)


def test_predict_proba_does_not_apply_softmax_twice(backend, data):
    X, _ = data
    model = Sequential(
        [Dense(4, 5, activation="tanh"), Dense(5, 3), Softmax()], dtype="float64", seed=0
    )
    out = xpnet.to_numpy(model.forward(backend.asarray(X, "float64")))
    assert_allclose(model.predict_proba(X), out)


def test_to_moves_the_model_between_backends(data):
    X, y = data
    model = small_model(seed=5)
    model.fit(X, y, epochs=1, batch_size=16, optimizer=Adam(lr=0.01))
    proba = model.predict_proba(X)
    assert model.to("array_api_strict") is model
    assert model.backend.name == "array_api_strict"
    assert model.optimizer is None  # its state lived on the old backend
    assert all(backend_of(p.data).name == "array_api_strict" for p in model.parameters())
    assert_allclose(model.predict_proba(X), proba, rtol=0, atol=0)
    model.fit(X, y, epochs=1, batch_size=16)  # trains on the new backend
    model.to("numpy")
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())
    assert model.predict_proba(X).shape == (120, 3)
