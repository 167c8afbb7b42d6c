"""Layers: :class:`Dense`, the activations, :class:`Softmax` and :class:`Dropout`."""

from __future__ import annotations

from typing import Any

from .activations import ACTIVATIONS, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout

__all__ = [
    "LAYER_TYPES",
    "Dense",
    "Dropout",
    "Layer",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "layer_from_config",
]

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Dense, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, Dropout)
}
assert set(ACTIVATIONS.values()) <= set(LAYER_TYPES.values())


def layer_from_config(kind: str, config: dict[str, Any]) -> Layer:
    """Rebuild an (unbuilt) layer from its ``kind`` and :meth:`Layer.config`."""
    if kind not in LAYER_TYPES:
        raise ValueError(
            f"xpnet: unknown layer type {kind!r}; valid types are: {', '.join(LAYER_TYPES)}"
        )
    return LAYER_TYPES[kind](**config)
