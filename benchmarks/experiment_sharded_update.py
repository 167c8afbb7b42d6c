"""Timing stand-in: the best case of a sharded optimizer step for 2 data-parallel ranks.

A sharded (ZeRO-1 style) step would have each rank update only its half of the flat
parameter buffer, between the sum of its gradient chunk and the exchange, instead of every
rank repeating the whole update. Before building one (it would replace the one all-reduce of
the gradient buffer that ``docs/distributed.md`` is built on), this script times its best
case with the real fit of ``bench_distributed.py``: in the ``sharded`` ranks Adam's update
runs on this rank's half of the buffer only, and the shared-memory all-reduce stops after the
sum (no copy of the other rank's chunk, one barrier fewer). The weights it trains are wrong
on purpose; only the time is measured. It runs, alternating, the stand-in ranks, the real
ranks, and one process with 2 BLAS threads, and prints the epoch medians.

    python benchmarks/experiment_sharded_update.py            # 3 rounds of 7 epochs, batch 512

Needs MNIST under $XPNET_DATA_DIR/mnist and ``pip install 'xpnet[mpi]'``. Result, 1 December
2026 (before the compiled updates flushed subnormals): 0.652 s an epoch for the stand-in,
0.659 s for the real ranks, 0.764 s for one process: 1.17x instead of 1.16x
(``benchmarks/NOTES.md`` §13).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
sys.path.insert(0, str(HERE))


def _stand_in() -> None:
    """Patch this rank's Adam and all-reduce into the sharded step's costs."""
    from xpnet.distributed import shared_memory
    from xpnet.kernels import numba_cpu

    rank, size = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
    full_update = numba_cpu.NumbaKernels.adam_update

    def half_update(self, p, g, m, v, **kwargs):  # type: ignore[no-untyped-def]
        if p.ndim == 1 and size > 1:  # the flat buffer: this rank's chunk only
            lo, hi = rank * p.shape[0] // size, (rank + 1) * p.shape[0] // size
            return full_update(self, p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], **kwargs)
        return full_update(self, p, g, m, v, **kwargs)

    def sum_only(self):  # type: ignore[no-untyped-def]
        lo, hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        self._fence()
        chunk = self.buffer[lo:hi]
        for r, view in enumerate(self.views):
            if r != self.rank:
                np.add(chunk, view[lo:hi], out=chunk)
        self._fence()
        return self.buffer

    numba_cpu.NumbaKernels.adam_update = half_update
    shared_memory.SharedMemoryAllreducer.allreduce = sum_only


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--worker", choices=["sharded", "real"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    import bench_distributed as bench

    if args.worker:
        if args.worker == "sharded":
            _stand_in()
        return bench._worker_fit(args.batch, args.epochs)
    me = [sys.executable, str(Path(__file__).resolve())]
    mpiexec = [bench._mpiexec(), "-bind-to", "core", "-n", "2"]
    runs = {
        "2 ranks, sharded stand-in": ([*mpiexec, *me, "--worker", "sharded"], 1),
        "2 ranks": ([*mpiexec, *me, "--worker", "real"], 1),
        "1 process x 2 threads": ([*me, "--worker", "real"], 2),
    }
    epochs: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (cmd, threads) in runs.items():
            full = [*cmd, "--epochs", str(args.epochs), "--batch", str(args.batch)]
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
            out = subprocess.run(full, env=env, capture_output=True, text=True, check=True)
            seconds = json.loads(out.stdout.strip().splitlines()[-1])["epoch_seconds"]
            epochs[name] += seconds[1:]  # the first epoch loads the compiled kernels
    single = statistics.median(epochs["1 process x 2 threads"])
    for name, values in epochs.items():
        med = statistics.median(values)
        print(f"{name:28s} {med:.3f} s an epoch, {single / med:.3f}x one process x 2 threads")


if __name__ == "__main__":
    main()
