"""Tests aimed at faults the rest of the suite once missed (issue 17), each checked by value.

Every test here was confirmed to fail with its fault planted by hand. They use the public API
only, so that they keep working however the training loop, the kernels and the estimators are
arranged inside. Layers are square and batches as tall as the layers are wide, so that a
transposed product or a sum over the wrong axis gives a wrong *value*, never a shape error.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import DivergenceError, Sequential
from xpnet.io.reader import STATE_FILES, find_state
from xpnet.layers import Dense, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from xpnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp
from xpnet.parameter import Parameter
from xpnet.schedules import LRSchedule, StepDecay

WIDTH = 4  # every Dense is WIDTH x WIDTH and every batch has WIDTH rows


# --------------------------------------------------------------------------- gradients
def _square_model(kind: str) -> Sequential:
    """Three square Dense layers with the activation ``kind`` between them."""
    if kind == "fused":  # activations inside Dense: the fused bias+activation kernels
        layers = [
            Dense(WIDTH, WIDTH, activation="tanh"),
            Dense(WIDTH, WIDTH, activation="sigmoid"),
            Dense(WIDTH, WIDTH, activation="leaky_relu"),
            Dense(WIDTH, WIDTH),
        ]
    else:
        layers = [
            Dense(WIDTH, WIDTH),
            Tanh(),
            Dense(WIDTH, WIDTH),
            {"relu": ReLU, "leaky": LeakyReLU, "sigmoid": Sigmoid, "softmax": Softmax}[kind](),
            Dense(WIDTH, WIDTH),
        ]
    return Sequential(layers, dtype="float64", seed=3)


def _randomize_biases(model: Sequential, rng: np.random.Generator) -> None:
    # Zero biases (the initial ones) would hide a bias gradient that is added in the wrong place.
    weights = model.get_weights()
    model.set_weights([w if w.ndim == 2 else rng.normal(0.0, 0.5, w.shape) for w in weights])


def _loss_value(model: Sequential, loss, X, y) -> float:
    return float(loss.forward(model.forward(X), y))


@pytest.mark.parametrize("kind", ["relu", "leaky", "sigmoid", "softmax", "fused"])
@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_backward_input_and_parameter_gradients_match_finite_differences(
    backend, xp, kind, loss_name
):
    rng = np.random.default_rng(7)
    model = _square_model(kind)
    _randomize_biases(model, rng)
    X_host = rng.normal(size=(WIDTH, WIDTH))
    # Keep pre-activations away from ReLU's kink so that central differences are exact enough.
    X = backend.asarray(X_host, dtype="float64")
    if loss_name == "mse":
        loss = MeanSquaredError()
        y = backend.asarray(rng.normal(size=(WIDTH, WIDTH)), dtype="float64")
    else:
        loss = SoftmaxCrossEntropy()
        y = backend.asarray(np.array([0, 3, 1, 2]), dtype="int64")

    loss.forward(model.forward(X, training=True), y)
    dX = model.backward(loss.backward(), input_grad=True)
    assert dX is not None, "backward(input_grad=True) must return d(loss)/d(input)"
    dX = xpnet.to_numpy(dX)
    grads = [xpnet.to_numpy(p.grad).copy() for p in model.parameters()]

    h = 1e-6
    expected = np.zeros_like(X_host)
    for idx in np.ndindex(X_host.shape):
        plus, minus = X_host.copy(), X_host.copy()
        plus[idx] += h
        minus[idx] -= h
        up = _loss_value(model, loss, backend.asarray(plus, dtype="float64"), y)
        down = _loss_value(model, loss, backend.asarray(minus, dtype="float64"), y)
        expected[idx] = (up - down) / (2 * h)
    np.testing.assert_allclose(dX, expected, rtol=1e-5, atol=1e-8)

    weights = model.get_weights()
    for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
        fd = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            for sign in (1, -1):
                shifted = [v.copy() for v in weights]
                shifted[i][idx] += sign * h
                model.set_weights(shifted)
                fd[idx] += sign * _loss_value(model, loss, X, y) / (2 * h)
        model.set_weights(weights)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8, err_msg=f"parameter {i}")


def test_backward_without_input_grad_returns_none(backend):
    model = _square_model("relu")
    X = backend.asarray(np.eye(WIDTH), dtype="float64")
    out = model.forward(X, training=True)
    assert model.backward(out) is None


# --------------------------------------------------------------------------- optimizers
class _Halving(LRSchedule):
    """lr * 0.5**step: a different rate on every update."""

    def factor(self, step: int) -> float:
        return 0.5**step

    def __repr__(self) -> str:
        return "_Halving()"


def _reference(name: str, hp: dict, w0: np.ndarray, grads: list[np.ndarray], lrs: list[float]):
    """The PyTorch formulations in float64, written independently of xpnet's code."""
    w = w0.astype(np.float64).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        if name == "rmsprop":
            v = hp["alpha"] * v + (1 - hp["alpha"]) * g * g
            w = w - lr * g / (np.sqrt(v) + hp["eps"])
            continue
        b1, b2 = hp["betas"]
        if name == "adamw":
            w = w * (1 - lr * hp["weight_decay"])
        elif hp["weight_decay"]:
            g = g + hp["weight_decay"] * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + hp["eps"])
    return w


_OPTIMIZERS = {
    "adam": (Adam, {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}),
    "adam_l2": (Adam, {"betas": (0.8, 0.99), "eps": 1e-8, "weight_decay": 0.3}),
    "adamw": (AdamW, {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.5}),
    "rmsprop": (RMSProp, {"alpha": 0.9, "eps": 1e-8}),
}


@pytest.mark.parametrize("how", ["schedule", "assigned", "step_decay"])
@pytest.mark.parametrize("layout", ["flat", "per_parameter"])
@pytest.mark.parametrize("opt_name", sorted(_OPTIMIZERS))
def test_optimizer_steps_with_the_current_lr(backend, opt_name, layout, how):
    cls, hp = _OPTIMIZERS[opt_name]
    reference_name = "adam" if opt_name == "adam_l2" else opt_name
    base_lr = 0.2
    steps = 4
    if how == "schedule":
        opt = cls(lr=base_lr, schedule=_Halving(), **hp)
        lrs = [base_lr * 0.5**t for t in range(steps)]
    elif how == "step_decay":
        opt = cls(lr=base_lr, schedule=StepDecay(2, factor=0.01), **hp)
        lrs = [base_lr if t < 2 else base_lr * 0.01 for t in range(steps)]
    else:  # no schedule: the caller sets opt.lr before each step
        opt = cls(lr=base_lr, **hp)
        lrs = [base_lr * 3.0**-t for t in range(steps)]

    rng = np.random.default_rng(11)
    w_host = [rng.normal(size=(WIDTH, WIDTH)), rng.normal(size=(WIDTH,))]
    grads = [[rng.normal(size=w.shape) for w in w_host] for _ in range(steps)]
    if layout == "flat":  # a model's parameters: views into one ParameterBuffer
        model = Sequential([Dense(WIDTH, WIDTH)], dtype="float64", seed=0)
        model.set_weights(w_host)
        params = model.parameters()
    else:
        params = [
            Parameter(backend.asarray(w.copy(), dtype="float64"), n)
            for w, n in zip(w_host, "Wb", strict=True)
        ]
    for t in range(steps):
        for p, g in zip(params, grads[t], strict=True):
            if layout == "flat":
                p.grad[...] = backend.asarray(g, dtype="float64")  # keep the buffer's views
            else:
                p.grad = backend.asarray(g, dtype="float64")
        if how == "assigned":
            opt.lr = lrs[t]
        opt.step(params)
        assert opt.lr == pytest.approx(lrs[t])
    for i, p in enumerate(params):
        expected = _reference(reference_name, hp, w_host[i], [g[i] for g in grads], lrs)
        np.testing.assert_allclose(xpnet.to_numpy(p.data), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt_name", sorted(_OPTIMIZERS))
def test_first_step_moves_in_proportion_to_lr(opt_name):
    """With the same gradient, a step at a rate set to lr/10 moves the weights 1/10 as far."""
    cls, hp = _OPTIMIZERS[opt_name]
    hp = {**hp, "weight_decay": 0.0} if "weight_decay" in hp else hp
    rng = np.random.default_rng(5)
    w0, g = rng.normal(size=(WIDTH, WIDTH)), rng.normal(size=(WIDTH, WIDTH))
    moves = []
    for lr in (1e-2, 1e-3):
        opt = cls(lr=1e-2, **hp)
        opt.lr = lr  # as a hand-written schedule would
        p = Parameter(np.array(w0), "W")
        p.grad = np.array(g)
        opt.step([p])
        moves.append(p.data - w0)
    np.testing.assert_allclose(moves[1], moves[0] / 10, rtol=1e-9)
    assert np.all(moves[0] != 0)


# --------------------------------------------------------------------------- sklearn's alpha
@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_sklearn_alpha_never_touches_the_biases(estimator, solver):
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    from xpnet.sklearn import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(2)
    X = rng.normal(size=(24, WIDTH))
    if estimator == "classifier":
        y = np.arange(24) % 3
        make = MLPClassifier
    else:
        y = X @ rng.normal(size=WIDTH)
        make = MLPRegressor
    fitted = []
    for alpha in (0.0, 5.0):
        est = make(
            hidden_layer_sizes=(WIDTH,),
            solver=solver,
            learning_rate_init=0.05,
            batch_size=24,  # one batch: partial_fit below is exactly one step
            max_iter=3,
            alpha=0.0,
            random_state=0,
            dtype="float64",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)  # the same start for both, with biases trained away from zero
        assert all(np.all(b != 0) for b in est.intercepts_)
        before = [b.copy() for b in est.intercepts_]
        est.set_params(alpha=alpha)
        est.partial_fit(X, y)
        fitted.append((before, est))
    (b0, plain), (b1, penalised) = fitted
    for a, b in zip(b0, b1, strict=True):
        np.testing.assert_array_equal(a, b)
    # The penalty acts on the weights...
    assert any(
        not np.allclose(w0, w1) for w0, w1 in zip(plain.coefs_, penalised.coefs_, strict=True)
    )
    # ...and the biases move exactly as without it.
    for i0, i1 in zip(plain.intercepts_, penalised.intercepts_, strict=True):
        np.testing.assert_array_equal(i0, i1)
    for i0, before in zip(plain.intercepts_, b0, strict=True):
        assert not np.array_equal(i0, before)


# --------------------------------------------------------------------------- divergence
def test_divergence_on_the_epochs_last_update_is_caught_from_the_weights(backend):
    """16 rows, one batch, a huge rate: the loss seen is finite but the update overflows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, WIDTH)).astype(np.float32) * 10
    y = np.arange(16) % WIDTH
    model = Sequential([Dense(WIDTH, WIDTH), ReLU(), Dense(WIDTH, WIDTH)], seed=1)
    before = model.get_weights()
    assert np.isfinite(model.evaluate(X, y)["loss"])
    with pytest.raises(DivergenceError):
        model.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(lr=1e38), shuffle=False)
    after = model.get_weights()
    for w0, w1 in zip(before, after, strict=True):
        assert np.all(np.isfinite(w1))
        np.testing.assert_array_equal(w0, w1)  # the last weights checked finite: the start


def test_the_same_update_without_the_overflow_trains(backend):
    """The control for the test above: at a sane rate the same fit raises nothing."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, WIDTH)).astype(np.float32) * 10
    y = np.arange(16) % WIDTH
    model = Sequential([Dense(WIDTH, WIDTH), ReLU(), Dense(WIDTH, WIDTH)], seed=1)
    before = model.get_weights()
    history = model.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(lr=1e-3), shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("newer", ["npz", "safetensors"])
def test_find_state_picks_the_newer_of_two_state_files(tmp_path, newer):
    older = "safetensors" if newer == "npz" else "npz"
    (tmp_path / STATE_FILES[older]).write_bytes(b"old")
    (tmp_path / STATE_FILES[newer]).write_bytes(b"new")
    os.utime(tmp_path / STATE_FILES[older], ns=(1_000_000_000, 1_000_000_000))
    os.utime(tmp_path / STATE_FILES[newer], ns=(2_000_000_000, 2_000_000_000))
    assert find_state(tmp_path) == tmp_path / STATE_FILES[newer]
    assert find_state(tmp_path / "missing") is None


@pytest.mark.parametrize("newer", ["npz", "safetensors"])
def test_resume_continues_from_the_newer_state_file(tmp_path, newer):
    """Two runs leave one state file each in one directory; resume takes the newer one."""
    pytest.importorskip("safetensors")
    older = "safetensors" if newer == "npz" else "npz"
    rng = np.random.default_rng(4)
    X = rng.normal(size=(32, WIDTH)).astype(np.float32)
    y = np.arange(32) % 3
    runs = {}
    for fmt, epochs in ((older, 1), (newer, 2)):
        d = tmp_path / fmt
        model = Sequential([Dense(WIDTH, WIDTH), ReLU(), Dense(WIDTH, 3)], seed=0)
        model.fit(X, y, epochs=epochs, batch_size=8, optimizer=SGD(lr=0.1), seed=1, checkpoint=d)
        (path,) = [p for p in d.iterdir() if p.is_file()]
        if path.name != STATE_FILES[fmt]:  # fit writes the default format; rename the file
            target = d / STATE_FILES[fmt]
            runs[fmt] = _rewrite(path, target, fmt)
        else:
            runs[fmt] = path
    both = tmp_path / "both"
    both.mkdir()
    for fmt, stamp in ((older, 1_000_000_000), (newer, 2_000_000_000)):
        dest = both / STATE_FILES[fmt]
        dest.write_bytes(runs[fmt].read_bytes())
        os.utime(dest, ns=(stamp, stamp))

    loaded = xpnet.load_model(both)
    expected = xpnet.load_model(runs[newer])
    for a, b in zip(loaded.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    model = Sequential([Dense(WIDTH, WIDTH), ReLU(), Dense(WIDTH, 3)], seed=0)
    history = model.fit(
        X, y, epochs=3, batch_size=8, optimizer=SGD(lr=0.1), seed=1, checkpoint=both, resume=True
    )
    assert history.epoch == [0, 1, 2]  # two epochs restored from the newer file, one trained
    straight = Sequential([Dense(WIDTH, WIDTH), ReLU(), Dense(WIDTH, 3)], seed=0)
    straight.fit(X, y, epochs=3, batch_size=8, optimizer=SGD(lr=0.1), seed=1)
    for a, b in zip(model.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _rewrite(path, target, fmt):
    """Re-encode a state file in format ``fmt`` (same metadata and arrays)."""
    from xpnet.io.codec import decode, encode

    meta, arrays = decode(path.read_bytes())
    with open(target, "wb") as f:
        encode(arrays, meta, fmt)(f)
    return target


# --------------------------------------------------------------------------- losses (mutants)
def test_loss_call_is_forward_and_repr_names_the_class():
    out = np.array([[0.5, -1.0], [2.0, 0.0]])
    target = np.array([[1.0, 0.0], [0.0, 3.0]])
    mse = MeanSquaredError()
    assert float(mse(out, target)) == pytest.approx(float(np.mean((out - target) ** 2)))
    ce = SoftmaxCrossEntropy()
    labels = np.array([1, 0])
    assert float(ce(out, labels)) == float(SoftmaxCrossEntropy().forward(out, labels))
    assert repr(mse) == "MeanSquaredError()"
    assert repr(ce) == "SoftmaxCrossEntropy()"


def test_losses_keep_the_outputs_dtype_whatever_the_targets():
    rng = np.random.default_rng(0)
    out = rng.normal(size=(WIDTH, WIDTH)).astype(np.float32)
    probs = rng.dirichlet(np.ones(WIDTH), size=WIDTH)  # float64 class probabilities
    ce = SoftmaxCrossEntropy()
    assert ce.forward(out, probs).dtype == np.float32
    assert ce.backward().dtype == np.float32
    mse = MeanSquaredError()
    assert mse.forward(out, rng.normal(size=(WIDTH, WIDTH))).dtype == np.float32
    assert mse.backward().dtype == np.float32


def test_mse_one_dimensional_target_is_one_column():
    out = np.array([[1.0], [2.0], [4.0]])
    mse = MeanSquaredError()
    assert float(mse.forward(out, np.array([0.0, 2.0, 1.0]))) == pytest.approx(10.0 / 3)
    np.testing.assert_allclose(mse.backward(), np.array([[2.0], [0.0], [6.0]]) / 3)


def test_mse_shape_errors_name_the_targets_shape():
    mse = MeanSquaredError()
    with pytest.raises(ValueError, match=r"expected targets of shape \(4, 1\), got \(4, 3\)"):
        mse.forward(np.zeros((4, 1)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"expected targets of shape \(4, 2\), got \(4,\)"):
        mse.forward(np.zeros((4, 2)), np.zeros(4))


def test_cross_entropy_labels_on_another_device_and_of_another_integer_type():
    """The one-hot classes follow the labels' device and dtype (strict checks both)."""
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    logits = xps.asarray([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], device=device)
    labels = xps.asarray([2, 0], dtype=xps.uint64, device=device)
    ce = SoftmaxCrossEntropy()
    value = ce.forward(logits, labels)
    assert value.device == device
    z = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    expected = np.mean(np.log(np.exp(z).sum(axis=1)) - z[[0, 1], [2, 0]])
    assert float(value) == pytest.approx(expected)


# --------------------------------------------------------------------------- parameter buffer
def test_parameter_buffer_of_one_parameter():
    from xpnet.parameter import ParameterBuffer

    p = Parameter(np.arange(3.0), "b")
    buf = ParameterBuffer([p])
    np.testing.assert_array_equal(buf.data, [0.0, 1.0, 2.0])
    assert buf.holds([p])


def test_parameter_buffer_lives_on_the_parameters_device():
    xps = pytest.importorskip("array_api_strict")
    from xpnet.parameter import ParameterBuffer

    device = xps.Device("device1")
    params = [
        Parameter(xps.ones((2, 2), dtype=xps.float64, device=device), "W"),
        Parameter(xps.zeros((2,), dtype=xps.float64, device=device), "b"),
    ]
    buf = ParameterBuffer(params)
    assert buf.data.device == device
    assert buf.grad.device == device
    assert all(p.data.device == device and p.grad.device == device for p in params)


def test_rebinding_only_the_data_leaves_the_buffer_and_the_step_follows_it():
    model = Sequential([Dense(WIDTH, WIDTH)], dtype="float64", seed=0)
    params = model.parameters()
    buf = params[0].buffer
    assert buf is not None and buf.holds(params)
    params[0].data = np.array(params[0].data, copy=True)  # grad still the buffer's view
    assert not buf.holds(params)
    params[0].grad[...] = 1.0
    params[1].grad[...] = 0.0
    before = params[0].data.copy()
    SGD(lr=0.5).step(params)
    np.testing.assert_allclose(params[0].data, before - 0.5)  # the rebound array moved
