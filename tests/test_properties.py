"""Property-based tests over random architectures, batch sizes and dtypes (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet
from xpnet.backend import to_numpy
from xpnet.layers import ACTIVATIONS, Dense, Dropout
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.testing import check_gradient

# The backend fixture is set once per test and is not changed by the examples.
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
HIDDEN_ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "leaky_relu"]


@st.composite
def architectures(draw, dropout: bool = True):
    """(n_features, n_outputs, layers): 1-3 hidden layers of width 1-16, each with an
    activation given either as Dense's argument or as a separate layer, some with dropout."""
    n_in = draw(st.integers(1, 8))
    n_out = draw(st.integers(2, 5))
    layers = []
    width = n_in
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 16))
        act = draw(st.sampled_from(HIDDEN_ACTIVATIONS))
        if act is not None and draw(st.booleans()):
            layers += [Dense(width, out), ACTIVATIONS[act]()]
        else:
            layers.append(Dense(width, out, activation=act))
        if dropout and draw(st.booleans()):
            layers.append(Dropout(draw(st.sampled_from([0.1, 0.5]))))
        width = out
    layers.append(Dense(width, n_out))
    return n_in, n_out, layers


def make(arch, dtype: str, seed: int = 0) -> xpnet.Sequential:
    return xpnet.Sequential(arch[2], dtype=dtype, seed=seed)


@SETTINGS
@given(
    arch=architectures(),
    n=st.integers(1, 40),
    batch_size=st.integers(1, 50),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_outputs_have_the_right_shape_and_are_finite(backend, arch, n, batch_size, dtype):
    n_in, n_out, _ = arch
    model = make(arch, dtype)
    X = np.random.default_rng(n).normal(size=(n, n_in)) * 3
    proba = model.predict_proba(X, batch_size=batch_size)
    assert proba.shape == (n, n_out)
    assert np.isfinite(proba).all()
    assert proba.dtype == np.dtype(dtype)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5 if dtype == "float32" else 1e-12)
    labels = model.predict(X, batch_size=batch_size)
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert ((labels >= 0) & (labels < n_out)).all()
    # Batching is only a way of slicing: one big batch gives the same numbers.
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(model.predict_proba(X, batch_size=n), proba, rtol=rtol, atol=1e-7)
    # Inference ignores dropout, so a forward pass is deterministic.
    assert np.array_equal(model.predict_proba(X, batch_size=batch_size), proba)


@SETTINGS
@given(arch=architectures(dropout=False), n=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_gradients_match_central_differences(backend, arch, n, seed):
    """float64 back-propagation against directional finite differences of the loss, over the
    first layer's weights and the last layer's bias together."""
    n_in, n_out, _ = arch
    model = make(arch, "float64", seed=seed)
    rng = np.random.default_rng(seed)
    X = backend.asarray(rng.normal(size=(n, n_in)), dtype="float64")
    y = backend.asarray(rng.integers(0, n_out, n), dtype="int64")
    loss = SoftmaxCrossEntropy()
    params = model.parameters()
    first_W, last_b = params[0], params[-1]

    def f(W, b):
        saved = (first_W.data, last_b.data)
        first_W.data, last_b.data = W, b
        try:
            return loss.forward(model.forward(X, training=True), y)
        finally:
            first_W.data, last_b.data = saved

    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    check_gradient(
        f,
        [first_W.data, last_b.data],
        [first_W.grad, last_b.grad],
        eps=1e-6,
        rtol=1e-5,
        atol=1e-8,
        directions=2,
        seed=seed,
    )


@SETTINGS
@given(
    arch=architectures(),
    n=st.integers(1, 30),
    batch_size=st.integers(1, 40),
    epochs=st.integers(1, 2),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_training_keeps_shapes_dtypes_and_finiteness(backend, arch, n, batch_size, epochs, dtype):
    n_in, n_out, _ = arch
    model = make(arch, dtype)
    shapes = [w.shape for w in model.get_weights()]
    rng = np.random.default_rng(n)
    X, y = rng.normal(size=(n, n_in)), rng.integers(0, n_out, n)
    history = model.fit(X, y, epochs=epochs, batch_size=batch_size)
    assert history.epoch == list(range(epochs))
    assert all(np.isfinite(v) for v in history.history["loss"])
    assert all(0.0 <= a <= 1.0 for a in history.history["accuracy"])
    weights = model.get_weights()
    assert [w.shape for w in weights] == shapes
    assert all(w.dtype == np.dtype(dtype) and np.isfinite(w).all() for w in weights)
    assert all(to_numpy(p.data).dtype == np.dtype(dtype) for p in model.parameters())


@settings(max_examples=25, deadline=None)
@given(
    arch=architectures(),
    dtype=st.sampled_from(["float32", "float64"]),
    fmt=st.sampled_from(["safetensors", "npz"]),
)
def test_save_load_round_trip_is_exact(arch, dtype, fmt):
    model = make(arch, dtype, seed=3)
    X = np.random.default_rng(0).normal(size=(5, arch[0]))
    with tempfile.TemporaryDirectory() as d:
        model.save(Path(d) / "m", format=fmt)
        loaded = xpnet.load_model(Path(d) / "m")
    assert repr(loaded) == repr(model)
    assert all(
        a.tobytes() == b.tobytes()
        for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True)
    )
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


@settings(max_examples=30, deadline=None)
@given(
    n_out=st.integers(2, 6),
    labels=st.lists(st.integers(-3, 9), min_size=1, max_size=20),
)
def test_labels_outside_the_classes_are_always_refused(n_out, labels):
    model = xpnet.Sequential([Dense(2, n_out)], seed=0)
    y = np.array(labels)
    X = np.zeros((len(y), 2))
    if ((y >= 0) & (y < n_out)).all():
        assert set(model.evaluate(X, y)) == {"loss", "accuracy"}
    else:
        with pytest.raises(ValueError, match=rf"labels must lie in \[0, {n_out}\)"):
            model.evaluate(X, y)
