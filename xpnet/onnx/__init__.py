"""Export a model to ONNX, to serve it with onnxruntime or any other ONNX runtime.

The exported graph has one input ``input`` of shape ``[N, n_features]`` and one output
``output`` of shape ``[N, n_outputs]``, both in the model's dtype (float32 or float64), with
a dynamic batch size ``N``; ``output`` is ``model.forward(X, training=False)``, so a model
ending in a linear layer exports logits and one ending in :class:`~xpnet.layers.Softmax`
exports probabilities. Each layer kind is written by one converter function (see
:mod:`xpnet.onnx.converters`). Needs the optional ``onnx`` package
(``pip install 'xpnet[onnx]'``), imported only when a model is exported.

Examples
--------
>>> import numpy as np, xpnet
>>> from xpnet.layers import Dense
>>> from xpnet.onnx import export
>>> model = xpnet.Sequential([Dense(4, 8, activation="relu"), Dense(8, 3)], seed=0)
>>> path = export(model, "model.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..io_utils import atomic_write
from ._graph import GraphBuilder
from .converters import CONVERTERS, register_converter

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = [
    "CONVERTERS",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "GraphBuilder",
    "build_onnx_model",
    "export",
    "export_command",
    "register_converter",
]

#: Opset written when none is asked for: old enough for every onnxruntime since 1.12, new
#: enough for LayerNormalization.
DEFAULT_OPSET = 17
#: Oldest opset accepted: Softmax normalises along a single axis only from opset 13 on.
MIN_OPSET = 13

_TENSOR_TYPES = {"float32": "FLOAT", "float64": "DOUBLE"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "xpnet: exporting to ONNX needs the onnx package: pip install 'xpnet[onnx]'"
        ) from exc
    return onnx


def _check_opset(opset: Any, newest: int) -> int:
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ValueError(f"xpnet: opset must be an integer or None, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"xpnet: opset must be between {MIN_OPSET} and {newest} (the newest the installed "
            f"onnx package knows), got {opset}"
        )
    return opset


def _check_exportable(model: Sequential) -> None:
    if not model.layers:
        raise ValueError("xpnet: cannot export a model with no layers")
    missing = [
        f"layer {i} ({layer.kind})"
        for i, layer in enumerate(model.layers)
        if layer.kind not in CONVERTERS
    ]
    if missing:
        raise ValueError(
            f"xpnet: cannot export to ONNX: {', '.join(missing)} has no ONNX form; "
            f"exportable layer kinds are: {', '.join(sorted(CONVERTERS))}"
        )


def build_onnx_model(model: Sequential, opset: int | None = None) -> Any:
    """The model as an ``onnx.ModelProto``, checked but not written (see :func:`export`)."""
    from ..model import Sequential

    onnx = _import_onnx()
    if not isinstance(model, Sequential):
        raise TypeError(f"xpnet: export expects a Sequential model, got {type(model).__name__}")
    _check_exportable(model)
    opset = _check_opset(opset, onnx.defs.onnx_opset_version())
    model.parameters()  # draws the weights of a model that was never used

    graph = GraphBuilder(onnx, model.dtype, opset)
    x = "input"
    for i, layer in enumerate(model.layers):
        graph.prefix = f"layers.{i}"
        x = CONVERTERS[layer.kind](layer, graph, x)
    graph.finish(x)

    helper = onnx.helper
    elem = getattr(onnx.TensorProto, _TENSOR_TYPES[model.dtype])
    n_in = model.n_features_in
    # Without a Dense layer every layer keeps the width, so output and input share one.
    n_out = model.n_outputs if n_in is not None else None
    g = helper.make_graph(
        graph.nodes,
        "xpnet",
        [helper.make_tensor_value_info("input", elem, ["N", n_in or "n_features"])],
        [helper.make_tensor_value_info("output", elem, ["N", n_out or "n_features"])],
        graph.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        g,
        opset_imports=opsets,
        producer_name="xpnet",
        producer_version=__version__,
        doc_string=repr(model),
    )
    # The oldest IR version that carries this opset, so older runtimes can load the file.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model: Sequential, path: str | os.PathLike[str], opset: int | None = None) -> Path:
    """Write ``model`` to ``path`` as an ONNX file, atomically.

    Parameters
    ----------
    model : Sequential
        The model; a model that was never used gets its initial weights first.
    path : str or PathLike
        The ``.onnx`` file to create or replace. Its directory must exist.
    opset : int, optional
        Version of the ONNX operator set to write, from :data:`MIN_OPSET` to the newest the
        installed ``onnx`` knows; default :data:`DEFAULT_OPSET`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the model has no layers, has a layer kind without an ONNX form, or ``opset`` is
        out of range.
    TypeError
        If ``model`` is not a :class:`~xpnet.Sequential` or ``path`` is not a path.
    ImportError
        If the ``onnx`` package is not installed.
    FileNotFoundError
        If the directory of ``path`` does not exist.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"xpnet: path must be a str or os.PathLike, got {type(path).__name__}")
    proto = build_onnx_model(model, opset)
    data = proto.SerializeToString()
    return atomic_write(path, lambda f: f.write(data))


def export_command(
    model_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    opset: int | None = None,
    backend: str | None = None,
) -> int:
    """``xpnet export MODEL OUT.onnx``: load a saved model, export it, print what was written.

    Failures raise (the command line prints them as one ``xpnet: error: ...`` line and exits
    with status 1); returns the exit status 0 on success.
    """
    from ..checkpoint import load_model

    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"xpnet: model file {model_path} does not exist")
    if out_path.exists() and out_path.resolve() == model_path.resolve():
        raise ValueError(f"xpnet: OUT must not be the model file itself ({model_path})")
    model = load_model(model_path, backend=backend)
    proto = build_onnx_model(model, opset)
    data = proto.SerializeToString()
    atomic_write(out_path, lambda f: f.write(data))
    n_in = model.n_features_in or "n_features"
    n_out = model.n_outputs or n_in
    print(
        f"wrote {out_path} (ONNX opset {proto.opset_import[0].version}, {model.dtype}, "
        f"input [N, {n_in}] -> output [N, {n_out}])"
    )
    return 0
