"""``xpnet info``: what this installation can run (logic in :mod:`xpnet.diagnostics`)."""

from __future__ import annotations

import argparse

from ..diagnostics import collect_info, format_info
from .common import Command, check_output_parent, write_json_atomic

__all__ = ["COMMAND"]


def _add_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")


def _run(args: argparse.Namespace) -> int:
    check_output_parent("--json", args.json)
    report = collect_info()
    print(format_info(report), flush=True)
    if args.json:
        write_json_atomic(args.json, report)
    return 0


COMMAND = Command(
    name="info",
    help="versions, backends, devices, kernels and BLAS of this installation",
    description="Report what this installation can run: versions (xpnet, Python, NumPy, "
    "array-api-compat, CuPy with its CUDA runtime and driver, the optional extras), every "
    "backend with 'available' or why not, its device and kernels, and the BLAS library "
    "with its threads. --backend is ignored: every backend is reported.",
    add_arguments=_add_arguments,
    run=_run,
)
