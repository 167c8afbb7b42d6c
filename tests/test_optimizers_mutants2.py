"""Optimizer.step's edges: parameters given as any iterable, what the hooks and the clipping
are handed (the flat buffer exactly when the parameters are its own), an empty step, and a
parameter whose step count has run ahead of the others keeping its own bias correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet.optimizers as optimizers
from xpnet.backend import to_numpy
from xpnet.optimizers import SGD, Adam, GradientHook, RMSProp, WeightDecay
from xpnet.parameter import Parameter
from xpnet.testing import make_mlp


def _model_params(backend, seed=0):
    # Square hidden layer, so a transposed or mis-summed gradient shows in the values.
    model = make_mlp(backend, sizes=(3, 3, 2), dtype="float64", seed=seed)
    params = model.parameters()
    rng = np.random.default_rng(seed + 1)
    for p in params:
        p.data[...] = backend.asarray(rng.normal(size=p.shape), dtype="float64")
        p.grad[...] = backend.asarray(rng.normal(size=p.shape), dtype="float64")
    return params


class Recorder(GradientHook):
    """Notes the buffer argument of each call (what add_hook documents it is)."""

    def __init__(self):
        self.buffers = []

    def __call__(self, optimizer, params, buffer):
        self.buffers.append(buffer)


def test_step_takes_any_iterable_of_parameters(backend):
    listed, generated = _model_params(backend), _model_params(backend)
    SGD(lr=0.1, momentum=0.9).step(listed)
    SGD(lr=0.1, momentum=0.9).step(p for p in generated)
    for a, b in zip(listed, generated, strict=True):
        np.testing.assert_array_equal(to_numpy(a.data), to_numpy(b.data))
    with_hook = _model_params(backend)
    SGD(lr=0.1, momentum=0.9, hooks=[Recorder()]).step(iter(with_hook))
    for a, b in zip(listed, with_hook, strict=True):
        np.testing.assert_array_equal(to_numpy(a.data), to_numpy(b.data))


def test_hooks_get_the_buffer_only_when_the_parameters_are_its_own(backend):
    params = _model_params(backend)
    rec = Recorder()
    opt = SGD(lr=0.1, hooks=[rec])
    opt.step(params)
    opt.step(params[:2])  # a part of the buffer's parameters
    opt.step(tuple(params))
    assert rec.buffers[0] is params[0].buffer is not None
    assert rec.buffers[1] is None
    assert rec.buffers[2] is params[0].buffer


@pytest.mark.parametrize("clip", [None, 1.0])
def test_a_step_over_no_parameters_changes_nothing(clip):
    rec = Recorder()
    opt = Adam(lr=0.1, hooks=[rec], clip_norm=clip)
    opt.step([])
    Adam(lr=0.1, clip_norm=clip).step([])
    assert rec.buffers == [None] and opt.steps_done == 1


def test_clipping_goes_over_the_flat_buffer_when_it_holds_the_parameters(backend, monkeypatch):
    seen = []
    real = optimizers.clip_grad_norm

    def recording(params, buffer, max_norm):
        seen.append(buffer)
        real(params, buffer, max_norm)

    monkeypatch.setattr(optimizers, "clip_grad_norm", recording)
    params = _model_params(backend)
    data = [to_numpy(p.data).copy() for p in params]
    grads = [to_numpy(p.grad).copy() for p in params]
    SGD(lr=1.0, clip_norm=0.5).step(params)
    assert seen == [params[0].buffer] and seen[0] is not None
    scale = 0.5 / (math.sqrt(sum(float(np.sum(g * g)) for g in grads)) + 1e-6)
    for p, w, g in zip(params, data, grads, strict=True):
        np.testing.assert_allclose(to_numpy(p.data), w - scale * g, rtol=1e-12, atol=1e-14)
    SGD(lr=1.0, clip_norm=0.5).step(params[1:])
    assert seen[1] is None


def _adam_reference(w, g, m, v, t, lr=0.1, b1=0.9, b2=0.999, eps=1e-8):
    # PyTorch's Adam, float64, one parameter at its own step count t.
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    w = w - lr / (1 - b1**t) * m / (np.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    return w, m, v


def test_a_parameter_stepped_ahead_keeps_its_own_bias_correction(backend):
    params = _model_params(backend)
    grads = [to_numpy(p.grad).copy() for p in params]
    ref = [[to_numpy(p.data).copy(), np.zeros(p.shape), np.zeros(p.shape), 0] for p in params]

    def expect(indices):
        for i in indices:
            w, m, v, t = ref[i]
            ref[i] = [*_adam_reference(w, grads[i], m, v, t + 1), t + 1]

    opt = Adam(lr=0.1)
    opt.step([params[0]])  # the first weight alone: it is one step ahead from now on
    expect([0])
    for _ in range(3):  # the same kinds of state everywhere, different step counts
        opt.step(params)
        expect(range(len(params)))
    for p, (w, *_) in zip(params, ref, strict=True):
        np.testing.assert_allclose(to_numpy(p.data), w, rtol=1e-12, atol=1e-14)
    steps = [e["step"] for e in opt.state_dict(params)["state"]]
    assert steps == [4, 3, 3, 3]


def test_loaded_states_of_different_kinds_are_stepped_one_by_one(backend):
    params = _model_params(backend)
    opt = RMSProp(lr=0.1, momentum=0.5)
    opt.step(params)
    state = opt.state_dict(params)
    state["state"][1] = {"step": 1}  # one parameter without its arrays, same step count
    fresh = RMSProp(lr=0.1, momentum=0.5)
    fresh.load_state_dict(state, params)
    before = [to_numpy(p.data).copy() for p in params]
    fresh.step(params)
    after = fresh.state_dict(params)["state"]
    assert [e["step"] for e in after] == [2, 2, 2, 2]
    # The parameter without state starts its averages from zero: square_avg = (1 - alpha) g^2.
    g = to_numpy(params[1].grad)
    np.testing.assert_allclose(after[1]["square_avg"], 0.01 * g * g, rtol=1e-12)
    for p, w in zip(params, before, strict=True):
        assert not np.array_equal(to_numpy(p.data), w)


@pytest.mark.parametrize("cls", [SGD, Adam, RMSProp])
def test_a_bad_clip_norm_names_the_optimizer(cls):
    with pytest.raises(ValueError, match=f"^xpnet: {cls.__name__} clip_norm must"):
        cls(clip_norm=-1.0)


@pytest.mark.parametrize("weights_only", [True, False])
def test_weight_decay_skips_a_parameter_without_a_gradient(backend, weights_only):
    w = Parameter(backend.asarray(np.array([[1.0, -2.0], [3.0, 0.5]])), "W")
    frozen = Parameter(backend.asarray(np.array([[4.0, 5.0]])), "W")  # no gradient: not updated
    b = Parameter(backend.asarray(np.array([2.0, -1.0])), "b")
    w.grad = backend.asarray(np.array([[0.5, 0.5], [0.5, 0.5]]))
    b.grad = backend.asarray(np.array([1.0, 1.0]))
    SGD(lr=0.5, hooks=[WeightDecay(0.2, weights_only=weights_only)]).step([w, frozen, b])
    np.testing.assert_allclose(
        to_numpy(w.data), [[1.0 - 0.5 * 0.7, -2.0 - 0.5 * 0.1], [3.0 - 0.5 * 1.1, 0.5 - 0.5 * 0.6]]
    )
    np.testing.assert_array_equal(to_numpy(frozen.data), [[4.0, 5.0]])
    assert frozen.grad is None
    want_b = [2.0 - 0.5 * 1.4, -1.0 - 0.5 * 0.8] if not weights_only else [1.5, -1.5]
    np.testing.assert_allclose(to_numpy(b.data), want_b)
