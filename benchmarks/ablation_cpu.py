"""Which of xpnet's CPU choices pay: each variant trains the same model in a fresh process,
variants alternating round by round, and the table gives epoch-time medians as ratios to the
default configuration.

    python benchmarks/ablation_cpu.py [--epochs 5] [--rounds 2]

Variants: the default; the portable kernels instead of the NumPy fast paths
(``XPNET_KERNELS=portable``: no in-place Adam, no subnormal flush); and fixed BLAS thread
counts (``XPNET_BLAS_THREADS``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "default": {},
    "portable-kernels": {"XPNET_KERNELS": "portable"},
    "blas-1-thread": {"XPNET_BLAS_THREADS": "1"},
    "blas-2-threads": {"XPNET_BLAS_THREADS": "2"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--case", default="deep-b128")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    runs: dict[str, list[list[float]]] = {v: [] for v in names}
    for r in range(args.rounds):
        for v in names:
            env = {**os.environ, **VARIANTS[v]}
            cmd = [
                sys.executable,
                str(HERE / "bench_cpu.py"),
                "--worker",
                "xpnet",
                "--case",
                args.case,
                "--epochs",
                str(args.epochs),
                "--seed",
                str(r),
            ]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            res = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
            runs[v].append(res["epoch_seconds"])
            print(
                f"round {r + 1} {v:18s} " + " ".join(f"{t:.2f}" for t in res["epoch_seconds"]),
                flush=True,
            )
    ref = statistics.median(t for run in runs["default"] for t in run) if "default" in runs else 0
    print(f"\n{args.case}, {args.epochs} epochs x {args.rounds} rounds")
    print(f"{'variant':18s} {'median s/epoch':>14s} {'/ default':>9s} {'first':>6s} {'last':>6s}")
    for v in names:
        ts = [t for run in runs[v] for t in run]
        first = statistics.median(run[0] for run in runs[v])
        last = statistics.median(run[-1] for run in runs[v])
        med = statistics.median(ts)
        print(
            f"{v:18s} {med:14.3f} {med / ref if ref else float('nan'):9.2f} "
            f"{first:6.2f} {last:6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
