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
from ..kernels import special
from ..layers import (
    GELU,
    BatchNorm,
    Dense,
    Dropout,
    LayerNorm,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
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
    if name == "silu":
        return graph.node("Mul", [x, graph.node("Sigmoid", [x])])
    if name == "gelu_tanh":
        c = graph.constant
        x3 = graph.node("Mul", [graph.node("Mul", [x, x]), x])
        u = graph.node("Add", [x, graph.node("Mul", [c(np.asarray(0.044715), "cubic"), x3])])
        t = graph.node("Tanh", [graph.node("Mul", [c(np.asarray(np.sqrt(2 / np.pi)), "k"), u])])
        half_x = graph.node("Mul", [c(np.asarray(0.5), "half"), x])
        return graph.node("Mul", [half_x, graph.node("Add", [c(np.asarray(1.0), "one"), t])])
    if name == "gelu":
        return _gelu(graph, x)
    raise ValueError(f"xpnet: activation {name!r} has no ONNX form")


def _gelu(graph: GraphBuilder, x: str) -> str:
    """``x * Phi(x)`` with ``Phi(x) = erfc(-x / sqrt 2) / 2`` written out as xpnet computes it
    (Cody's rational approximations, :mod:`xpnet.kernels.special`). ONNX's Erf would be
    shorter, but onnxruntime has no double Erf kernel, and ``1 + erf`` loses the far negative
    tail that the erfc form keeps."""
    c = graph.constant
    t = graph.node("Mul", [x, c(np.asarray(-np.sqrt(0.5)), "minus_sqrt_half")])
    cdf = graph.node("Mul", [c(np.asarray(0.5), "half"), _erfc(graph, t)])
    return graph.node("Mul", [x, cdf])


def _poly(graph: GraphBuilder, z: str, lead: float, coeffs: Any, seed: str | None) -> str:
    """Cody's Horner loop: ``acc = lead z`` (or ``z``), then ``acc = (acc + c) z`` per c."""
    c = graph.constant
    acc = graph.node("Mul", [c(np.asarray(lead), "coef"), z]) if seed is None else z
    for coef in coeffs:
        acc = graph.node("Mul", [graph.node("Add", [acc, c(np.asarray(coef), "coef")]), z])
    return acc


def _erfc(graph: GraphBuilder, x: str) -> str:
    """:func:`xpnet.kernels.special.erfc` as ONNX operators, step for step (finite inputs)."""
    c, n, sp = graph.constant, graph.node, special
    y = n("Abs", [x])

    def clip(v: str, lo: float, hi: float) -> str:
        return n("Clip", [v, c(np.asarray(lo), "lo"), c(np.asarray(hi), "hi")])

    xs = clip(x, -sp._THRESH, sp._THRESH)
    z = n("Mul", [xs, xs])
    num = _poly(graph, z, sp._A[4], sp._A[:3], None)
    den = _poly(graph, z, 1.0, sp._B[:3], "z")
    small = n(
        "Div",
        [
            n("Mul", [xs, n("Add", [num, c(np.asarray(sp._A[3]), "a3")])]),
            n("Add", [den, c(np.asarray(sp._B[3]), "b3")]),
        ],
    )
    small = n("Sub", [c(np.asarray(1.0), "one"), small])

    mid = clip(y, sp._THRESH, 4.0)
    num = _poly(graph, mid, sp._C[8], sp._C[:7], None)
    den = _poly(graph, mid, 1.0, sp._D[:7], "mid")
    r_mid = n(
        "Div",
        [
            n("Add", [num, c(np.asarray(sp._C[7]), "c7")]),
            n("Add", [den, c(np.asarray(sp._D[7]), "d7")]),
        ],
    )

    big = clip(y, 4.0, sp._XBIG)
    zb = n("Div", [c(np.asarray(1.0), "one"), n("Mul", [big, big])])
    num = _poly(graph, zb, sp._P[5], sp._P[:4], None)
    den = _poly(graph, zb, 1.0, sp._Q[:4], "zb")
    ratio = n(
        "Div",
        [
            n("Add", [num, c(np.asarray(sp._P[4]), "p4")]),
            n("Add", [den, c(np.asarray(sp._Q[4]), "q4")]),
        ],
    )
    r_big = n("Div", [n("Sub", [c(np.asarray(sp._SQRPI), "sqrpi"), n("Mul", [zb, ratio])]), big])

    four = c(np.asarray(4.0), "four")
    r = n("Where", [n("Less", [four, y]), r_big, r_mid])
    yc = clip(y, sp._THRESH, sp._XBIG)
    sixteen = c(np.asarray(16.0), "sixteen")
    s16 = n("Div", [n("Floor", [n("Mul", [yc, sixteen])]), sixteen])  # y > 0: floor is trunc
    e1 = n("Exp", [n("Neg", [n("Mul", [s16, s16])])])
    e2 = n("Exp", [n("Neg", [n("Mul", [n("Sub", [yc, s16]), n("Add", [yc, s16])])])])
    tail = n("Mul", [r, n("Mul", [e1, e2])])
    zero = c(np.asarray(0.0), "zero")
    tail = n("Where", [n("Less", [y, c(np.asarray(sp._XBIG), "xbig")]), tail, zero])
    tail = n("Where", [n("Less", [x, zero]), n("Sub", [c(np.asarray(2.0), "two"), tail]), tail])
    thresh = c(np.asarray(sp._THRESH), "thresh")
    return n("Where", [n("Less", [thresh, y]), tail, small])


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
@register_converter(GELU.kind)
@register_converter(SiLU.kind)
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


@register_converter(BatchNorm.kind)
def batch_norm(layer: BatchNorm, graph: GraphBuilder, x: str) -> str:
    """Inference BatchNorm: ``(x - running_mean) * inv_std * weight + bias``, with
    ``inv_std = 1 / sqrt(running_var + eps)`` formed on the host as the kernels form it."""
    params = parameters_of(layer)
    buffers = {k: to_numpy(v) for k, v in layer.buffers().items()}
    var = buffers["running_var"].astype(graph.dtype)
    inv_std = 1.0 / np.sqrt(var + np.asarray(layer.eps, dtype=graph.dtype))
    centred = graph.node("Sub", [x, graph.constant(buffers["running_mean"], "running_mean")])
    xhat = graph.node("Mul", [centred, graph.constant(inv_std, "inv_std")])
    scaled = graph.node("Mul", [xhat, graph.constant(params["weight"], "weight")])
    return graph.node("Add", [scaled, graph.constant(params["bias"], "bias")])


@register_converter(LayerNorm.kind)
def layer_norm(layer: LayerNorm, graph: GraphBuilder, x: str) -> str:
    """LayerNorm with row means as products with a column of ``1 / features`` (the same in
    every opset, unlike ReduceMean's axes and LayerNormalization, which needs opset 17)."""
    params = parameters_of(layer)
    n = layer.num_features
    avg = graph.constant(np.full((n, 1), 1.0 / n), "row_mean")
    centred = graph.node("Sub", [x, graph.node("MatMul", [x, avg])])
    var = graph.node("MatMul", [graph.node("Mul", [centred, centred]), avg])
    eps = graph.constant(np.asarray(layer.eps), "eps")
    inv_std = graph.node("Reciprocal", [graph.node("Sqrt", [graph.node("Add", [var, eps])])])
    xhat = graph.node("Mul", [centred, inv_std])
    scaled = graph.node("Mul", [xhat, graph.constant(params["weight"], "weight")])
    return graph.node("Add", [scaled, graph.constant(params["bias"], "bias")])
