"""The gradient all-reduce of ranks on one machine, through an MPI-3 shared-memory window.

``MPI.Allreduce`` on one machine moves every rank's buffer through the MPI library's own
shared-memory cells: a copy in, the sums, a copy out. When the flat gradient buffer itself
lives in a shared window (``MPI.Win.Allocate_shared``), the backward pass writes the
gradients where every rank can read them, and the all-reduce is: each rank sums one
contiguous chunk over all ranks' buffers into its own, then copies every other chunk from its
owner. Each chunk is summed once, by one rank, so all ranks hold the same bits; with two ranks
a chunk is ``a + b``, the bits ``MPI.Allreduce`` gives. Measured on the 2-core machine
(2.14 MB of float32, 2 ranks, `benchmarks/bench_distributed.py --worker-allreduce`): see
``docs/distributed.md``.

It is a fast path of :meth:`xpnet.distributed.DataParallel.allreduce_gradients`, used when all
ranks share one machine, the backend is NumPy and the window fits in ``/dev/shm``; otherwise
the gradients go through ``MPI.Allreduce``. ``XPNET_SHARED_MEMORY_ALLREDUCE=0`` turns it off.
The ranks decide together (a rank that cannot take the path sends all of them through MPI),
since a rank in the window's barrier and one in ``MPI_Allreduce`` would wait for each other
forever.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["SharedMemoryAllreducer", "shared_memory_wanted"]

# Room left in /dev/shm beyond the windows: MPICH keeps its own cells there (about 2 MiB for
# two ranks), and a tmpfs that fills up ends the process that touches the next page with
# SIGBUS instead of an error. Small enough for Docker's default 64 MiB /dev/shm.
_SHM_MARGIN = 16 << 20
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def shared_memory_wanted(environ: Any = None) -> bool:
    """Whether ``XPNET_SHARED_MEMORY_ALLREDUCE`` leaves the shared-memory path on (default)."""
    value = (environ if environ is not None else os.environ).get(
        "XPNET_SHARED_MEMORY_ALLREDUCE", "1"
    )
    value = value.strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(
        f"xpnet: XPNET_SHARED_MEMORY_ALLREDUCE must be 0 or 1 (or true/false), got {value!r}"
    )


def _room_in_dev_shm(needed: int) -> bool:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:  # no /dev/shm: MPI places its windows elsewhere, with no tmpfs to fill
        return True
    return st.f_bavail * st.f_frsize >= needed + _SHM_MARGIN


class SharedMemoryAllreducer:
    """One shared window of ``size`` elements per rank of a machine, and its in-place sum.

    Create it with :meth:`create` (collective over the ranks); :attr:`buffer` is this rank's
    part of the window, the array whose sum :meth:`allreduce` computes in place.

    Parameters
    ----------
    node : mpi4py.MPI.Comm
        The ranks of this machine (all ranks of the job).
    win : mpi4py.MPI.Win
        The window, in a passive-target epoch (``Lock_all``) for its whole life.
    views : list of numpy.ndarray
        Every rank's part of the window, in rank order.
    """

    def __init__(self, node: Any, win: Any, views: list[np.ndarray]) -> None:
        self.node, self.win, self.views = node, win, views
        self.rank = int(node.Get_rank())
        n, size = int(views[0].shape[0]), len(views)
        self.bounds = [r * n // size for r in range(size + 1)]
        #: Set while a fit's gradients live in the window (a nested fit then uses MPI).
        self.in_use = False

    @property
    def buffer(self) -> np.ndarray:
        """This rank's buffer: write the values to sum here."""
        return self.views[self.rank]

    @staticmethod
    def supports(size: int, dtype: Any) -> bool:
        """Whether a buffer of ``size`` elements of ``dtype`` can take this path."""
        return size >= 1 and np.dtype(dtype) in _DTYPES

    @classmethod
    def create(cls, mpi_comm: Any, size: int, dtype: Any) -> SharedMemoryAllreducer | None:
        """A window of ``size`` elements of ``dtype`` per rank (see :meth:`supports`), or
        None when the ranks span machines or ``/dev/shm`` lacks the room.

        Collective over ``mpi_comm``: every rank calls it with the same arguments and gets
        the same answer.
        """
        dtype = np.dtype(dtype)
        if not cls.supports(size, dtype):
            raise ValueError(
                f"xpnet: a shared-memory all-reduce needs at least one float32 or float64 "
                f"element, got {size} of {dtype}"
            )
        from mpi4py import MPI

        node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=mpi_comm.Get_rank())
        if node.Get_size() != mpi_comm.Get_size():
            # Several machines: a two-level all-reduce would be needed; MPI's covers it.
            node.Free()
            return None
        # One rank decides, so that a /dev/shm filling up between the ranks' checks cannot
        # send them different ways (one into the window, one waiting in MPI_Allreduce).
        room = np.array([_room_in_dev_shm(size * dtype.itemsize * node.Get_size())], np.int8)
        node.Bcast(room, root=0)  # a buffer, not the pickling bcast: nothing is unpickled
        if not room[0]:
            node.Free()
            return None
        info = MPI.Info.Create()
        # Each rank's part on its own pages: no cache line shared between two ranks' parts.
        info.Set("alloc_shared_noncontig", "true")
        win = MPI.Win.Allocate_shared(size * dtype.itemsize, dtype.itemsize, info=info, comm=node)
        info.Free()
        win.Lock_all(MPI.MODE_NOCHECK)
        views = []
        for r in range(node.Get_size()):
            memory: Any = win.Shared_query(r)[0]
            views.append(np.frombuffer(memory, dtype=dtype, count=size))
        return cls(node, win, views)

    def free(self) -> None:
        """Release the window (collective over its ranks; not while a fit uses it)."""
        self.win.Unlock_all()
        self.win.Free()
        self.node.Free()
        self.views = []

    def _fence(self) -> None:
        # Win_sync orders this rank's stores and loads around the barrier, as MPI's unified
        # memory model asks of direct loads and stores to a shared window.
        self.win.Sync()
        self.node.Barrier()
        self.win.Sync()

    def allreduce(self) -> np.ndarray:
        """Sum :attr:`buffer` over all ranks, in place, on every rank; return it."""
        lo, hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        mine = self.buffer
        self._fence()  # every rank's gradients written
        chunk = mine[lo:hi]
        for r, view in enumerate(self.views):
            if r != self.rank:
                np.add(chunk, view[lo:hi], out=chunk)
        self._fence()  # every chunk summed
        for r, view in enumerate(self.views):
            if r != self.rank:
                a, b = self.bounds[r], self.bounds[r + 1]
                mine[a:b] = view[a:b]
        # No rank may write its next gradients before the others have copied its chunk.
        self._fence()
        return mine
