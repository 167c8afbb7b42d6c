"""Layers: :class:`Dense`, the activations, :class:`Softmax` and :class:`Dropout`."""

from __future__ import annotations

from typing import Any, TypeVar

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
    "register_layer",
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


_L = TypeVar("_L", bound=type[Layer])


def register_layer(cls: _L) -> _L:
    """Make a Layer subclass known by its ``kind``, so models holding it can be saved and loaded.

    Usable as a class decorator; returns ``cls``. Its ``config()`` must return the keyword
    arguments of its constructor, as JSON scalars.

    Raises
    ------
    TypeError
        If ``cls`` is not a Layer subclass.
    ValueError
        If another class is already registered under ``cls.kind``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls is Layer:
        raise TypeError(f"xpnet: register_layer expects a Layer subclass, got {cls!r}")
    known = LAYER_TYPES.get(cls.kind)
    if known is not None and known is not cls:
        raise ValueError(
            f"xpnet: layer kind {cls.kind!r} is already registered to {known.__qualname__}; "
            "give the new class its own kind"
        )
    LAYER_TYPES[cls.kind] = cls
    return cls
