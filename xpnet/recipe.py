"""The training recipe of ``xpnet train``: defaults, learning rates, the step schedule, the
model and the optimizer.

The command line and ``examples/train_mnist.py`` both train through these functions, so a
change to the recommended settings is made here once.

>>> from xpnet.recipe import DEFAULTS, build_model, make_optimizer
>>> model = build_model(64, 10, hidden=(32,), dropout=0.0, seed=0)
>>> [layer.kind for layer in model.layers]
['Dense', 'ReLU', 'Dense']
>>> opt = make_optimizer("sgd")
>>> type(opt).__name__, opt.base_lr, opt.momentum
('SGD', 0.05, 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .layers import GELU, BatchNorm, Dense, Dropout, LayerNorm, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from .layers.base import Layer
from .model import Sequential
from .optimizers import OPTIMIZERS, Optimizer
from .schedules import StepDecay
from .validation import check_choice, check_number, check_positive_int

__all__ = [
    "DEFAULTS",
    "DEFAULT_LR",
    "DEFAULT_MOMENTUM",
    "HIDDEN_ACTIVATIONS",
    "LR_SCHEDULES",
    "NORMS",
    "STEP_AT",
    "STEP_FACTOR",
    "build_model",
    "decay_epoch",
    "make_optimizer",
]

#: The defaults of ``xpnet train``, measured to reach >= 98% MNIST test accuracy on the NumPy
#: backend in about a minute on a 2-core machine.
DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "hidden": (512, 256),
    "activation": "relu",
    "dropout": 0.2,
    "optimizer": "adam",
    "lr_schedule": "step",
    "batch_size": 128,
    "epochs": 12,
    "val_split": 0.1,
    "seed": 0,
}

#: Learning rate when none is given, per optimizer.
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "sgd": 0.05}
#: Momentum when none is given (only SGD and RMSProp take one).
DEFAULT_MOMENTUM = {"sgd": 0.9, "rmsprop": 0.0}

#: The activations :func:`build_model` puts after each hidden layer.
HIDDEN_ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "gelu": GELU,
    "silu": SiLU,
}
#: ``--norm``: the normalisation :func:`build_model` puts after each hidden Dense layer,
#: before its activation (``"none"``: no layer).
NORMS: dict[str, type[BatchNorm] | type[LayerNorm] | None] = {
    "none": None,
    "batch": BatchNorm,
    "layer": LayerNorm,
}
#: ``step``: the full rate, then a tenth of it from :func:`decay_epoch` on; ``constant``.
LR_SCHEDULES = ("step", "constant")

#: With the step schedule, the share of the epochs trained at the full rate; the rest use
#: ``STEP_FACTOR`` times it. Measured on MNIST: a final low-rate phase settles the weights that
#: constant Adam keeps shaking (about +0.2 to +0.4 points of test accuracy for the default
#: network).
STEP_AT = 0.7
STEP_FACTOR = 0.1


def decay_epoch(epochs: int) -> int:
    """The first epoch (0-based) trained at the reduced rate under the step schedule.

    >>> [decay_epoch(e) for e in (1, 2, 10)]
    [1, 1, 7]
    """
    epochs = check_positive_int("epochs", epochs)
    return max(1, round(STEP_AT * epochs)) if epochs > 1 else epochs


def build_model(
    n_inputs: int,
    n_classes: int,
    hidden: Sequence[int] = DEFAULTS["hidden"],
    activation: str = DEFAULTS["activation"],
    dropout: float = DEFAULTS["dropout"],
    dtype: str = "float32",
    seed: int | None = DEFAULTS["seed"],
    norm: str = "none",
) -> Sequential:
    """The recipe's MLP: per hidden layer Dense, the normalisation (if ``norm`` is not
    ``"none"``), the activation and (if ``dropout > 0``) Dropout, then a Dense layer of
    ``n_classes`` logits.

    Parameters
    ----------
    n_inputs, n_classes : int
        Input features and output classes.
    hidden : sequence of int, optional
        Hidden layer widths; empty for a linear classifier.
    activation : str, optional
        One of :data:`HIDDEN_ACTIVATIONS`.
    dropout : float, optional
        Dropout rate in [0, 1) after each hidden activation.
    dtype : str, optional
        ``"float32"`` or ``"float64"``.
    seed : int or None, optional
        Seed of the weights and dropout masks.
    norm : {"none", "batch", "layer"}, optional
        :class:`~xpnet.layers.BatchNorm` or :class:`~xpnet.layers.LayerNorm` after each
        hidden Dense layer, before the activation (see :data:`NORMS`).

    Returns
    -------
    Sequential
        An unfitted model on the current backend.
    """
    act = HIDDEN_ACTIVATIONS[check_choice("activation", activation, HIDDEN_ACTIVATIONS)]
    norm_layer = NORMS[check_choice("norm", norm, NORMS)]
    dropout = check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
    layers: list[Layer] = []
    width = check_positive_int("n_inputs", n_inputs)
    for h in hidden:
        h = check_positive_int("hidden layer width", h)
        layers.append(Dense(width, h))
        if norm_layer is not None:
            layers.append(norm_layer(h))
        layers.append(act())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Dense(width, check_positive_int("n_classes", n_classes)))
    return Sequential(layers, dtype=dtype, seed=seed)


def make_optimizer(
    name: str = DEFAULTS["optimizer"],
    lr: float | None = None,
    momentum: float | None = None,
    schedule: str = "constant",
    epochs: int = 1,
    steps_per_epoch: int = 1,
    clip_norm: float | None = None,
) -> Optimizer:
    """The recipe's optimizer: ``name`` with :data:`DEFAULT_LR` and :data:`DEFAULT_MOMENTUM`
    where ``lr`` or ``momentum`` is None.

    Parameters
    ----------
    name : str, optional
        ``adam``, ``adamw``, ``rmsprop`` or ``sgd``.
    lr, momentum : float or None, optional
        Override the defaults; ``momentum`` only for ``sgd`` and ``rmsprop``.
    schedule : str, optional
        ``"step"``: the full rate for the first :func:`decay_epoch` epochs of ``epochs``, then
        ``STEP_FACTOR`` times it; ``"constant"``: the full rate throughout.
    epochs, steps_per_epoch : int, optional
        The length of the run, which places the step (updates per epoch: ``ceil(n / batch)``).
    clip_norm : float or None, optional
        Clip the gradients to this global L2 norm before each update (see
        :mod:`xpnet.clipping`); None: no clipping.

    Returns
    -------
    Optimizer
    """
    name = check_choice("optimizer", name, sorted(DEFAULT_LR))
    schedule = check_choice("schedule", schedule, LR_SCHEDULES)
    kwargs: dict[str, Any] = {"lr": DEFAULT_LR[name] if lr is None else lr}
    if clip_norm is not None:
        kwargs["clip_norm"] = clip_norm
    if name in DEFAULT_MOMENTUM:
        kwargs["momentum"] = DEFAULT_MOMENTUM[name] if momentum is None else momentum
    elif momentum is not None:
        raise ValueError(f"xpnet: momentum applies to {' and '.join(DEFAULT_MOMENTUM)}, not {name}")
    if schedule == "step":
        per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        kwargs["schedule"] = StepDecay(decay_epoch(epochs) * per_epoch, STEP_FACTOR)
    optimizer: Optimizer = OPTIMIZERS[name](**kwargs)
    return optimizer
