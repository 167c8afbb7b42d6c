"""The training recipe (xpnet.recipe) that ``xpnet train`` and examples/train_mnist.py share."""

from __future__ import annotations

import pytest

import xpnet.cli
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp
from xpnet.recipe import (
    DEFAULT_LR,
    DEFAULTS,
    STEP_FACTOR,
    build_model,
    decay_epoch,
    make_optimizer,
)
from xpnet.schedules import StepDecay


def test_the_cli_trains_with_the_recipe() -> None:
    args = xpnet.cli.build_parser().parse_args(["train"])
    assert args.hidden == DEFAULTS["hidden"] and args.activation == DEFAULTS["activation"]
    assert (args.optimizer, args.lr_schedule) == (DEFAULTS["optimizer"], DEFAULTS["lr_schedule"])
    assert xpnet.cli.DEFAULTS is DEFAULTS and xpnet.cli.build_model is build_model


def test_build_model_layers() -> None:
    model = build_model(64, 10, hidden=(32, 16), activation="tanh", dropout=0.25, seed=1)
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["Dense", "Tanh", "Dropout", "Dense", "Tanh", "Dropout", "Dense"]
    assert [w.shape for w in model.get_weights()[::2]] == [(64, 32), (32, 16), (16, 10)]
    linear = build_model(784, 3, hidden=(), dtype="float64")
    assert [layer.kind for layer in linear.layers] == ["Dense"] and linear.dtype == "float64"


def test_build_model_is_seeded() -> None:
    a, b = (build_model(8, 2, hidden=(4,), seed=5).get_weights() for _ in range(2))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "swish"}, "activation must be one of relu, leaky_relu, tanh, sigmoid"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"hidden": (8, 0)}, "hidden layer width must be an integer >= 1, got 0"),
    ],
)
def test_build_model_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(8, 2, **kwargs)


def test_make_optimizer_defaults() -> None:
    for name, cls in (("adam", Adam), ("adamw", AdamW), ("rmsprop", RMSProp), ("sgd", SGD)):
        opt = make_optimizer(name)
        assert type(opt) is cls and opt.base_lr == DEFAULT_LR[name] and opt.schedule is None
    assert make_optimizer("sgd").momentum == 0.9
    assert make_optimizer("rmsprop", momentum=0.5).momentum == 0.5


def test_make_optimizer_step_schedule() -> None:
    opt = make_optimizer("adam", 0.01, schedule="step", epochs=10, steps_per_epoch=7)
    assert isinstance(opt.schedule, StepDecay)
    assert opt.schedule.at_step == decay_epoch(10) * 7 == 49
    assert opt.schedule.factor_after == STEP_FACTOR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "lbfgs"}, "optimizer must be one of adam, adamw, rmsprop, sgd, got 'lbfgs'"),
        ({"name": "adam", "momentum": 0.9}, "momentum applies to sgd and rmsprop, not adam"),
        ({"schedule": "cosine"}, "schedule must be one of step, constant"),
        ({"schedule": "step", "steps_per_epoch": 0}, "steps_per_epoch must be an integer >= 1"),
    ],
)
def test_make_optimizer_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_optimizer(**kwargs)


def test_decay_epoch() -> None:
    assert [decay_epoch(e) for e in (1, 2, 3, 4, 10, 12, 14)] == [1, 1, 2, 3, 7, 8, 10]
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        decay_epoch(0)
