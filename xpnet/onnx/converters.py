"""One converter per layer kind: how a layer is written as ONNX operators.

A converter receives the layer, the :class:`~xpnet.onnx.GraphBuilder` and the name of
the layer's input tensor, adds the nodes (and initializers) that compute the layer's
inference forward, and returns the name of its output tensor. Supporting a new layer kind is
one function decorated with :func:`register_converter`.

Weights are read through the public layer interface (:meth:`~xpnet.layers.Layer.parameters`
and :meth:`~xpnet.layers.Layer.buffers`) and copied to the host with
:func:`xpnet.to_numpy`, so a model on any backend exports the same file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import to_numpy
from ..layers import Dense, Dropout, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from ..layers.activations import DEFAULT_LEAKY_ALPHA

if TYPE_CHECKING:
    from ..layers import Layer
    from ._graph import GraphBuilder

__all__ = ["CONVERTERS", "Converter", "register_converter"]

#: ``converter(layer, graph, x) -> output name``.
Converter = Callable[[Any, "GraphBuilder", str], str]

#: The registered converters, by :attr:`Layer.kind <xpnet.layers.Layer.kind>`.
CONVERTERS: dict[str, Converter] = {}


def register_converter(kind: str) -> Callable[[Converter], Converter]:
    """Decorator registering ``converter`` as the ONNX form of layers of ``kind``."""

    def register(converter: Converter) -> Converter:
        CONVERTERS[kind] = converter
        return converter

    return register


def parameters_of(layer: Layer) -> dict[str, np.ndarray]:
    """The layer's parameters as host arrays, by parameter name (``{"W": ..., "b": ...}``)."""
    return {p.name: to_numpy(p.data) for p in layer.parameters()}


def activation(graph: GraphBuilder, x: str, name: str, alpha: float = 0.0) -> str:
    """The activation called ``name`` in :mod:`xpnet.layers.activations` applied to ``x``."""
    if name == "relu":
        return graph.node("Relu", [x])
    if name == "leaky_relu":
        if graph.dtype == "float32":
            return graph.node("LeakyRelu", [x], alpha=float(alpha))
        # onnxruntime has no double LeakyRelu kernel (and the attribute is a float32, which
        # would round alpha); for 0 <= alpha < 1, max(x, alpha x) is the same function.
        scaled = graph.node("Mul", [x, graph.constant(np.asarray(alpha), "alpha")])
        return graph.node("Max", [x, scaled])
    if name == "sigmoid":
        return graph.node("Sigmoid", [x])
    if name == "tanh":
        return graph.node("Tanh", [x])
    if name == "softmax":
        # Opset >= 13 semantics: normalise along the one axis given (the features).
        return graph.node("Softmax", [x], axis=-1)
    raise ValueError(f"xpnet: activation {name!r} has no ONNX form")


@register_converter(Dense.kind)
def dense(layer: Dense, graph: GraphBuilder, x: str) -> str:
    """``Gemm(x, W, b)``, then the ``activation=`` shorthand's activation."""
    params = parameters_of(layer)
    y = graph.node("Gemm", [x, graph.constant(params["W"], "W"), graph.constant(params["b"], "b")])
    if layer.activation is None:
        return y
    alpha = DEFAULT_LEAKY_ALPHA if layer.activation == "leaky_relu" else 0.0
    return activation(graph, y, layer.activation, alpha)


@register_converter(ReLU.kind)
@register_converter(LeakyReLU.kind)
@register_converter(Sigmoid.kind)
@register_converter(Tanh.kind)
@register_converter(Softmax.kind)
def activation_layer(layer: Any, graph: GraphBuilder, x: str) -> str:
    """The activation layers: one operator each (see :func:`activation`)."""
    return activation(graph, x, layer.name, layer.alpha)


@register_converter(Dropout.kind)
def dropout(layer: Dropout, graph: GraphBuilder, x: str) -> str:
    """Dropout is the identity at inference: no operator at all."""
    return x
