"""Helpers of the estimators: output activations, sample weights, pickled networks."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.arrays import buffer_arrays, restore_buffers
from ..model import Sequential
from ._training import optimizer_class

__all__ = [
    "check_sample_weight",
    "model_from_plain",
    "model_to_plain",
    "output_activation",
    "with_weights",
]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def output_activation(name: str, z: np.ndarray) -> np.ndarray:
    """scikit-learn's output activation on host logits (dtype kept)."""
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "logistic":
        return _sigmoid(z)
    if name == "exp":
        return np.exp(z)
    return z


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"xpnet: sample_weight must have shape ({n},), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("xpnet: sample_weight must hold finite, non-negative numbers")
    if not w.any():
        raise ValueError(
            "xpnet: Sample weights must contain at least one non-zero number; got all zeros"
        )
    return w


def with_weights(targets: np.ndarray, sw: np.ndarray | None) -> np.ndarray:
    if sw is None:
        return targets
    t = targets.reshape(len(targets), -1).astype(np.float64)
    return np.column_stack([t, sw])


def model_to_plain(model: Sequential) -> dict[str, Any]:
    """Everything needed to rebuild ``model``, as plain Python and NumPy values."""
    params = model.parameters()
    opt = model.optimizer
    return {
        "config": model.get_config(),
        "seed": model.seed,
        "backend": model.backend.name,
        "weights": model.get_weights(),
        "buffers": buffer_arrays(model),
        "optimizer": None if opt is None else opt.state_dict(params),
    }


def model_from_plain(plain: dict[str, Any]) -> Sequential:
    config = plain.get("config")
    if config is None:  # pickled by xpnet 0.1.0, before Sequential.get_config
        layers = [{"kind": kind, "config": conf} for kind, conf in plain["layers"]]
        config = {"dtype": plain["dtype"], "layers": layers}
    model = Sequential.from_config(config, backend=plain["backend"], seed=plain["seed"])
    model.set_weights(plain["weights"])
    restore_buffers(model, plain.get("buffers", {}))
    opt_state = plain["optimizer"]
    if opt_state is not None:
        opt = optimizer_class(opt_state["name"])(**opt_state["hyperparameters"])
        opt.load_state_dict(opt_state, model.parameters())
        model.optimizer = opt
    return model
