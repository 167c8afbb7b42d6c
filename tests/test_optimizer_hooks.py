"""Gradient hooks on optimizers: WeightDecay / L2Penalty by value, weights only."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.backend import to_numpy
from xpnet.optimizers import (
    OPTIMIZERS,
    SGD,
    GradientHook,
    L2Penalty,
    WeightDecay,
)
from xpnet.parameter import Parameter
from xpnet.testing import make_mlp


def _model_with_grads(backend):
    model = make_mlp(backend, sizes=(3, 4, 2), dtype="float64", seed=0)
    params = model.parameters()
    rng = np.random.default_rng(1)
    for p in params:
        # Non-zero biases, so a hook that touched them would show.
        p.data[...] = backend.asarray(rng.normal(size=p.shape), dtype="float64")
        p.grad[...] = backend.asarray(rng.normal(size=p.shape), dtype="float64")
    return params


def _host(params):
    return [to_numpy(p.data).copy() for p in params], [to_numpy(p.grad).copy() for p in params]


@pytest.mark.parametrize("flat", [True, False], ids=["flat-buffer", "per-parameter"])
@pytest.mark.parametrize("weights_only", [True, False])
def test_weight_decay_adds_rate_times_weights_and_spares_biases(backend, flat, weights_only):
    params = _model_with_grads(backend)
    if not flat:
        params = [Parameter(backend.asarray(to_numpy(p.data)), p.name) for p in params]
        rng = np.random.default_rng(1)
        for p in params:
            p.grad = backend.asarray(rng.normal(size=p.shape), dtype="float64")
    data, grads = _host(params)
    SGD(lr=0.5, hooks=[WeightDecay(0.1, weights_only=weights_only)]).step(params)
    for p, w, g in zip(params, data, grads, strict=True):
        decayed = p.data.ndim == 2 or not weights_only
        expected = w - 0.5 * (g + 0.1 * w) if decayed else w - 0.5 * g
        np.testing.assert_allclose(to_numpy(p.data), expected, rtol=1e-15, atol=1e-15)
        if p.name == "b" and weights_only:
            np.testing.assert_array_equal(to_numpy(p.data), w - 0.5 * g)


def test_l2_penalty_divides_by_the_batch_rows(backend):
    params = _model_with_grads(backend)
    data, grads = _host(params)
    opt = SGD(lr=1.0)
    opt.add_hook(L2Penalty(0.3))
    with pytest.raises(ValueError, match="batch_rows"):
        opt.step(params)
    params = _model_with_grads(backend)
    opt = SGD(lr=1.0, hooks=[L2Penalty(0.3)])
    opt.batch_rows = 6
    opt.step(params)
    for p, w, g in zip(params, data, grads, strict=True):
        expected = w - (g + 0.05 * w) if p.name == "W" else w - g
        np.testing.assert_allclose(to_numpy(p.data), expected, rtol=1e-15, atol=1e-15)


class Spy(GradientHook):
    def __init__(self):
        self.seen = []

    def __call__(self, optimizer, params, buffer):
        grad = buffer.grad if buffer is not None else params[0].grad
        self.seen.append((to_numpy(params[0].data).copy(), to_numpy(grad).copy()))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_calls_its_hooks_before_the_update(backend, name):
    params = _model_with_grads(backend)
    spy = Spy()
    before = to_numpy(params[0].data).copy()
    opt = OPTIMIZERS[name](hooks=[spy])
    opt.step(params)
    assert len(spy.seen) == 1 and opt.hooks == [spy]
    np.testing.assert_array_equal(spy.seen[0][0], before)  # called on the old weights
    assert not np.array_equal(to_numpy(params[0].data), before)


def test_hooks_must_be_gradient_hooks():
    with pytest.raises(TypeError, match="GradientHook instances, got function"):
        SGD(hooks=[lambda *a: None])
    with pytest.raises(ValueError, match=r"rate must be a finite number >= 0, got -1\.0"):
        WeightDecay(-1.0)
    assert repr(WeightDecay(0.1)) == "WeightDecay(0.1, weights_only=True)"


def test_hooks_are_not_hyperparameters():
    # A checkpoint records hyperparameters(); a hook is a run's choice, not the optimizer's.
    assert SGD(lr=0.1, hooks=[WeightDecay(0.1)]).hyperparameters() == SGD(lr=0.1).hyperparameters()
