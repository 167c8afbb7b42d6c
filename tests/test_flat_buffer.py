"""A model's parameters as views into one flat buffer, and the optimizers' flat path over it.

The flat path must give exactly the numbers of per-parameter updates, keep the public
per-parameter view (``parameters()``, ``state_dict``) true, and survive every way the parameter
set or its arrays change.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Sequential
from xpnet.backend import backend_of
from xpnet.kernels import PortableKernels
from xpnet.layers import Dense
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp
from xpnet.parameter import Parameter, ParameterBuffer

OPTIMIZERS = {
    "adam": lambda: Adam(lr=1e-2),
    "adam-l2": lambda: Adam(lr=1e-2, weight_decay=1e-3),
    "adamw": lambda: AdamW(lr=1e-2),
    "sgd-nesterov": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
    "rmsprop-centered": lambda: RMSProp(lr=1e-3, momentum=0.5, centered=True),
}


def _model(seed: int = 0) -> Sequential:
    return Sequential(
        [Dense(6, 8, activation="relu"), Dense(8, 5, activation="tanh"), Dense(5, 3)],
        seed=seed,
    )


def _batch(backend, t: int):
    rng = np.random.default_rng(t)
    X = backend.asarray(rng.standard_normal((16, 6)), dtype="float32")
    y = backend.asarray(rng.integers(0, 3, 16), dtype="int64")
    return X, y


def _train(model: Sequential, opt, backend, steps: int, per_parameter: bool) -> None:
    loss = SoftmaxCrossEntropy()
    params = model.parameters()
    for t in range(steps):
        X, y = _batch(backend, t)
        loss.forward(model.forward(X, training=True), y)
        model.backward(loss.backward())
        if per_parameter:
            for p in params:  # a one-parameter list is never a whole buffer
                opt.step([p])
        else:
            opt.step(params)


def _host(model: Sequential) -> list[np.ndarray]:
    return [np.array(xpnet.to_numpy(p.data), copy=True) for p in model.parameters()]


def test_parameters_are_views_of_one_buffer(backend):
    model = _model()
    params = model.parameters()
    buf = params[0].buffer
    assert isinstance(buf, ParameterBuffer)
    assert buf.holds(params)
    assert [p.shape for p in params] == [(6, 8), (8,), (8, 5), (5,), (5, 3), (3,)]
    assert buf.data.shape == (sum(p.size for p in params),)
    # Writing through the flat array shows in every parameter, and the other way round.
    buf.data[...] = backend.xp.ones_like(buf.data)
    assert all(np.all(h == 1.0) for h in _host(model))
    params[2].data[...] = backend.xp.zeros_like(params[2].data)
    a, b = buf.slices[2]
    assert np.all(xpnet.to_numpy(buf.data)[a:b] == 0.0)
    assert np.all(xpnet.to_numpy(buf.data)[b:] == 1.0)


def test_backward_writes_into_the_gradient_views(backend):
    model = _model()
    params = model.parameters()
    views = [p.grad for p in params]
    _train(model, Adam(), backend, 2, per_parameter=False)
    assert all(p.grad is v for p, v in zip(params, views, strict=True))
    assert np.any(xpnet.to_numpy(params[0].buffer.grad) != 0.0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_flat_step_is_bit_identical_to_per_parameter_steps(backend, name):
    flat_model, loop_model = _model(), _model()
    flat_opt, loop_opt = OPTIMIZERS[name](), OPTIMIZERS[name]()
    _train(flat_model, flat_opt, backend, 20, per_parameter=False)  # 20: past a subnormal flush
    _train(loop_model, loop_opt, backend, 20, per_parameter=True)
    assert flat_opt._flat is not None and loop_opt._flat is None  # two different paths
    for a, b, s in zip(_host(flat_model), _host(loop_model), _host(_model()), strict=True):
        assert np.array_equal(a, b)
        assert not np.array_equal(a, s)  # training moved them
    params_f, params_l = flat_model.parameters(), loop_model.parameters()
    sf = flat_opt.state_dict(params_f)["state"]
    sl = loop_opt.state_dict(params_l)["state"]
    for ef, el in zip(sf, sl, strict=True):
        assert ef.keys() == el.keys() and ef["step"] == el["step"] == 20
        for k in ef.keys() - {"step"}:
            assert np.array_equal(ef[k], el[k]), k


def test_load_state_dict_then_flat_steps_match_an_uninterrupted_run(backend):
    whole, resumed = _model(), _model()
    whole_opt = Adam(lr=1e-2)
    _train(whole, whole_opt, backend, 6, per_parameter=False)
    state = whole_opt.state_dict(whole.parameters())
    resumed.set_weights(whole.get_weights())
    resumed_opt = Adam(lr=1e-2)
    resumed_opt.load_state_dict(state, resumed.parameters())
    for t in range(6, 12):  # the same batches for both
        for model, opt in ((whole, whole_opt), (resumed, resumed_opt)):
            X, y = _batch(backend, t)
            loss = SoftmaxCrossEntropy()
            loss.forward(model.forward(X, training=True), y)
            model.backward(loss.backward())
            opt.step(model.parameters())
    assert resumed_opt._flat is not None
    for a, b in zip(_host(whole), _host(resumed), strict=True):
        assert np.array_equal(a, b)


def test_replaced_gradients_fall_back_and_rejoin_the_flat_path(backend):
    model, ref = _model(), _model()
    opt, ref_opt = Adam(lr=1e-2), Adam(lr=1e-2)
    _train(model, opt, backend, 3, per_parameter=False)
    _train(ref, ref_opt, backend, 3, per_parameter=False)
    params = model.parameters()
    # A hand loop that assigns its own gradient arrays: no longer the buffer's views.
    for p, q in zip(params, ref.parameters(), strict=True):
        q.grad[...] = backend.xp.full_like(q.grad, 0.01)
        p.grad = backend.xp.full_like(p.data, 0.01)
    opt.step(params)
    ref_opt.step(ref.parameters())
    assert opt._flat is None and not params[0].buffer.holds(params)
    # The next backward writes fresh arrays, so the model stays correct on the slow path,
    # until the model is rebuilt over a new buffer.
    _train(model, opt, backend, 2, per_parameter=False)
    _train(ref, ref_opt, backend, 2, per_parameter=False)
    for a, b in zip(_host(model), _host(ref), strict=True):
        assert np.array_equal(a, b)


def test_add_after_build_re_flattens_and_keeps_the_weights(backend):
    model = Sequential([Dense(6, 8, activation="relu"), Dense(8, 3)], seed=0)
    before = _host(model)
    old = model.parameters()[0].buffer
    opt = Adam(lr=1e-2)
    _train(model, opt, backend, 2, per_parameter=False)
    trained = _host(model)
    assert not all(np.array_equal(a, b) for a, b in zip(before, trained, strict=True))
    model.add(Dense(3, 3))
    params = model.parameters()
    assert params[0].buffer is not old and params[0].buffer.holds(params)
    for a, b in zip(trained, _host(model)[: len(trained)], strict=True):
        assert np.array_equal(a, b)
    # Old parameters are at step 2, the new ones at 0: the step stays per-parameter.
    loss = SoftmaxCrossEntropy()
    X, y = _batch(backend, 9)
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())
    opt.step(params)
    assert opt._flat is None
    assert [e["step"] for e in opt.state_dict(params)["state"]] == [3, 3, 3, 3, 1, 1]


def test_to_another_backend_re_flattens(other_backend):
    model = _model().to("numpy")
    weights = _host(model)
    model.to(other_backend)
    params = model.parameters()
    assert params[0].buffer.holds(params)
    assert backend_of(params[0].buffer.data).name == other_backend.name
    for a, b in zip(weights, _host(model), strict=True):
        assert np.array_equal(a, b)
    _train(model, Adam(), other_backend, 2, per_parameter=False)
    assert params[0].buffer.holds(model.parameters())


def test_fit_keeps_the_flat_layout():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = _model()
    model.fit(X, y, epochs=2, batch_size=16)
    params = model.parameters()
    assert params[0].buffer.holds(params) and model.optimizer._flat is not None


def test_hand_written_parameters_still_step_one_by_one(backend):
    p = Parameter(backend.asarray(np.ones(3)), "W")
    p.grad = backend.asarray(np.full(3, 0.5))
    Adam(lr=0.1).step([p])
    assert p.buffer is None
    assert np.all(xpnet.to_numpy(p.data) < 1.0)


def test_portable_products_write_into_out(backend):
    k = PortableKernels()
    xp = backend.xp
    a = backend.asarray(np.arange(6.0).reshape(2, 3))
    b = backend.asarray(np.ones((3, 4)))
    out = xp.zeros((2, 4), dtype=a.dtype)
    assert k.matmul(a, b, out=out) is out
    assert np.array_equal(xpnet.to_numpy(out), np.arange(6.0).reshape(2, 3) @ np.ones((3, 4)))
    col = xp.zeros((3,), dtype=a.dtype)
    assert k.sum_rows(a, out=col) is col
    assert np.array_equal(xpnet.to_numpy(col), [3.0, 5.0, 7.0])
    wrong = xp.zeros((4,), dtype=a.dtype)  # not the result's shape: a new array instead
    assert k.sum_rows(a, out=wrong) is not wrong
