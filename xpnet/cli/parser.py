"""The ``xpnet`` argument parser, built from the registered commands.

Adding a command is one module in ``xpnet/cli/`` that defines ``COMMAND``, a
:class:`~xpnet.cli.common.Command`, and one line in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib

from .._version import __version__
from .arguments import backend_name
from .common import Command

__all__ = ["COMMAND_MODULES", "build_parser", "commands"]

#: The modules of ``xpnet.cli`` that hold a command, in the order ``xpnet --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "evaluate",
    "predict",
    "info",
    "check",
    "export",
)


def commands() -> dict[str, Command]:
    """The registered commands by name."""
    found: dict[str, Command] = {}
    for module_name in COMMAND_MODULES:
        command = importlib.import_module(f"{__package__}.{module_name}").COMMAND
        if not isinstance(command, Command):
            raise TypeError(f"xpnet.cli.{module_name}.COMMAND must be a Command, got {command!r}")
        found[command.name] = command
    return found


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--backend",
        type=backend_name,
        default=None,
        metavar="{numpy,cupy,array_api_strict}",
        help="array backend (default: $XPNET_BACKEND, else numpy)",
    )
    common.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    return common


def _data_options() -> argparse.ArgumentParser:
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="where MNIST-format files live, in DIR/mnist/ and DIR/fashion-mnist/ "
        "(default: $XPNET_DATA_DIR, else ~/.cache/xpnet)",
    )
    data.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading missing MNIST / Fashion-MNIST files",
    )
    return data


def build_parser() -> argparse.ArgumentParser:
    """The ``xpnet`` argument parser, one sub-command per entry of :data:`COMMAND_MODULES`.

    The parsed namespace carries ``command`` (the name), ``run_command`` (the
    :class:`~xpnet.cli.common.Command`) and ``subparser`` (its parser, for usage errors).
    """
    parser = argparse.ArgumentParser(
        prog="xpnet",
        description="Train and use fully-connected networks on NumPy or CuPy.",
        epilog="Run 'xpnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common, data = _common_options(), _data_options()
    for command in commands().values():
        sub = subparsers.add_parser(
            command.name,
            parents=[common, data] if command.data_options else [common],
            help=command.help,
            description=command.description,
        )
        command.add_arguments(sub)
        # The sub-parser is kept so that errors between options get its usage line.
        sub.set_defaults(run_command=command, subparser=sub)
    return parser
