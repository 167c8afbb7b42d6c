"""Layers: :class:`Dense`, the activations, :class:`Softmax`, :class:`Dropout`,
:class:`BatchNorm` and :class:`LayerNorm`."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from .activations import ACTIVATIONS, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm, LayerNorm

__all__ = [
    "GELU",
    "LAYER_TYPES",
    "BatchNorm",
    "Dense",
    "Dropout",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "layer_config",
    "layer_from_config",
    "layers_from_config",
    "register_layer",
]

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (
        Dense,
        ReLU,
        LeakyReLU,
        Sigmoid,
        Tanh,
        Softmax,
        Dropout,
        GELU,
        SiLU,
        BatchNorm,
        LayerNorm,
    )
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


def layer_config(layer: Layer, index: int | None = None) -> dict[str, Any]:
    """``{"kind": ..., "config": {...}}`` for a registered layer, in plain JSON types (a copy).

    ``index`` (the layer's position in a model) only makes error messages precise.

    Raises
    ------
    ValueError
        If the layer's class is not registered under its ``kind`` or its config is not JSON.
    """
    where = "layer" if index is None else f"layer {index}"
    if LAYER_TYPES.get(layer.kind) is not type(layer):
        raise ValueError(
            f"xpnet: {where} ({type(layer).__name__}) is not a registered layer type; "
            f"a model's config can hold: {', '.join(LAYER_TYPES)} (see register_layer)"
        )
    try:
        # The round trip also copies, so nobody changes the layer through the result.
        config = json.loads(json.dumps(layer.config(), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"xpnet: {where} config is not JSON-serialisable: {exc}") from exc
    return {"kind": layer.kind, "config": config}


def layers_from_config(entries: Any) -> list[Layer]:
    """Unbuilt layers from a list of :func:`layer_config` entries.

    Raises
    ------
    ValueError
        If ``entries`` is not such a list, names an unknown kind, or gives a layer arguments
        it does not take.
    """
    if not isinstance(entries, list):
        raise ValueError(f"xpnet: a model config's 'layers' must be a list, got {entries!r}")
    layers = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"kind", "config"}:
            raise ValueError(
                f"xpnet: layer {i} of a model config must be a dict with keys 'kind' and "
                f"'config', got {entry!r}"
            )
        if not isinstance(entry["kind"], str) or not isinstance(entry["config"], dict):
            raise ValueError(f"xpnet: layer {i} of a model config: {entry!r} is malformed")
        try:
            layers.append(layer_from_config(entry["kind"], entry["config"]))
        except TypeError as exc:
            raise ValueError(f"xpnet: layer {i} ({entry['kind']}): {exc}") from exc
    return layers
