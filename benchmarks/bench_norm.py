"""Test accuracy and train time of ``xpnet train --norm none / batch / layer``.

Each (data set, norm, seed) run is one ``xpnet train`` in a fresh subprocess at the CLI's
defaults (its default epochs unless ``--epochs`` is given), recording its ``--json`` summary;
the runs cycle through the norms (none batch layer none ...) so drift in machine load hits all
alike. The table gives, per data set and norm, the median test accuracy and the median train
time over the seeds, and each norm's time relative to ``none``.

    python benchmarks/bench_norm.py                                  # mnist and fashion-mnist
    python benchmarks/bench_norm.py --datasets mnist --seeds 0 1 2
    python benchmarks/bench_norm.py --datasets digits --epochs 1 --seeds 0   # a smoke run

A data set that is not on disk is reported as missing and skipped (nothing is downloaded);
the exit status is 1 when none of them could run. Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NORMS = ("none", "batch", "layer")
# Run from a checkout without installing: the package sits beside this folder.
sys.path.insert(0, str(ROOT))


def _available(name: str, data_dir: str | None) -> str | None:
    """None when the data set loads without downloading, else why not."""
    from xpnet.datasets.catalog import load_dataset

    try:
        load_dataset(name, data_dir, download=False, need_train=False)
    except Exception as exc:  # any failure to load is reported, not raised
        return f"{type(exc).__name__}: {exc}"
    return None


def _run(dataset: str, norm: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, "-m", "xpnet", "train", "--dataset", dataset, "--norm", norm]
    cmd += ["--seed", str(seed), "--json", str(out), "--no-download"]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    record = json.loads(out.read_text())
    return {
        "dataset": dataset,
        "norm": norm,
        "seed": seed,
        "epochs": record["epochs"],
        "test_accuracy": record["test_accuracy"],
        "train_seconds": record["train_seconds"],
    }


def _table(runs: list[dict]) -> list[str]:
    lines = ["| data set | norm | test accuracy (median) | train s (median) | time vs none |"]
    lines.append("|---|---|---|---|---|")
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        medians = {}
        for norm in NORMS:
            rs = [r for r in runs if r["dataset"] == dataset and r["norm"] == norm]
            if rs:
                acc = statistics.median(r["test_accuracy"] for r in rs)
                sec = statistics.median(r["train_seconds"] for r in rs)
                medians[norm] = (acc, sec, len(rs))
        base = medians.get("none", (0.0, 0.0, 0))[1]
        for norm, (acc, sec, n) in medians.items():
            ratio = f"{sec / base:.2f}x" if base else "-"
            lines.append(f"| {dataset} | {norm} | {acc:.2%} ({n} seeds) | {sec:.2f} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the CLI's default")
    p.add_argument("--data-dir", default=None, help="default: $XPNET_DATA_DIR or the cache")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = p.parse_args(argv)

    runs: list[dict] = []
    missing = {}
    for dataset in args.datasets:
        why = _available(dataset, args.data_dir)
        if why is not None:
            missing[dataset] = why
            print(f"bench_norm: {dataset} is missing, skipped ({why})", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for seed in args.seeds:
                for norm in NORMS:
                    run = _run(dataset, norm, seed, args, Path(tmp) / "run.json")
                    runs.append(run)
                    print(
                        f"{dataset} norm={norm} seed={seed}: {run['test_accuracy']:.2%} "
                        f"in {run['train_seconds']:.1f}s",
                        file=sys.stderr,
                    )
    if not runs:
        print("bench_norm: no data set could run", file=sys.stderr)
        return 1
    print("\n".join(_table(runs)))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"norm-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "missing": missing}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
