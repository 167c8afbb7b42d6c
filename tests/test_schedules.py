"""Learning-rate schedules and their use by the optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xpnet import Sequential
from xpnet.layers import Dense
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp
from xpnet.parameter import Parameter
from xpnet.schedules import CosineDecay, LRSchedule, StepDecay, schedule_from_config


def test_step_decay_factors() -> None:
    s = StepDecay(at_step=3, factor=0.25)
    assert [s.factor(t) for t in range(6)] == [1.0, 1.0, 1.0, 0.25, 0.25, 0.25]


def test_cosine_decay_endpoints_and_midpoint() -> None:
    s = CosineDecay(total_steps=10, final_factor=0.1)
    assert s.factor(0) == pytest.approx(1.0)
    assert s.factor(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s.factor(10) == pytest.approx(0.1)
    assert s.factor(99) == pytest.approx(0.1)
    assert all(s.factor(t) >= s.factor(t + 1) for t in range(12))


@pytest.mark.parametrize(
    "make",
    [
        lambda: StepDecay(-1),
        lambda: StepDecay(2.5),  # type: ignore[arg-type]
        lambda: StepDecay(3, factor=1.5),
        lambda: CosineDecay(10, final_factor=-0.1),
        lambda: CosineDecay(True),  # type: ignore[arg-type]
    ],
)
def test_bad_schedule_arguments_are_refused(make) -> None:
    with pytest.raises(ValueError, match="schedule"):
        make()


def test_config_round_trip() -> None:
    for s in (LRSchedule(), StepDecay(7, 0.5), CosineDecay(100, 0.01)):
        again = schedule_from_config(s.config())
        assert type(again) is type(s) and again.config() == s.config()
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_from_config({"name": "warp"})


def test_optimizer_refuses_a_non_schedule() -> None:
    with pytest.raises(ValueError, match="LRSchedule"):
        Adam(schedule=0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSProp])
def test_rate_follows_the_schedule_and_hyperparameters_keep_the_base(cls) -> None:
    p = Parameter(np.ones(3), "w")
    opt = cls(lr=0.5, schedule=StepDecay(2, 0.1))
    rates = []
    for _ in range(4):
        p.grad = np.full(3, 0.1)
        opt.step([p])
        rates.append(opt.lr)
    assert rates == pytest.approx([0.5, 0.5, 0.05, 0.05])
    assert opt.hyperparameters()["lr"] == 0.5
    assert "StepDecay" in repr(opt)


def test_sgd_step_sizes_shrink_by_the_factor() -> None:
    p = Parameter(np.zeros(1), "w")
    opt = SGD(lr=1.0, schedule=StepDecay(1, 0.1))
    moves = []
    for _ in range(2):
        before = p.data.copy()
        p.grad = np.ones(1)
        opt.step([p])
        moves.append(float((before - p.data)[0]))
    assert moves == pytest.approx([1.0, 0.1])


def test_resumed_state_restores_the_schedule_position() -> None:
    X = np.random.default_rng(0).standard_normal((64, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential([Dense(4, 8, activation="relu"), Dense(8, 2)], seed=0, dtype="float64")
    opt = Adam(lr=1e-2, schedule=StepDecay(at_step=5, factor=0.1))
    model.fit(X, y, epochs=1, batch_size=16, optimizer=opt, seed=0)  # 4 updates
    state = opt.state_dict(model.parameters())
    fresh = Adam(lr=1e-2, schedule=StepDecay(at_step=5, factor=0.1))
    fresh.load_state_dict(state, model.parameters())
    assert fresh.steps_done == 4
    for p in model.parameters():
        p.grad = p.data * 0.0 + 1.0
    fresh.step(model.parameters())  # update 5: still the full rate
    assert math.isclose(fresh.lr, 1e-2)
    fresh.step(model.parameters())  # update 6: decayed
    assert math.isclose(fresh.lr, 1e-3)
