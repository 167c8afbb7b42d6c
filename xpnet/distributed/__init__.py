"""Data-parallel training over MPI (NumPy) and NCCL (CuPy).

Start the same script on N ranks (``mpiexec -n N python train.py``) and pass the communicator
to ``fit``; every rank passes the same data, and ``batch_size`` is the global batch::

    from xpnet import distributed

    comm = distributed.init()
    with distributed.abort_on_error(comm):
        history = model.fit(X, y, batch_size=512, communicator=comm)

See the "Distributed training" page of the documentation for the design, the fault handling
and the cost model.
"""

from __future__ import annotations

from .communicator import Communicator, init, launcher_world_size
from .data_parallel import DataParallel, split_rows
from .faults import abort_on_error, install_excepthook

__all__ = [
    "Communicator",
    "DataParallel",
    "abort_on_error",
    "init",
    "install_excepthook",
    "launcher_world_size",
    "split_rows",
]
