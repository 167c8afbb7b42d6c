"""``xpnet check``: prove a backend against NumPy (logic in :mod:`xpnet.diagnostics`)."""

from __future__ import annotations

import argparse

from ..diagnostics import format_check, run_check
from .arguments import positive_int
from .common import Command, check_output_parent, write_json_atomic

__all__ = ["COMMAND"]


def _add_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument(
        "--steps", type=positive_int, default=20, metavar="N", help="Adam steps (default: 20)"
    )
    check.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")


def _run(args: argparse.Namespace) -> int:
    check_output_parent("--json", args.json)
    report = run_check(args.backend, steps=args.steps)
    print(format_check(report), flush=True)
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    return 0 if report.agree else 1


COMMAND = Command(
    name="check",
    help="prove a backend: train on NumPy and on it, compare loss, gradients and weights",
    description="Train a small MLP (with dropout) from one seed on NumPy and on --backend "
    "(default: every available backend but NumPy) in float64 and float32, and print per "
    "dtype the largest relative difference in loss, gradients and weights after --steps "
    "Adam steps against the tolerance (float64 1e-10; float32 1e-4; 1e-2 with TF32), then "
    "'agree' or 'DISAGREE', and the training speed beside NumPy's. Exit status 0 when all "
    "agree, 1 otherwise or when the backend cannot run here.",
    add_arguments=_add_arguments,
    run=_run,
)
