"""Optimizer and schedule contracts the other tests leave open: the base class's
hyperparameters, state_dict / load_state_dict edge cases (a parameter without state, no
parameters, float32 state), the reprs, the argument errors naming optimizer and argument,
defaults, weight decay of rate 1 and of rate 0, and the cosine schedule at its ends."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet.backend import resolve_backend, to_numpy
from xpnet.optimizers import SGD, Adam, AdamW, L2Penalty, Optimizer, RMSProp, WeightDecay
from xpnet.parameter import Parameter, ParameterBuffer
from xpnet.schedules import CosineDecay, LRSchedule, StepDecay


class HalfStep(Optimizer):
    """A user optimizer that keeps the base class's hyperparameters: ``p -= lr g / 2``."""

    name = "half_step"

    def _update(self, p, g, state, xp):
        p.data -= (0.5 * self.lr) * g


def _param(backend, values, name="W", dtype=None):
    return Parameter(backend.asarray(np.asarray(values, dtype=np.float64), dtype=dtype), name)


def test_base_hyperparameters_and_repr():
    assert HalfStep(lr=0.5).hyperparameters() == {"lr": 0.5}
    assert HalfStep(lr=0.5, clip_norm=2.0).hyperparameters() == {"lr": 0.5, "clip_norm": 2.0}
    assert repr(HalfStep(lr=0.5, clip_norm=2.0)) == "HalfStep(lr=0.5, clip_norm=2.0)"
    sched = StepDecay(3, 0.5)
    assert repr(HalfStep(lr=0.5, schedule=sched)) == (
        "HalfStep(lr=0.5, schedule=StepDecay(at_step=3, factor=0.5))"
    )


def test_a_constant_schedule_keeps_the_rate(backend):
    assert LRSchedule().factor(0) == 1.0 and LRSchedule().factor(10**6) == 1.0
    p = _param(backend, [[1.0, 2.0]])
    p.grad = backend.asarray(np.array([[1.0, -1.0]]))
    opt = HalfStep(lr=0.5, schedule=LRSchedule())
    for _ in range(2):
        opt.step([p])
    assert opt.lr == 0.5
    np.testing.assert_allclose(to_numpy(p.data), [[0.5, 2.5]])


def test_state_dict_skips_a_parameter_without_state_and_keeps_integer_steps(backend):
    a = _param(backend, [[1.0, 2.0]], "W")
    b = _param(backend, [3.0], "b")
    b.grad = backend.asarray(np.array([1.0]))
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step([a, b])  # a has no gradient: it gets no state
    state = opt.state_dict([a, b])["state"]
    assert state[0] == {"step": 0}
    assert type(state[1]["step"]) is int and state[1]["step"] == 1
    np.testing.assert_allclose(state[1]["momentum_buffer"], [1.0])


def test_load_state_dict_of_no_parameters_resets_the_step_count():
    opt = Adam()
    opt.steps_done = 7
    opt.load_state_dict({"state": []}, [])
    assert opt.steps_done == 0


def test_loaded_state_takes_the_parameters_dtype(backend):
    xp = backend.xp
    p = _param(backend, [[1.0, -2.0], [0.5, 3.0]], dtype=xp.float32)
    p.grad = backend.asarray(np.ones((2, 2)), dtype=xp.float32)
    opt = Adam(lr=0.01)
    opt.step([p])
    saved = opt.state_dict([p])
    host = {k: (np.asarray(v, dtype=np.float64) if k != "step" else v) for k, v in
            saved["state"][0].items()}  # fmt: skip
    fresh = Adam(lr=0.01)
    fresh.load_state_dict({"state": [host]}, [p])
    assert fresh.steps_done == 1
    for k, v in fresh.state_dict([p])["state"][0].items():
        if k != "step":
            assert v.dtype == np.float32, k
    fresh.step([p])
    assert p.data.dtype == xp.float32


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda: SGD(dampening=1.5), "SGD dampening"),
        (lambda: RMSProp(eps=0.0), "RMSProp eps"),
        (lambda: RMSProp(weight_decay=-1.0), "RMSProp weight_decay"),
        (lambda: RMSProp(momentum=1.0), "RMSProp momentum"),
        (lambda: CosineDecay(-1), "schedule total_steps"),
        (lambda: Adam(betas=(1.0, 0.9)), r"^xpnet: Adam betas\[0\] must"),
        (lambda: Adam(betas=(0.9, 1.0)), r"^xpnet: Adam betas\[1\] must"),
        (lambda: Adam(eps=0.0), "^xpnet: Adam eps must"),
        (lambda: AdamW(weight_decay=-1.0), "^xpnet: AdamW weight_decay must"),
    ],
)
def test_argument_errors_name_owner_and_argument(make, phrase):
    with pytest.raises(ValueError, match=phrase):
        make()


def test_defaults():
    assert (
        Adam(clip_norm=1.5).clip_norm == 1.5 == AdamW(clip_norm=1.5).hyperparameters()["clip_norm"]
    )
    assert AdamW().base_lr == 1e-3 and AdamW().lr == 1e-3
    assert StepDecay(4).factor(4) == 0.1
    assert CosineDecay(10).factor(10) == 0.0


def test_adam_without_decay_leaves_the_gradient_alone(backend):
    # 0 * inf is nan: a decay of 0 must not be applied at all.
    p = _param(backend, [np.inf, 1.0])
    p.grad = backend.asarray(np.array([1.0, 1.0]))
    Adam(lr=0.1, weight_decay=0.0).step([p])
    got = to_numpy(p.data)
    assert got[0] == np.inf
    assert got[1] == pytest.approx(0.9)


def test_weight_decay_of_rate_one_is_applied(backend):
    p = _param(backend, [[2.0, -4.0]])
    p.grad = backend.asarray(np.array([[1.0, 1.0]]))
    SGD(lr=0.1, hooks=[WeightDecay(1.0)]).step([p])
    np.testing.assert_allclose(to_numpy(p.data), [[2.0 - 0.1 * 3.0, -4.0 - 0.1 * -3.0]])


def test_schedule_reprs():
    assert repr(LRSchedule()) == "LRSchedule()"
    assert repr(StepDecay(3, 0.5)) == "StepDecay(at_step=3, factor=0.5)"
    assert repr(CosineDecay(8, 0.25)) == "CosineDecay(total_steps=8, final_factor=0.25)"


def test_cosine_decay_of_one_step():
    sched = CosineDecay(1, 0.2)
    assert sched.factor(0) == 1.0
    assert sched.factor(1) == 0.2
    assert CosineDecay(0, 0.3).factor(0) == 0.3


def _buffered(make, layout):
    params = []
    for i, (shape, name) in enumerate(layout):
        values = np.arange(1.0, 1.0 + int(np.prod(shape))).reshape(shape) * (i + 1)
        params.append(Parameter(make(values), name))
    ParameterBuffer(params)
    return params


def _reference_decay_step(params, rate, lr):
    # SGD with zero gradients and a weights-only decay: w -= lr * rate * w, biases kept.
    return [to_numpy(p.data) * ((1.0 - lr * rate) if len(p.shape) >= 2 else 1.0) for p in params]


def test_one_weight_decay_hook_serves_buffers_of_different_layouts(backend):
    def asarray(values):
        return backend.asarray(values)

    wd = WeightDecay(0.5)
    for layout in (
        [((2, 2), "W"), ((2,), "b")],
        [((3,), "b"), ((2, 3), "W"), ((3,), "b")],
    ):
        params = _buffered(asarray, layout)
        want = _reference_decay_step(params, 0.5, 0.1)
        SGD(lr=0.1, hooks=[wd]).step(params)
        for p, w in zip(params, want, strict=True):
            np.testing.assert_allclose(to_numpy(p.data), w, rtol=1e-15)


def test_weight_decay_mask_keeps_the_buffers_dtype_and_device():
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")

    def asarray(values):
        return xps.asarray(values, dtype=xps.float32, device=device)

    params = _buffered(asarray, [((2, 2), "W"), ((2,), "b")])
    want = _reference_decay_step(params, 0.5, 0.1)
    SGD(lr=0.1, hooks=[WeightDecay(0.5)]).step(params)
    for p, w in zip(params, want, strict=True):
        assert p.data.dtype == xps.float32 and p.data.device == device
        np.testing.assert_allclose(to_numpy(p.data), w, rtol=1e-6)


@pytest.mark.parametrize("kind", [WeightDecay, L2Penalty])
def test_weight_decay_rate_error_names_the_hook(kind):
    with pytest.raises(ValueError, match=f"^xpnet: {kind.__name__} rate must"):
        kind(-1.0)


def test_clip_norm_scales_the_step_on_both_paths(backend):
    flat = _buffered(backend.asarray, [((1, 2), "W")])
    alone = [_param(backend, [[0.0, 0.0]])]
    for params in (flat, alone):
        start = to_numpy(params[0].data).copy()
        params[0].grad = params[0].grad if params is flat else backend.asarray(np.zeros((1, 2)))
        params[0].grad[...] = backend.asarray(np.array([[3.0, 4.0]]))
        SGD(lr=1.0, clip_norm=0.5).step(params)  # norm 5 clipped to 0.5
        scale = 0.5 / (5.0 + 1e-6)  # torch's clip_grad_norm_ adds 1e-6 to the norm
        want = start - scale * np.array([[3.0, 4.0]])
        np.testing.assert_allclose(to_numpy(params[0].data), want, rtol=1e-12)


def test_a_gradient_of_another_backend_is_a_type_error():
    pytest.importorskip("array_api_strict")
    strict = resolve_backend("array_api_strict")
    p = Parameter(np.ones((2, 2)), "W")  # no buffer: the per-parameter path
    p.grad = strict.asarray(np.ones((2, 2)))
    with pytest.raises(TypeError, match="different backends"):
        SGD(lr=0.1).step([p])
    np.testing.assert_array_equal(p.data, np.ones((2, 2)))
