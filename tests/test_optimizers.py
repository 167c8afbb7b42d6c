"""Optimizers against hand-written float64 references of PyTorch's update rules.

The references below are written from the algorithm boxes in PyTorch's documentation
(torch.optim.SGD, Adam, AdamW, RMSprop), independently of xpnet's code: same formulas,
straightforward NumPy, no in-place tricks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, RMSProp, get_optimizer
from xpnet.parameter import Parameter
from xpnet.testing import assert_allclose, tolerance

STEPS = 6
# The same float64 arithmetic in a different order: a few ulps per step.
REF_RTOL, REF_ATOL = 1e-12, 1e-14


# --------------------------------------------------------------------------- references
class RefSGD:
    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        self.lr, self.mu, self.nesterov = lr, momentum, nesterov
        self.wd, self.tau = weight_decay, dampening
        self.b = {}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if self.wd != 0:
                g = g + self.wd * p
            if self.mu != 0:
                if self.t > 1:
                    self.b[i] = self.mu * self.b[i] + (1 - self.tau) * g
                else:
                    self.b[i] = g
                g = g + self.mu * self.b[i] if self.nesterov else self.b[i]
            out.append(p - self.lr * g)
        return out


class RefAdam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.wd, self.decoupled = weight_decay, decoupled
        self.m, self.v = {}, {}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if self.decoupled:
                p = p - self.lr * self.wd * p
            elif self.wd != 0:
                g = g + self.wd * p
            self.m[i] = self.b1 * self.m.get(i, 0.0) + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v.get(i, 0.0) + (1 - self.b2) * g**2
            m_hat = self.m[i] / (1 - self.b1**self.t)
            v_hat = self.v[i] / (1 - self.b2**self.t)
            out.append(p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps))
        return out


class RefRMSProp:
    def __init__(
        self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False
    ):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.wd, self.mu, self.centered = weight_decay, momentum, centered
        self.v, self.g_avg, self.b = {}, {}, {}

    def step(self, params, grads):
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if self.wd != 0:
                g = g + self.wd * p
            self.v[i] = self.alpha * self.v.get(i, 0.0) + (1 - self.alpha) * g**2
            v_tilde = self.v[i]
            if self.centered:
                self.g_avg[i] = self.alpha * self.g_avg.get(i, 0.0) + (1 - self.alpha) * g
                v_tilde = v_tilde - self.g_avg[i] ** 2
            if self.mu > 0:
                self.b[i] = self.mu * self.b.get(i, 0.0) + g / (np.sqrt(v_tilde) + self.eps)
                out.append(p - self.lr * self.b[i])
            else:
                out.append(p - self.lr * g / (np.sqrt(v_tilde) + self.eps))
        return out


CASES = {
    "sgd": (SGD, RefSGD, {"lr": 0.1}),
    "sgd-momentum": (SGD, RefSGD, {"lr": 0.1, "momentum": 0.9}),
    "sgd-nesterov": (SGD, RefSGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "sgd-weight_decay": (SGD, RefSGD, {"lr": 0.1, "weight_decay": 0.05}),
    "sgd-dampening": (SGD, RefSGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    "sgd-all": (SGD, RefSGD, {"lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.1}),
    "adam": (Adam, RefAdam, {"lr": 0.01}),
    "adam-betas_eps": (Adam, RefAdam, {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-3}),
    "adam-weight_decay": (Adam, RefAdam, {"lr": 0.01, "weight_decay": 0.1}),
    "adamw": (AdamW, lambda **kw: RefAdam(decoupled=True, weight_decay=0.01, **kw), {"lr": 0.01}),
    "adamw-weight_decay": (
        AdamW,
        lambda **kw: RefAdam(decoupled=True, **kw),
        {"lr": 0.01, "weight_decay": 0.3},
    ),
    "rmsprop": (RMSProp, RefRMSProp, {"lr": 0.01}),
    "rmsprop-alpha": (RMSProp, RefRMSProp, {"lr": 0.01, "alpha": 0.9, "eps": 1e-4}),
    "rmsprop-momentum": (RMSProp, RefRMSProp, {"lr": 0.01, "momentum": 0.9}),
    "rmsprop-centered": (RMSProp, RefRMSProp, {"lr": 0.01, "centered": True}),
    "rmsprop-all": (
        RMSProp,
        RefRMSProp,
        {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1},
    ),
}


# --------------------------------------------------------------------------- helpers
TARGETS = [np.array([1.0, -2.0, 0.5]), np.array([[0.3, -0.1, 2.0], [-1.5, 0.0, 0.7]])]
START = [np.array([0.2, 0.4, -0.6]), np.array([[-0.5, 0.25, 1.0], [0.0, -0.75, 0.1]])]
for _a in (*TARGETS, *START):
    _a.flags.writeable = False  # an optimizer updating these in place would corrupt every case


def gradients(params: list[np.ndarray], t: int) -> list[np.ndarray]:
    """Gradient of sum((p - target)^2) plus a deterministic wobble, so it changes sign."""
    return [
        2.0 * (p - c) + 0.3 * np.sin(t + np.arange(p.size).reshape(p.shape))
        for p, c in zip(params, TARGETS, strict=True)
    ]


def run_xpnet(opt: Optimizer, backend, dtype: str, steps: int, params=None):
    params = params or [
        Parameter(backend.asarray(p.copy(), dtype=dtype), n)
        for p, n in zip(START, "Wb", strict=True)
    ]
    for t in range(steps):
        host = [xpnet.to_numpy(p.data).astype(np.float64) for p in params]
        for p, g in zip(params, gradients(host, t), strict=True):
            p.grad = backend.asarray(g, dtype=dtype)
        opt.step(params)
    return params


def run_reference(ref, steps: int) -> list[np.ndarray]:
    params = [p.copy() for p in START]
    for t in range(steps):
        params = ref.step(params, gradients(params, t))
    return params


# --------------------------------------------------------------------------- the rules
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_the_pytorch_reference(backend, case):
    cls, ref_cls, kwargs = CASES[case]
    params = run_xpnet(cls(**kwargs), backend, "float64", STEPS)
    expected = run_reference(ref_cls(**kwargs), STEPS)
    for p, e, s in zip(params, expected, START, strict=True):
        assert not np.allclose(e, s)  # the steps moved the parameter
        assert_allclose(p.data, e, rtol=REF_RTOL, atol=REF_ATOL, err_msg=case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_tracks_the_reference(backend, case):
    cls, ref_cls, kwargs = CASES[case]
    params = run_xpnet(cls(**kwargs), backend, "float32", STEPS)
    expected = run_reference(ref_cls(**kwargs), STEPS)
    rtol, atol = tolerance("float32")
    for p, e in zip(params, expected, strict=True):
        assert p.data.dtype == backend.xp.float32
        assert_allclose(p.data, e, rtol=rtol, atol=atol, err_msg=case)


def test_first_adam_step_moves_each_weight_by_lr(backend):
    # With bias correction, step 1 is -lr * g / (|g| + eps): about lr against the sign of g.
    p = Parameter(backend.asarray(np.zeros(4)), "W")
    p.grad = backend.asarray(np.array([3.0, -0.5, 1e-3, -20.0]))
    Adam(lr=0.1).step([p])
    expected = -0.1 * np.array([3.0, -0.5, 1e-3, -20.0]) / (np.array([3.0, 0.5, 1e-3, 20.0]) + 1e-8)
    assert_allclose(p.data, expected, rtol=1e-12, atol=0)
    assert_allclose(p.data, [-0.1, 0.1, -0.1, 0.1], rtol=1e-4, atol=0)


def test_updates_are_in_place(backend):
    for opt in (SGD(lr=0.1), SGD(lr=0.1, momentum=0.9), Adam(), AdamW(), RMSProp(centered=True)):
        p = Parameter(backend.asarray(np.ones(3)), "W")
        data = p.data
        for _ in range(2):
            p.grad = backend.asarray(np.full(3, 0.5))
            opt.step([p])
        assert p.data is data, repr(opt)
        assert float(xpnet.to_numpy(data)[0]) < 1.0


def test_parameters_without_gradients_are_skipped(backend):
    a = Parameter(backend.asarray(np.ones(2)), "W")
    b = Parameter(backend.asarray(np.ones(2)), "b")
    a.grad = backend.asarray(np.ones(2))
    opt = Adam(lr=0.1)
    opt.step([a, b])
    np.testing.assert_array_equal(xpnet.to_numpy(b.data), [1.0, 1.0])
    assert float(xpnet.to_numpy(a.data)[0]) == pytest.approx(0.9)
    opt.zero_grad([a, b])
    assert a.grad is None
    assert b.grad is None


# --------------------------------------------------------------------------- state
@pytest.mark.parametrize(
    "case", ["sgd-momentum", "sgd-nesterov", "adam", "adamw-weight_decay", "rmsprop-all"]
)
def test_state_dict_round_trip_continues_identically(backend, case):
    cls, _, kwargs = CASES[case]
    original = cls(**kwargs)
    params = run_xpnet(original, backend, "float64", 3)
    state = original.state_dict(params)
    assert state["name"] == original.name
    assert state["hyperparameters"] == original.hyperparameters()
    for entry in state["state"]:
        assert entry["step"] == 3
        for k, v in entry.items():
            if k != "step":
                assert isinstance(v, np.ndarray), k
                assert k in cls.state_names
    # The saved state is a copy: more steps on the original do not change it.
    snapshot = [{k: np.copy(v) for k, v in e.items()} for e in state["state"]]

    copies = [Parameter(backend.asarray(xpnet.to_numpy(p.data)), p.name) for p in params]
    restored = cls(**kwargs)
    restored.load_state_dict(state, copies)

    run_xpnet(original, backend, "float64", 3, params=params)
    run_xpnet(restored, backend, "float64", 3, params=copies)
    for p, q in zip(params, copies, strict=True):
        assert_allclose(q.data, p.data, rtol=0, atol=0)
    for before, entry in zip(snapshot, state["state"], strict=True):
        for k in before:
            np.testing.assert_array_equal(before[k], entry[k])


def test_state_dict_of_an_unused_optimizer(backend):
    params = [Parameter(backend.asarray(np.ones(2)), "W")]
    assert Adam().state_dict(params)["state"] == [{"step": 0}]


def test_load_state_dict_checks_count_and_shapes(backend):
    opt = Adam()
    params = run_xpnet(opt, backend, "float64", 2)
    state = opt.state_dict(params)
    with pytest.raises(ValueError, match="2 entries but the model has 1 parameters"):
        Adam().load_state_dict(state, params[:1])
    swapped = [params[1], params[0]]
    with pytest.raises(ValueError, match="has shape"):
        Adam().load_state_dict(state, swapped)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(lr=0),
        lambda: SGD(lr=-0.1),
        lambda: SGD(lr=float("nan")),
        lambda: SGD(lr=float("inf")),
        lambda: SGD(lr="0.1"),
        lambda: SGD(lr=True),
        lambda: SGD(momentum=1.0),
        lambda: SGD(momentum=-0.5),
        lambda: SGD(nesterov=True),
        lambda: SGD(momentum=0.9, nesterov=True, dampening=0.1),
        lambda: SGD(weight_decay=-1e-4),
        lambda: SGD(weight_decay=float("nan")),
        lambda: SGD(dampening=1.5),
        lambda: Adam(lr=0),
        lambda: Adam(betas=(1.0, 0.999)),
        lambda: Adam(betas=(0.9, -0.1)),
        lambda: Adam(betas=(0.9,)),
        lambda: Adam(betas=0.9),
        lambda: Adam(eps=0.0),
        lambda: Adam(weight_decay=-0.1),
        lambda: AdamW(weight_decay=-0.01),
        lambda: AdamW(lr=-1),
        lambda: RMSProp(alpha=1.0),
        lambda: RMSProp(alpha=-0.1),
        lambda: RMSProp(eps=-1e-8),
        lambda: RMSProp(momentum=1.0),
        lambda: RMSProp(weight_decay=float("inf")),
    ],
)
def test_invalid_hyperparameters(make):
    with pytest.raises(ValueError, match="xpnet"):
        make()


def test_hyperparameter_messages_name_the_value():
    with pytest.raises(ValueError, match=r"SGD lr must be a positive finite number, got -0\.1"):
        SGD(lr=-0.1)
    with pytest.raises(ValueError, match=r"Adam betas\[0\] must be a number in \[0, 1\), got 1.0"):
        Adam(betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD(nesterov=True)


def test_defaults_follow_pytorch():
    assert SGD().hyperparameters() == {
        "lr": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "dampening": 0.0,
    }
    assert Adam().hyperparameters() == {
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    assert AdamW().weight_decay == 1e-2
    rms = RMSProp()
    assert (rms.lr, rms.alpha, rms.eps, rms.momentum, rms.centered) == (
        1e-2,
        0.99,
        1e-8,
        0.0,
        False,
    )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_get_optimizer_by_name(name):
    opt = get_optimizer(name.upper(), lr=0.5)
    assert isinstance(opt, OPTIMIZERS[name])
    assert math.isclose(opt.lr, 0.5)


def test_get_optimizer_from_instance_or_none():
    sgd = SGD()
    assert get_optimizer(sgd) is sgd
    assert isinstance(get_optimizer(None), Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        get_optimizer("lbfgs")
