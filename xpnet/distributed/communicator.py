"""The communicator: which rank this process is, and the few collectives training needs.

Data-parallel training needs four collectives: an in-place sum of one flat gradient buffer
every step, a broadcast of the initial state from rank 0, a sum of a few metric numbers per
epoch, and an abort that ends every rank. :class:`Communicator` provides them over MPI
(``mpi4py``); arrays of the cupy backend are summed with NCCL (``cupy.cuda.nccl``) when it is
there, as ChainerMN's ``pure_nccl`` communicator does, and through host copies over MPI
otherwise. A process started without a launcher gets a size-1 communicator whose collectives
are identities, so the same script runs alone or under ``mpiexec``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any

import numpy as np

from ..backend import _backend_name_of, get_backend
from .shared_memory import SharedMemoryAllreducer, shared_memory_wanted

__all__ = ["Communicator", "init", "launcher_world_size"]

# Environment variables through which the common launchers announce the job's size: MPICH and
# Intel MPI (Hydra's PMI), Open MPI, PMIx-based launchers and Slurm's srun. Slurm's per-step
# count, not SLURM_NTASKS: a batch script itself runs alone inside an allocation of N tasks.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def launcher_world_size(environ: Any = None) -> int | None:
    """The number of ranks a launcher asked for, read from its environment, or None.

    A set rank variable without a size (PMIx sets ``PMIX_RANK`` but not always a size) counts
    as "launched, size unknown" and returns 0.
    """
    env = os.environ if environ is None else environ
    for var in _SIZE_VARS:
        value = env.get(var, "")
        if value.strip().isdigit():
            return int(value)
    if any(var in env for var in _RANK_VARS):
        return 0
    return None


class Communicator:
    """A group of ranks training one model together.

    Build it with :func:`init`. All collectives must be called by every rank, in the same
    order, with buffers of the same shape and dtype.

    Attributes
    ----------
    rank : int
        This process's index in ``0 .. size-1``; rank 0 is the one that prints and writes.
    size : int
        The number of ranks.
    local_rank : int
        This process's index among the ranks on its own machine (MPI's shared-memory split);
        on the cupy backend rank ``r`` uses GPU ``local_rank % device_count``.
    mpi_comm : mpi4py.MPI.Comm or None
        The MPI communicator (``MPI.COMM_WORLD``), None for a size-1 communicator without MPI.
    """

    def __init__(self, mpi_comm: Any = None) -> None:
        self.mpi_comm = mpi_comm
        self.rank = 0 if mpi_comm is None else int(mpi_comm.Get_rank())
        self.size = 1 if mpi_comm is None else int(mpi_comm.Get_size())
        self.local_rank = 0
        if mpi_comm is not None and self.size > 1:
            from mpi4py import MPI

            local = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            self.local_rank = int(local.Get_rank())
            local.Free()
        self._nccl: Any = None  # created on the first cupy collective
        self._warned_host_copies = False
        # The last shared-memory window, by (elements, dtype), kept for the next fit of that
        # size (None inside: the path does not apply to this job).
        self._shared: tuple[tuple[int, str], SharedMemoryAllreducer | None] | None = None

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the rank that prints, shows progress and writes files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    # ----------------------------------------------------------------- collectives
    def allreduce(self, buf: Any) -> Any:
        """Sum ``buf`` (one contiguous 1-D array) over all ranks, in place; return it.

        NumPy and array-api-strict buffers go through ``MPI.Allreduce(MPI.IN_PLACE, ...)``;
        cupy buffers through one NCCL all-reduce on the current stream (no host copy, no
        synchronisation), or through a host copy over MPI when NCCL is unavailable.
        """
        if self.size == 1:
            return buf
        kind = _backend_name_of(type(buf))
        if kind == "cupy":
            nccl = self._nccl_comm()
            if nccl is not None:
                nccl.allreduce(buf)
                return buf
            host = buf.get()
            self._mpi_allreduce(host)
            buf.set(host)
            return buf
        self._mpi_allreduce(_host_view(buf))
        return buf

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        """Overwrite ``buf`` on every rank with rank ``root``'s values, in place; return it."""
        if self.size == 1:
            return buf
        if _backend_name_of(type(buf)) == "cupy":
            nccl = self._nccl_comm()
            if nccl is not None:
                nccl.broadcast(buf, root)
                return buf
            host = buf.get()
            self.mpi_comm.Bcast(host, root=root)
            buf.set(host)
            return buf
        self.mpi_comm.Bcast(_host_view(buf), root=root)
        return buf

    def broadcast_bytes(self, data: bytes, root: int = 0) -> bytes:
        """Rank ``root``'s ``data`` on every rank (raw bytes: nothing is ever unpickled)."""
        if self.size == 1:
            return data
        n = np.array([len(data)], dtype=np.int64)
        self.mpi_comm.Bcast(n, root=root)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else None
        if buf is None:
            buf = np.empty(int(n[0]), dtype=np.uint8)
        self.mpi_comm.Bcast(buf, root=root)
        return buf.tobytes()

    def reduce_metrics(self, values: Any) -> np.ndarray:
        """The sum over ranks of a short host vector of numbers, as float64, on every rank.

        For per-epoch sums (loss times rows, correct predictions, row counts): the values are
        read back to the host, so keep this off the per-step path.
        """
        host = np.array([float(v) for v in values], dtype=np.float64)
        if self.size > 1:
            self._mpi_allreduce(host)
        return host

    def agree(self, values: Any) -> bool:
        """Whether every rank passed the same integers (a guard against mismatched arguments)."""
        local = np.asarray(values, dtype=np.int64)
        if self.size == 1:
            return True
        from mpi4py import MPI

        lo, hi = local.copy(), local.copy()
        self.mpi_comm.Allreduce(MPI.IN_PLACE, lo, op=MPI.MIN)
        self.mpi_comm.Allreduce(MPI.IN_PLACE, hi, op=MPI.MAX)
        return bool(np.array_equal(lo, hi))

    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        if self.size > 1:
            self.mpi_comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now with exit status ``code`` (does not return).

        ``MPI.COMM_WORLD.Abort`` has the launcher kill the other ranks, which would otherwise
        wait forever in their next collective; alone, the process just exits.
        """
        sys.stdout.flush()
        sys.stderr.flush()
        if self.mpi_comm is not None and self.size > 1:
            # The launcher forwards each rank's output through its own pipes and stops doing
            # so once the abort reaches it; a moment first lets the error message get out.
            time.sleep(0.5)
            self.mpi_comm.Abort(code)
        os._exit(code)

    def shared_memory_possible(self, size: int, dtype: Any) -> bool:
        """Whether this rank could sum ``size`` elements of ``dtype`` in a shared window.

        A local answer: more than one rank, ``XPNET_SHARED_MEMORY_ALLREDUCE`` not 0, a float32
        or float64 buffer, and no other fit using the window now. The ranks must agree before
        any of them calls :meth:`shared_memory_allreducer` (see ``DataParallel.start``).
        """
        if self.size == 1 or self.mpi_comm is None or not shared_memory_wanted():
            return False
        if not SharedMemoryAllreducer.supports(size, dtype):
            return False
        return self._shared is None or not self._shared[1] or not self._shared[1].in_use

    def shared_memory_allreducer(self, size: int, dtype: Any) -> SharedMemoryAllreducer | None:
        """A shared-memory all-reduce of ``size`` elements for ranks on one machine, or None.

        Collective: every rank calls it with the same arguments, once all of them found
        :meth:`shared_memory_possible`. The communicator keeps the last window for the next
        fit of the same size; a fit of another size frees it first (the ranks reach that
        point together, so the collective free cannot hang). None when the ranks span
        machines or ``/dev/shm`` lacks the room.
        """
        key = (int(size), np.dtype(dtype).str)
        if self._shared is not None:
            if self._shared[0] == key:
                return self._shared[1]
            old = self._shared[1]
            self._shared = None
            if old is not None:
                old.free()
        found = SharedMemoryAllreducer.create(self.mpi_comm, size, dtype)
        self._shared = (key, found)
        return found

    # ----------------------------------------------------------------- helpers
    def _mpi_allreduce(self, host: np.ndarray) -> None:
        from mpi4py import MPI

        self.mpi_comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)

    def _nccl_comm(self) -> Any:
        if self._nccl is None:
            self._nccl = _NcclAllreducer.create(self)
            if self._nccl is False and not self._warned_host_copies:
                self._warned_host_copies = True
                warnings.warn(
                    "xpnet.distributed: NCCL (cupy.cuda.nccl) is not available, so cupy "
                    "gradients are summed over MPI through host copies, which is much slower; "
                    "install NCCL (pip install nvidia-nccl-cu12 or cu13) for device-to-device "
                    "all-reduces",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return self._nccl or None


def _host_view(buf: Any) -> np.ndarray:
    """A writable NumPy view of a host buffer (NumPy or array-api-strict), never a copy."""
    if isinstance(buf, np.ndarray):
        view = buf
    elif _backend_name_of(type(buf)) == "array_api_strict":
        view = np.from_dlpack(buf)
    else:
        raise TypeError(
            f"xpnet.distributed: expected a numpy, array_api_strict or cupy array, "
            f"got {type(buf).__name__}"
        )
    if not view.flags.c_contiguous or not view.flags.writeable:
        raise ValueError("xpnet.distributed: collectives need a contiguous, writable buffer")
    return view


class _NcclAllreducer:
    """One NCCL communicator over the MPI ranks (its unique id broadcast by rank 0)."""

    def __init__(self, nccl: Any, comm: Any) -> None:
        self._nccl_mod = nccl
        self._comm = comm

    @classmethod
    def create(cls, parent: Communicator) -> _NcclAllreducer | bool:
        # Every rank must take the same branch, or the ranks that chose NCCL would wait in
        # its initialisation forever: the ranks agree on availability first.
        try:
            from cupy.cuda import nccl

            ok = bool(getattr(nccl, "available", True))
        except Exception:
            nccl, ok = None, False
        if not parent.agree([int(ok)]) or not ok:
            return False
        uid = np.zeros(128, dtype=np.int8)
        if parent.rank == 0:
            uid[:] = np.array(nccl.get_unique_id(), dtype=np.int8)
        parent.mpi_comm.Bcast(uid, root=0)
        comm = nccl.NcclCommunicator(parent.size, tuple(int(c) for c in uid), parent.rank)
        return cls(nccl, comm)

    def _dtype(self, buf: Any) -> int:
        name = str(buf.dtype)
        types = {"float32": self._nccl_mod.NCCL_FLOAT32, "float64": self._nccl_mod.NCCL_FLOAT64}
        if name not in types:
            raise TypeError(f"xpnet.distributed: NCCL collectives take float32/64, got {name}")
        return types[name]

    def allreduce(self, buf: Any) -> None:
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        ptr = buf.data.ptr
        self._comm.allReduce(ptr, ptr, buf.size, self._dtype(buf), self._nccl_mod.NCCL_SUM, stream)

    def broadcast(self, buf: Any, root: int) -> None:
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        ptr = buf.data.ptr
        self._comm.broadcast(ptr, ptr, buf.size, self._dtype(buf), root, stream)


def _select_gpu(local_rank: int) -> None:
    """Make GPU ``local_rank % device_count`` current, before the cupy backend is created."""
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return  # no CuPy or no GPU: the numpy backend needs no device
    if count < 1:
        return
    cupy.cuda.Device(local_rank % count).use()
    backend = get_backend()
    if backend.name == "cupy" and getattr(backend.device, "id", None) != local_rank % count:
        warnings.warn(
            "xpnet.distributed.init: the cupy backend was created before init() and stays on "
            f"{backend.device_name}; call init() first so each rank takes its own GPU",
            RuntimeWarning,
            stacklevel=3,
        )


_world: Communicator | None = None


def init() -> Communicator:
    """The communicator over ``MPI.COMM_WORLD`` (created once per process, then reused).

    Run alone (no launcher), it returns a size-1 communicator, with or without mpi4py.
    Under ``mpiexec`` / ``srun`` it initialises MPI and, where CuPy sees GPUs, makes GPU
    ``local_rank % device_count`` current so the cupy backend lands there.

    Raises
    ------
    ImportError
        If a launcher asked for more than one rank but mpi4py cannot be imported (each
        process would otherwise train alone on the whole data, silently).
    RuntimeError
        If the launcher asked for N ranks but MPI reports another size (mpi4py built against
        another MPI than the launcher's).
    """
    global _world
    if _world is not None:
        return _world
    asked = launcher_world_size()
    try:
        from mpi4py import MPI
    except ImportError as exc:
        if asked is not None and asked != 1:
            how = f"{asked} ranks" if asked else "a parallel run"
            raise ImportError(
                f"xpnet.distributed: the launcher asked for {how}, but mpi4py is not "
                f"installed ({exc}); install it with pip install 'xpnet[mpi]'"
            ) from exc
        _world = Communicator(None)
        return _world
    world = MPI.COMM_WORLD
    if asked and world.Get_size() != asked:
        raise RuntimeError(
            f"xpnet.distributed: the launcher asked for {asked} ranks but MPI sees "
            f"{world.Get_size()}; mpi4py is probably built against another MPI than the "
            "mpiexec that started the job (use the mpiexec of the same installation)"
        )
    _world = Communicator(world)
    if _world.size > 1:
        _select_gpu(_world.local_rank)
    return _world
