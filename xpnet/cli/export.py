"""``xpnet export MODEL OUT.onnx``: a saved model as an ONNX file (logic in :mod:`xpnet.onnx`)."""

from __future__ import annotations

import argparse

from ..onnx import DEFAULT_OPSET, export_command
from .arguments import positive_int
from .common import Command

__all__ = ["COMMAND"]


def _add_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("model", metavar="MODEL", help="a model file saved by --save")
    export.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    export.add_argument(
        "--opset",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"ONNX operator set version to write (default: {DEFAULT_OPSET})",
    )


def _run(args: argparse.Namespace) -> int:
    return export_command(args.model, args.out, opset=args.opset, backend=args.backend)


COMMAND = Command(
    name="export",
    help="export a saved model to ONNX",
    description="Write a model saved with 'xpnet train --save' as an ONNX file (input "
    "'input' [N, n_features], output 'output' [N, n_outputs], the model's dtype) to serve "
    "with onnxruntime. Needs the onnx package: pip install 'xpnet[onnx]'.",
    add_arguments=_add_arguments,
    run=_run,
)
