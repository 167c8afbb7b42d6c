"""Data-parallel speed on one machine, all-reduce cost, and a cost model beyond it.

Measures, on MNIST with the CLI's default network (784-512-256-10, ReLU, dropout 0.2,
float32, Adam):

* epoch time of ``mpiexec -n 2`` ranks with 1 BLAS thread each against 1 process with
  2 BLAS threads (and 1 process with 1 thread, the compute figure of the cost model), at
  global batches 128 and 512; the runs alternate (A B C A B C ...) so drift in machine load
  hits all alike, and the medians of the epochs after the first are reported (the first
  epoch of a process also loads the compiled kernels; it is kept apart, as warm-up);
  the ranks are bound one to a core (``-bind-to core``, Open MPI's default for two ranks;
  MPICH binds nothing unless told), ``--no-bind`` leaves them to the OS scheduler;
* the time of one in-place ``MPI.Allreduce`` of a float32 buffer against its size, on 2 ranks,
  and of the shared-memory all-reduce the fit uses on one machine (``shared_memory.py``);

then feeds both into the cost model of ``docs/distributed.md``, projecting samples/s for
N = 1..64 ranks on 10, 25 and 100 Gb/s links and an NVLink-class link.

    python benchmarks/bench_distributed.py               # 3 rounds, 3 epochs each
    python benchmarks/bench_distributed.py --quick       # 1 round, 2 epochs (1 warm-up), fewer
    python benchmarks/bench_distributed.py --model-only benchmarks/results/distributed-*.json

Needs MNIST under $XPNET_DATA_DIR/mnist and ``pip install 'xpnet[mpi]'``. Results go to
``benchmarks/results/distributed-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

HIDDEN = (512, 256)
MPI_RANKS = "2 ranks x 1 thread, MPI.Allreduce"
BATCHES = (128, 512)
RANKS = (1, 2, 4, 8, 16, 32, 64)
# Link bandwidths in bytes/s and per-message latencies (s) of the projection.
LINKS = {
    "10 Gb/s Ethernet": (10e9 / 8, 20e-6),
    "25 Gb/s Ethernet": (25e9 / 8, 10e-6),
    "100 Gb/s InfiniBand": (100e9 / 8, 2e-6),
    "NVLink-class (300 GB/s)": (300e9, 2e-6),
}


# ----------------------------------------------------------------------------- workers
def _worker_fit(batch: int, epochs: int) -> None:
    from xpnet import Sequential, distributed
    from xpnet.datasets import load_mnist, to_unit_range
    from xpnet.layers import Dense, Dropout

    comm = distributed.init()
    (X, y), _ = load_mnist(download=False)
    X = to_unit_range(X)
    widths = [784, *HIDDEN]
    layers: list = []
    for a, b in itertools.pairwise(widths):
        layers += [Dense(a, b, activation="relu"), Dropout(0.2)]
    model = Sequential([*layers, Dense(widths[-1], 10)], seed=0)
    with distributed.abort_on_error(comm):
        hist = model.fit(
            X,
            y,
            epochs=epochs,
            batch_size=batch,
            seed=0,
            communicator=comm if comm.size > 1 else None,
        )
    if comm.is_root:
        params = sum(p.size for p in model.parameters())
        record = {"epoch_seconds": hist.history["seconds"], "params": params, "n": len(y)}
        print(json.dumps(record))


def _worker_allreduce(sizes: list[int], repeats: int) -> None:
    from xpnet import distributed

    comm = distributed.init()
    out, shared_out = {}, {}
    for size in sizes:
        buf = np.ones(size // 4, dtype=np.float32)
        comm.allreduce(buf)  # warm-up (connection set-up, page faults)
        times = []
        for _ in range(repeats):
            buf[...] = 1.0  # repeated sums would double it into inf
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce(buf)
            times.append(time.perf_counter() - t0)
        # The ranks leave the collective together; report their mean of medians.
        total = comm.reduce_metrics([statistics.median(times)])
        out[str(size)] = float(total[0]) / comm.size
        # The shared-memory path the fit takes for its gradient buffer on one machine.
        shared = comm.shared_memory_allreducer(size // 4, np.float32)
        if shared is not None:
            shared.buffer[...] = 1.0
            shared.allreduce()
            times = []
            for _ in range(repeats):
                shared.buffer[...] = 1.0
                comm.barrier()
                t0 = time.perf_counter()
                shared.allreduce()
                times.append(time.perf_counter() - t0)
            total = comm.reduce_metrics([statistics.median(times)])
            shared_out[str(size)] = float(total[0]) / comm.size
    if comm.is_root:
        print(
            json.dumps(
                {
                    "allreduce_seconds": out,
                    "shared_allreduce_seconds": shared_out,
                    "ranks": comm.size,
                }
            )
        )


def step_products(rows: int, widths: list[int], seed: int = 0) -> Any:
    """A function running one training step's matrix products alone, for ``rows`` rows of a
    dense network of layer ``widths`` (inputs first), in float32.

    The shapes the fit's step multiplies: each layer's forward ``a @ W``, its weight
    gradient ``a.T @ dz``, and the gradient of its input ``dz @ W.T`` (not for the first
    layer, whose input needs none).
    """
    rng = np.random.default_rng(seed)
    ws = [rng.random((a, b), dtype=np.float32) for a, b in itertools.pairwise(widths)]
    zs = [rng.random((rows, b), dtype=np.float32) for b in widths[1:]]
    ins = [rng.random((rows, widths[0]), dtype=np.float32), *zs[:-1]]

    def step() -> None:
        for a, w in zip(ins, ws, strict=True):
            np.matmul(a, w)
        for i, (a, w, z) in enumerate(zip(ins, ws, zs, strict=True)):
            np.matmul(a.T, z)
            if i:
                np.matmul(z, w.T)

    return step


def _worker_products(rows: int, repeats: int) -> None:
    from xpnet import distributed

    comm = distributed.init()
    step = step_products(rows, [784, *HIDDEN, 10])
    for _ in range(20):  # warm-up: OpenBLAS's buffers, page faults
        step()
    comm.barrier()  # the ranks multiply at the same time, as in a fit
    times = []
    for _ in range(max(repeats // 10, 5)):
        t0 = time.perf_counter()
        for _ in range(10):
            step()
        times.append((time.perf_counter() - t0) / 10)
    total = comm.reduce_metrics([statistics.median(times)])
    if comm.is_root:
        print(json.dumps({"products_seconds": float(total[0]) / comm.size, "rows": rows}))


# ----------------------------------------------------------------------------- driver
def _mpiexec() -> str:
    found = shutil.which(
        "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found is None:
        sys.exit("bench_distributed: no mpiexec; pip install 'xpnet[mpi]'")
    return found


def _run(cmd: list[str], threads: int, extra_env: dict[str, str] | None = None) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"bench_distributed: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(
    rounds: int, epochs: int, sizes: list[int], repeats: int, *, warmup: int = 1, bind: bool = True
) -> dict:
    me = [sys.executable, str(Path(__file__).resolve())]
    mpiexec = [_mpiexec(), *(["-bind-to", "core"] if bind else [])]
    configs: dict[str, tuple[list[str], int, dict[str, str]]] = {
        "2 ranks x 1 thread": ([*mpiexec, "-n", "2", *me], 1, {}),
        # The same ranks with their gradients summed by MPI.Allreduce instead of the
        # shared-memory window: what that path is worth, side by side.
        MPI_RANKS: ([*mpiexec, "-n", "2", *me], 1, {"XPNET_SHARED_MEMORY_ALLREDUCE": "0"}),
        "1 process x 2 threads": (me, 2, {}),
        "1 process x 1 thread": (me, 1, {}),
    }
    epoch: dict[str, dict[str, list[float]]] = {
        str(b): {name: [] for name in configs} for b in BATCHES
    }
    first: dict[str, dict[str, list[float]]] = {
        str(b): {name: [] for name in configs} for b in BATCHES
    }
    params = n_train = 0
    for r in range(rounds):
        for batch in BATCHES:
            for name, (prefix, threads, extra) in configs.items():
                cmd = [*prefix, "--worker-fit", str(batch), "--epochs", str(epochs)]
                res = _run(cmd, threads, extra)
                params, n_train = res["params"], res["n"]
                first[str(batch)][name] += res["epoch_seconds"][:warmup]
                epoch[str(batch)][name] += res["epoch_seconds"][warmup:]
                print(f"round {r + 1} batch {batch} {name}: {res['epoch_seconds']}", flush=True)
    # The step's matrix products alone, each rank's share on one thread (both ranks at
    # once) against the whole batch on two threads: how much of the ranks' edge is left
    # once OpenBLAS's second thread is counted.
    products: dict[str, dict[str, list[float]]] = {
        str(b): {"2 ranks x 1 thread": [], "1 process x 2 threads": []} for b in BATCHES
    }
    for _ in range(rounds):
        for batch in BATCHES:
            worker = ["--worker-products", str(batch // 2), "--repeats", str(repeats)]
            res = _run([*mpiexec, "-n", "2", *me, *worker], 1)
            products[str(batch)]["2 ranks x 1 thread"].append(res["products_seconds"])
            worker[1] = str(batch)
            res = _run([*me, *worker], 2)
            products[str(batch)]["1 process x 2 threads"].append(res["products_seconds"])
    sizes_arg = ",".join(map(str, sizes))
    ar = _run(
        [*mpiexec, "-n", "2", *me, "--worker-allreduce", sizes_arg, "--repeats", str(repeats)], 1
    )
    # The all-reduce of exactly this model's gradient buffer, for the ceiling in report().
    grad_bytes = 4 * params
    grad = _run(
        [*mpiexec, "-n", "2", *me, "--worker-allreduce", str(grad_bytes), "--repeats", "200"], 1
    )
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "network": {"hidden": list(HIDDEN), "dropout": 0.2, "dtype": "float32"},
        "params": params,
        "n_train": n_train,
        "rounds": rounds,
        "epochs_per_run": epochs,
        "warmup_epochs": warmup,
        "ranks_bound_to_cores": bind,
        "epoch_seconds": epoch,
        "warmup_epoch_seconds": first,
        "allreduce_seconds": ar["allreduce_seconds"],
        "shared_allreduce_seconds": ar.get("shared_allreduce_seconds", {}),
        "products_seconds": products,
        "gradient_allreduce_seconds": {
            "bytes": grad_bytes,
            "mpi": grad["allreduce_seconds"][str(grad_bytes)],
            "shared": grad.get("shared_allreduce_seconds", {}).get(str(grad_bytes)),
        },
    }


# ----------------------------------------------------------------------------- model
def fit_latency_bandwidth(allreduce: dict[str, float]) -> tuple[float, float]:
    """Latency (s) and bandwidth (bytes/s) of the measured 2-rank all-reduce.

    Latency: the smallest message's time. Bandwidth: the median rate of the messages of
    256 KiB and more (a least-squares line would be ruled by the largest, noisiest sizes).
    """
    sizes = sorted((int(k), v) for k, v in allreduce.items())
    latency = sizes[0][1]
    big = [n / t for n, t in sizes if n >= 1 << 18] or [sizes[-1][0] / sizes[-1][1]]
    return latency, statistics.median(big)


def ring_allreduce_seconds(n: int, grad_bytes: float, bandwidth: float, alpha: float) -> float:
    """A ring all-reduce on ``n`` ranks: 2(N-1) messages of bytes/N each way."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * grad_bytes / bandwidth


def project(result: dict) -> dict:
    """Samples/s for N ranks: compute/N plus a ring all-reduce of the gradients per step.

    ``t_step(N) = B * t_sample / N + 2 (N-1) * alpha + 2 (N-1)/N * bytes / bandwidth`` with
    ``t_sample`` from the 1-process 1-thread runs at that batch (one core's compute per
    sample). Also the global batch below which communication takes longer than compute,
    ``B*(N) = N * t_allreduce(N) / t_sample``.
    """
    n_train = result["n_train"]
    grad_bytes = 4 * result["params"]
    latency, rate = fit_latency_bandwidth(result["allreduce_seconds"])
    links = {**LINKS, "measured shared memory (2 ranks)": (rate, latency)}
    out: dict = {"grad_bytes": grad_bytes, "measured_link": [rate, latency], "batches": {}}
    for batch, runs in result["epoch_seconds"].items():
        b = int(batch)
        t_sample = statistics.median(runs["1 process x 1 thread"]) / n_train
        rows = {}
        for link, (bandwidth, alpha) in links.items():
            comm = [ring_allreduce_seconds(n, grad_bytes, bandwidth, alpha) for n in RANKS]
            rates = [b / (b * t_sample / n + c) for n, c in zip(RANKS, comm, strict=True)]
            rows[link] = {
                "samples_per_s": dict(zip(map(str, RANKS), rates, strict=True)),
                "comm_dominates_below_global_batch": {
                    str(n): n * c / t_sample for n, c in zip(RANKS, comm, strict=True) if n > 1
                },
            }
        out["batches"][batch] = {"t_sample_s": t_sample, "links": rows}
    return out


def _report_ceiling(result: dict) -> None:
    """The step's products alone, and the ratio the ranks would reach with a free all-reduce."""
    products, grad = result.get("products_seconds"), result.get("gradient_allreduce_seconds")
    if not products or not grad:  # results saved before these were measured
        return
    allreduce = grad["shared"] if grad.get("shared") is not None else grad["mpi"]
    print(
        f"\nOne step's matrix products alone (median per step; each rank's share on 1 thread, "
        f"both ranks at once, against the whole batch on 2 threads), and the all-reduce of the "
        f"{grad['bytes'] / 1e6:.2f} MB gradient buffer: {allreduce * 1e3:.3f} ms:"
    )
    for batch, runs in products.items():
        ranks = statistics.median(runs["2 ranks x 1 thread"])
        single = statistics.median(runs["1 process x 2 threads"])
        epochs = {k: statistics.median(v) for k, v in result["epoch_seconds"][batch].items()}
        steps = -(-result["n_train"] // int(batch))
        free = epochs["2 ranks x 1 thread"] - steps * allreduce
        print(
            f"  global batch {batch}: products {ranks * 1e3:.2f} ms against {single * 1e3:.2f} ms "
            f"({single / ranks:.2f}x); with a free all-reduce the ranks would be "
            f"{epochs['1 process x 2 threads'] / free:.2f}x as fast as 1 process x 2 threads"
        )


def report(result: dict) -> None:
    warmup = result.get("warmup_epochs", 0)
    kept = result["epochs_per_run"] - warmup
    print(
        f"\nMNIST epoch (median of {result['rounds']} rounds x {kept} epochs after "
        f"{warmup} warm-up epoch(s); ranks bound to cores: {result.get('ranks_bound_to_cores')}):"
    )
    for batch, runs in result["epoch_seconds"].items():
        med = {k: statistics.median(v) for k, v in runs.items()}
        ratio = med["1 process x 2 threads"] / med["2 ranks x 1 thread"]
        scaling = med["1 process x 1 thread"] / med["2 ranks x 1 thread"]
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in med.items())
        print(
            f"  global batch {batch}: {parts}; 2 ranks are {ratio:.2f}x as fast as 1 process "
            f"x 2 threads, {scaling:.2f}x as fast as 1 process x 1 thread"
        )
        if MPI_RANKS in med:
            gain = med[MPI_RANKS] / med["2 ranks x 1 thread"]
            print(f"    the shared-memory all-reduce: {gain:.3f}x the ranks' speed with MPI's")
    _report_ceiling(result)
    print("\n2-rank MPI.Allreduce (float32, in place):")
    for size, t in result["allreduce_seconds"].items():
        print(f"  {int(size):>10,d} bytes: {t * 1e6:9.1f} us  ({int(size) / t / 1e9:6.2f} GB/s)")
    latency, rate = fit_latency_bandwidth(result["allreduce_seconds"])
    print(f"  latency {latency * 1e6:.1f} us, bandwidth {rate / 1e9:.2f} GB/s")
    shared = result.get("shared_allreduce_seconds", {})
    if shared:
        print("2-rank shared-memory all-reduce (the fit's path on one machine), same sizes:")
        for size, t in shared.items():
            mpi = result["allreduce_seconds"][size]
            print(f"  {int(size):>10,d} bytes: {t * 1e6:9.1f} us  ({mpi / t:4.2f}x MPI's speed)")
    model = project(result)
    print(f"\nCost model ({model['grad_bytes'] / 1e6:.2f} MB of gradients per step), samples/s:")
    for batch, entry in model["batches"].items():
        print(f"  global batch {batch} (compute {entry['t_sample_s'] * 1e6:.1f} us/sample):")
        print("    " + " " * 34 + "".join(f"{n:>9d}" for n in RANKS) + "   B*(8)  B*(64)")
        for link, row in entry["links"].items():
            rates = "".join(f"{v:9.0f}" for v in row["samples_per_s"].values())
            star = row["comm_dominates_below_global_batch"]
            print(f"    {link:<34}{rates}{star['8']:8.0f}{star['64']:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1, help="first epochs of each run left out of the medians"
    )
    parser.add_argument("--no-bind", action="store_true", help="do not bind the ranks to cores")
    parser.add_argument("--model-only", metavar="JSON", help="report a saved result again")
    parser.add_argument("--worker-fit", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-allreduce", help=argparse.SUPPRESS)
    parser.add_argument("--worker-products", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_fit:
        return _worker_fit(args.worker_fit, args.epochs)
    if args.worker_products:
        return _worker_products(args.worker_products, args.repeats)
    if args.worker_allreduce:
        sizes = [int(s) for s in args.worker_allreduce.split(",")]
        return _worker_allreduce(sizes, args.repeats)
    if args.model_only:
        return report(json.loads(Path(args.model_only).read_text()))
    rounds, epochs = (1, 2) if args.quick else (args.rounds, args.epochs)
    if not 0 <= args.warmup < epochs:
        parser.error(f"--warmup must be in [0, {epochs}) (below --epochs), got {args.warmup}")
    sizes = [2**k for k in range(10, 27, 2 if not args.quick else 4)]  # 1 KiB .. 64 MiB
    result = measure(rounds, epochs, sizes, args.repeats, warmup=args.warmup, bind=not args.no_bind)
    result["model"] = project(result)
    out = HERE / "results" / f"distributed-{_dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
