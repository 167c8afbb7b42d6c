"""The ``xpnet`` command line: ``train``, ``evaluate MODEL`` and ``predict MODEL FILE``.

The package holds the entry point (:func:`main`), the parser (:mod:`xpnet.cli.parser`) and one
module per command; the training recipe lives in :mod:`xpnet.recipe` and the data set and
image reading in :mod:`xpnet.datasets`, which scale every input to [0, 1] the same way for
``train``, ``evaluate`` and ``predict``.

Exit codes: 0 success, 1 a runtime failure (one ``xpnet: error: ...`` line on stderr; the
traceback with ``--debug``), 2 bad options (argparse's usage line), 130 interrupted, 141 when
the reader of standard output went away (``xpnet evaluate m.xpnet | head -3``), quietly, as
a program stopped by SIGPIPE would.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from ..backend import use_backend
from ..datasets.catalog import (
    TEST_FRACTION,
    TEST_SPLIT_SEED,
    Dataset,
    DatasetSpec,
    load_dataset,
)
from ..datasets.images import read_inputs
from ..datasets.preprocessing import scale_pixels
from ..errors import XpnetError
from ..recipe import (
    DEFAULT_LR,
    DEFAULT_MOMENTUM,
    DEFAULTS,
    STEP_AT,
    STEP_FACTOR,
    build_model,
    decay_epoch,
)
from .common import Command, CommandError, write_json_atomic
from .parser import build_parser

__all__ = [
    "DEFAULTS",
    "DEFAULT_LR",
    "DEFAULT_MOMENTUM",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "STEP_AT",
    "STEP_FACTOR",
    "TEST_FRACTION",
    "TEST_SPLIT_SEED",
    "Command",
    "CommandError",
    "Dataset",
    "DatasetSpec",
    "build_model",
    "build_parser",
    "decay_epoch",
    "load_dataset",
    "main",
    "read_inputs",
    "scale_pixels",
    "write_json_atomic",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: what a shell reports for a program that a closed pipe stopped.
EXIT_BROKEN_PIPE = 141


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if text.startswith("xpnet: "):
        text = text[len("xpnet: ") :]
    return " ".join(text.split())


def _silence_stdout() -> None:
    """Point standard output at the null device, so that the interpreter's final flush of
    what is still buffered cannot fail again (the Python documentation's recipe for
    SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (a test's capture): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        command: Command = args.run_command
        if command.check is not None:
            command.check(args.subparser, args)
    except SystemExit as exc:  # --help, --version, and usage errors (status 2)
        if isinstance(exc.code, int):
            return exc.code
        return EXIT_OK if exc.code is None else EXIT_USAGE
    try:
        # A scoped switch, so that main() called in-process leaves the caller's backend alone.
        with use_backend(args.backend) if args.backend else contextlib.nullcontext():
            status = command.run(args)
        # A reader that went away shows here, inside the handler below, rather than in the
        # interpreter's flush at exit.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # `xpnet ... | head` is a normal way to stop reading: end quietly, as git does.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("xpnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        known = isinstance(exc, (XpnetError, ValueError, OSError, ImportError))
        message = _one_line(exc)
        if not known:
            message = f"{type(exc).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"xpnet: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
