"""One failing rank ends the whole job.

MPI collectives block until every rank arrives. A rank that raises and exits normally leaves
the others waiting in their next all-reduce forever (MPICH does not end them), so a failure on
any rank must become ``MPI_Abort``, which has the launcher kill every rank of the job and
return a non-zero status.

What happens when a rank is killed by a signal (SIGKILL from the OOM killer, a node crash):
the rank runs no Python code, so nothing here can act. MPICH's Hydra (``mpiexec``) and Open
MPI's ``mpirun`` notice the dead process and kill the rest of the job, reporting the signal
("BAD TERMINATION ... KILLED BY SIGNAL: 9") with a non-zero status; ``srun`` does the same
with ``--kill-on-bad-exit``. Files are never left half-written either way: only rank 0
writes, and every write goes to a temporary file that is renamed over the target.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from types import TracebackType

from .communicator import Communicator

__all__ = ["abort_on_error", "install_excepthook", "report_and_abort"]


def report_and_abort(comm: Communicator, exc: BaseException, code: int) -> None:
    """Print which rank failed and ``exc``'s traceback, then end every rank (no return)."""
    print(
        f"xpnet.distributed: rank {comm.rank} of {comm.size} failed; aborting the job",
        file=sys.stderr,
    )
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    comm.abort(code)


@contextlib.contextmanager
def abort_on_error(comm: Communicator, code: int = 1) -> Iterator[Communicator]:
    """Run a block; if it raises on any rank, print the error and abort every rank.

    A size-1 communicator lets the exception propagate unchanged (nobody else is waiting).
    ``SystemExit`` with status 0 passes through; any other exit status aborts too, since the
    other ranks would still be waiting in a collective.

    Examples
    --------
    >>> from xpnet import distributed
    >>> comm = distributed.init()
    >>> with distributed.abort_on_error(comm):
    ...     pass  # model.fit(X, y, communicator=comm)
    """
    try:
        yield comm
    except SystemExit as exc:
        if comm.size == 1 or exc.code in (0, None):
            raise
        status = exc.code if isinstance(exc.code, int) else code
        print(f"xpnet.distributed: rank {comm.rank} exited with {exc.code!r}", file=sys.stderr)
        comm.abort(status or code)
    except BaseException as exc:
        if comm.size == 1:
            raise
        report_and_abort(comm, exc, 130 if isinstance(exc, KeyboardInterrupt) else code)


def install_excepthook(comm: Communicator, code: int = 1) -> None:
    """Make an exception that reaches the top level of any rank abort the whole job.

    For scripts that do not wrap their work in :func:`abort_on_error`; a no-op for a size-1
    communicator.
    """
    if comm.size == 1:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            previous(kind, exc, tb)
        finally:
            print(
                f"xpnet.distributed: rank {comm.rank} of {comm.size} failed; aborting the job",
                file=sys.stderr,
            )
            comm.abort(code)

    sys.excepthook = hook
