"""Epoch times of two checkouts of xpnet side by side, with PyTorch as the yardstick.

    git worktree add /tmp/xpnet-before <rev>
    python benchmarks/compare_revisions.py /tmp/xpnet-before --cases deep-b128,deep-b32 --rounds 3

Each run is one ``bench_cpu.py --worker`` subprocess (so peak memory is its own); the rounds
cycle through the variants (the old checkout, this one with ``XPNET_KERNELS=numpy``, this one
with its default kernels, PyTorch eager, PyTorch fused Adam) so drift in machine load hits all
alike. The table gives medians over the rounds of the median epoch after the first (the first
pays one-time costs such as compiling kernels) and each variant's ratio to the others.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="root of the other checkout (it has benchmarks/bench_cpu.py)")
    ap.add_argument("--cases", default="deep-b128,deep-b32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    here = str(HERE / "bench_cpu.py")
    variants = {
        "before": (str(Path(args.before) / "benchmarks" / "bench_cpu.py"), "xpnet", {}),
        "after-numpy": (here, "xpnet", {"XPNET_KERNELS": "numpy"}),
        "after": (here, "xpnet", {}),
        "torch": (here, "torch", {}),
        "torch-fused": (here, "torch-fused", {}),
    }
    cases = args.cases.split(",")
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in range(args.rounds):
        for case in cases:
            for name, (script, lib, env) in variants.items():
                cmd = [sys.executable, script, "--worker", lib, "--case", case]
                cmd += ["--epochs", str(args.epochs), "--seed", "0"]
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, env={**os.environ, **env}, check=False
                )
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if not lines:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                out = json.loads(lines[0][7:])
                t = statistics.median(out["epoch_seconds"][1:] or out["epoch_seconds"])
                results.setdefault((case, name), []).append(
                    (t, out["test_accuracy"], out["peak_mib"])
                )
                print(f"round {r + 1} {case:10s} {name:12s} {t:.3f} s/epoch", flush=True)
    print()
    for case in cases:
        med = {n: statistics.median(x[0] for x in results[(case, n)]) for n in variants}
        for n in variants:
            runs = results[(case, n)]
            print(
                f"{case:10s} {n:12s} {med[n]:.3f} s/epoch  /before {med[n] / med['before']:.2f}"
                f"  /torch {med[n] / med['torch']:.2f}  /fused {med[n] / med['torch-fused']:.2f}"
                f"  acc {statistics.median(x[1] for x in runs):.4f}"
                f"  peak {max(x[2] for x in runs):.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
