"""Bad input is refused up front with a message saying what was expected and what was given;
divergence is never silent."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.layers import Dense, Dropout, LeakyReLU, ReLU
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp


def make_model() -> xpnet.Sequential:
    return xpnet.Sequential([Dense(4, 8), ReLU(), Dropout(0.2), Dense(8, 3)], seed=0)


def good_data(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def with_nan(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[3, 1] = np.nan
    return X


def with_inf(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[0, 0] = -np.inf
    return X


X0, Y0 = good_data()

# (X, y, message): each bad (X, y) pair is refused by fit and evaluate.
BAD_DATA = {
    "X 1-D": (X0[:, 0], Y0, r"X must be 2-D \(n_samples, n_features\), got shape \(12,\)"),
    "X 3-D": (X0.reshape(12, 2, 2), Y0, r"must be 2-D .* got shape \(12, 2, 2\)"),
    "X 0-D": (np.float64(1.0), Y0, r"must be 2-D .* got shape \(\)"),
    "feature count": (X0[:, :3], Y0, "X has 3 features but the model's first layer expects 4"),
    "length mismatch": (X0, Y0[:-1], "X has 12 samples but y has 11"),
    "NaN in X": (with_nan(X0), Y0, "X contains 1 NaN or infinite values"),
    "inf in X": (with_inf(X0), Y0, "X contains 1 NaN or infinite values"),
    "label too large": (X0, np.where(Y0 == 0, 3, Y0), r"labels must lie in \[0, 3\).* to 3"),
    "negative label": (X0, np.where(Y0 == 0, -1, Y0), r"labels must lie in \[0, 3\).*from -1"),
    "non-integer labels": (X0, Y0 + 0.5, "integer class labels, got non-integer values"),
    "NaN labels": (X0, np.full(12, np.nan), "integer class labels"),
    "string labels": (X0, Y0.astype(str), "integer class labels, got dtype <U"),
    "zero samples": (X0[:0], Y0[:0], "X has zero samples"),
    "string X": (X0.astype(str), Y0, "X must hold numbers .* got dtype <U"),
    "object X": (X0.astype(object), Y0, "X must hold numbers .* got dtype object"),
    "complex X": (X0.astype(complex), Y0, "X must hold numbers .* got dtype complex128"),
    "ragged X": ([[1.0, 2.0, 3.0, 4.0], [1.0]], [0, 1], "X is not a rectangular array"),
    "X not an array": (None, Y0, "X must be an array, got NoneType"),
    "y not an array": (X0, None, "y must be an array, got NoneType"),
    "y 3-D": (X0, np.zeros((12, 3, 1)), r"y must be 1-D .* or 2-D .* got shape \(12, 3, 1\)"),
    "y wrong width": (X0, np.zeros((12, 2)), r"class probabilities \(n_samples, 3\)"),
}


@pytest.mark.parametrize("X, y, message", list(BAD_DATA.values()), ids=list(BAD_DATA))
def test_fit_refuses_bad_data_and_changes_nothing(X, y, message):
    model = make_model()
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, y, epochs=1)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize("X, y, message", list(BAD_DATA.values()), ids=list(BAD_DATA))
def test_evaluate_refuses_bad_data(X, y, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_model().evaluate(X, y)


@pytest.mark.parametrize("X, y, message", list(BAD_DATA.values()), ids=list(BAD_DATA))
def test_validation_data_is_checked_too(X, y, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_model().fit(X0, Y0, epochs=1, validation_data=(X, y))


@pytest.mark.parametrize(
    "X, message",
    [BAD_DATA[k][0::2] for k in BAD_DATA if k.endswith("X") or k.startswith("X ")]
    + [BAD_DATA["feature count"][0::2], BAD_DATA["zero samples"][0::2]],
)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_refuses_bad_X(method, X, message):
    with pytest.raises((ValueError, TypeError), match=message):
        getattr(make_model(), method)(X)


def test_device_arrays_are_checked_too():
    """Arrays already on a backend (here array_api_strict) get the same checks."""
    strict = pytest.importorskip("array_api_strict")
    with xpnet.use_backend("array_api_strict") as b:
        model = make_model()
        Xd, yd = b.asarray(X0), b.asarray(Y0)
        bad_X = b.asarray(with_nan(X0))
        with pytest.raises(ValueError, match="X contains NaN or infinite values"):
            model.fit(bad_X, yd)
        with pytest.raises(ValueError, match="X contains NaN or infinite values"):
            model.predict(bad_X)
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*to 5"):
            model.fit(Xd, b.asarray(np.where(Y0 == 0, 5, Y0)))
        with pytest.raises(ValueError, match="integer class labels, got dtype"):
            model.evaluate(Xd, strict.astype(yd, strict.float64))
        with pytest.raises(ValueError, match="X has 12 samples but y has 11"):
            model.fit(Xd, yd[:11])
        assert model.fit(Xd, yd, epochs=1).epoch == [0]  # and good device data trains


def test_regression_targets_are_checked():
    model = xpnet.Sequential([Dense(4, 2)], seed=0)
    y = np.zeros((12, 2))
    y[2, 1] = np.inf
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        model.fit(X0, y, loss="mse")
    with pytest.raises(ValueError, match="y must be numeric, got dtype <U"):
        model.fit(X0, np.zeros((12, 2)).astype(str), loss="mse")


# ----------------------------------------------------------------------------- fit arguments
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": -5}, "batch_size must be an integer >= 1, got -5"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
        ({"batch_size": True}, "batch_size must be an integer >= 1, got True"),
        ({"batch_size": "32"}, "batch_size must be an integer >= 1, got '32'"),
        ({"epochs": -1}, "epochs must be an integer >= 0, got -1"),
        ({"epochs": 1.0}, "epochs must be an integer >= 0, got 1.0"),
        ({"check_every": 0}, "check_every must be an integer >= 1"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1"),
        ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; valid optimizers are: sgd"),
        ({"optimizer": 3}, "unknown optimizer 3"),
        ({"loss": "hinge"}, "unknown loss 'hinge'; valid losses are: "),
        ({"validation_data": X0}, "validation_data must be a pair .* got ndarray"),
        ({"validation_data": (X0, Y0, Y0)}, "must be a pair .* got tuple of length 3"),
        ({"resume": True}, "resume=True needs checkpoint=DIR"),
    ],
)
def test_fit_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_model().fit(X0, Y0, **kwargs)


@pytest.mark.parametrize("method", ["evaluate", "predict", "predict_proba"])
def test_inference_refuses_bad_batch_size(method):
    args = (X0, Y0) if method == "evaluate" else (X0,)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        getattr(make_model(), method)(*args, batch_size=0)


def test_zero_epochs_is_allowed():
    history = make_model().fit(X0, Y0, epochs=0)
    assert history.epoch == []


# ----------------------------------------------------------------------------- constructors
OPTIMIZERS = [SGD, Adam, AdamW, RMSProp]


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf")])
def test_optimizers_refuse_non_positive_learning_rates(cls, lr):
    with pytest.raises(ValueError, match=f"{cls.__name__} lr must be a positive finite number"):
        cls(lr=lr)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizers_refuse_non_numeric_learning_rates(cls):
    message = f"{cls.__name__} lr must be a positive finite number, got '0.1'"
    with pytest.raises(ValueError, match=message):
        cls(lr="0.1")
    with pytest.raises(ValueError, match="lr must be a positive finite number, got True"):
        cls(lr=True)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SGD(momentum=1.0), r"SGD momentum must be a number in \[0, 1\), got 1.0"),
        (lambda: SGD(momentum=-0.1), r"SGD momentum must be a number in \[0, 1\)"),
        (lambda: SGD(nesterov=True), "nesterov=True needs momentum > 0"),
        (lambda: SGD(weight_decay=-1), "SGD weight_decay must be a finite number >= 0, got -1"),
        (lambda: Adam(betas=(0.9,)), "Adam betas must be a pair of numbers"),
        (lambda: Adam(betas=(0.9, 1.0)), r"Adam betas\[1\] must be a number in \[0, 1\)"),
        (lambda: Adam(eps=0), "Adam eps must be a positive finite number"),
        (lambda: AdamW(weight_decay=float("nan")), "AdamW weight_decay must be .*, got nan"),
        (lambda: RMSProp(alpha=1.5), r"RMSProp alpha must be a number in \[0, 1\)"),
    ],
)
def test_optimizers_refuse_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 3), "Dense in_features must be a positive integer, got 0"),
        ((3, -1), "Dense out_features must be a positive integer, got -1"),
        ((2.5, 3), "Dense in_features must be a positive integer, got 2.5"),
        ((True, 3), "Dense in_features must be a positive integer, got True"),
        (("3", 3), "Dense in_features must be a positive integer, got '3'"),
        ((None, 3), "Dense in_features must be a positive integer, got None"),
    ],
)
def test_dense_refuses_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        Dense(*args)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), "0.5", None, True])
def test_dropout_refuses_p_outside_unit_interval(p):
    with pytest.raises(ValueError, match=r"Dropout p must be a number in \[0, 1\), got"):
        Dropout(p)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, float("nan")])
def test_leaky_relu_refuses_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"LeakyReLU alpha must be .*\[0, 1\)"):
        LeakyReLU(alpha)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Dense(3, 3, activation="swish"), "unknown activation 'swish'; valid activations"),
        (lambda: Dense(3, 3, activation=7), "activation must be a name"),
        (lambda: Dense(3, 3, init="orthogonal"), "unknown initializer 'orthogonal'"),
        (lambda: xpnet.set_backend("tpu"), "unknown backend 'tpu'; valid backends are: numpy"),
        (lambda: xpnet.Sequential(backend="jax"), "unknown backend 'jax'"),
        (lambda: xpnet.Sequential(dtype="float16"), "dtype must be one of float32, float64"),
        (lambda: xpnet.Sequential([Dense(4, 8), Dense(5, 3)]), "expects 5 inputs .* output 8"),
        (lambda: xpnet.layers.layer_from_config("Conv", {}), "unknown layer type 'Conv'"),
    ],
)
def test_unknown_names_and_bad_structure(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_add_refuses_a_non_layer():
    with pytest.raises(TypeError, match=r"Sequential\.add expects a Layer, got str"):
        xpnet.Sequential().add("relu")


def test_dense_forward_refuses_the_wrong_width():
    model = make_model()
    with pytest.raises(ValueError, match=r"expected input of shape \(n, 4\), got \(2, 5\)"):
        model.forward(np.zeros((2, 5), dtype=np.float32))


# ----------------------------------------------------------------------------- divergence
def _diverging_run(check_every: int):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)) * 100
    y = rng.integers(0, 3, 64)
    model = xpnet.Sequential([Dense(4, 16), ReLU(), Dense(16, 3)], seed=0)
    with pytest.raises(xpnet.DivergenceError) as info:
        model.fit(X, y, epochs=5, batch_size=8, optimizer=SGD(lr=1e3), check_every=check_every)
    return model, info.value


@pytest.mark.parametrize("check_every", [1, 3, 50])
def test_divergence_names_epoch_and_step_and_keeps_finite_weights(check_every):
    model, error = _diverging_run(check_every)
    message = str(error)
    assert "NaN or infinite at epoch 1, step" in message
    assert "try a smaller learning rate (lr=1000)" in message
    assert isinstance(error, FloatingPointError)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    step = int(message.split("step ")[1].split(";")[0])
    if check_every < 8:  # 8 steps per epoch: caught at a check inside the epoch
        assert step % check_every == 0
    else:  # caught by the end-of-epoch check
        assert step == 8


def test_divergence_is_found_at_the_exact_step_with_check_every_1():
    """A loss that turns infinite at step 6 of epoch 2 is reported there, not later."""

    class InfAt(SoftmaxCrossEntropy):
        calls = 0

        def forward(self, output, target):
            self.calls += 1
            value = super().forward(output, target)
            return value * np.inf if self.calls == 6 + 6 else value  # 6 steps per epoch

    model = xpnet.Sequential([Dense(4, 3)], seed=0)
    with pytest.raises(xpnet.DivergenceError, match="epoch 2, step 6;"):
        model.fit(X0, Y0, epochs=3, batch_size=2, loss=InfAt(), check_every=1)


def test_float64_values_beyond_float32_are_refused_for_a_float32_model() -> None:
    model = xpnet.Sequential([Dense(2, 2)], seed=0, dtype="float32")
    X = np.array([[1e39, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"beyond the largest float32"):
        model.fit(X, np.array([0, 1]), epochs=1)
    with pytest.raises(ValueError, match=r"beyond the largest float32"):
        model.predict(X)
    # The same values are fine for a float64 model.
    wide = xpnet.Sequential([Dense(2, 2)], seed=0, dtype="float64")
    assert wide.predict(X).shape == (2,)
