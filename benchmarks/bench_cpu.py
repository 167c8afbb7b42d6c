"""Side-by-side CPU training benchmark: xpnet (numpy) vs PyTorch eager vs scikit-learn.

PyTorch runs twice by default: eager Adam (``torch``) and fused Adam (``torch-fused``).

Each run trains one case in a fresh subprocess (so peak memory is that run's own), and the
runs alternate between libraries (A B C A B C ...) so drift in machine load hits all alike.

    python benchmarks/bench_cpu.py                  # all cases, 3 epochs, 2 rounds
    python benchmarks/bench_cpu.py --quick          # one case, 1 epoch, 1 round
    nox -s bench                                    # the same from a clean environment

Needs MNIST under $XPNET_DATA_DIR/mnist (or the cache); torch and scikit-learn are
benchmark-only dependencies, installed by the bench session.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = {
    "deep-b128": {"hidden": [256, 128, 64, 32], "batch": 128},
    "deep-b32": {"hidden": [256, 128, 64, 32], "batch": 32},
    "small-b128": {"hidden": [128, 64], "batch": 128},
}
LIBS = ("xpnet", "torch", "torch-fused", "sklearn")


# Run from a checkout without installing: the package sits beside this folder.
sys.path.insert(0, str(HERE.parent))


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from xpnet.datasets import load_mnist, to_unit_range

    (X, y), (Xt, yt) = load_mnist(download=False)
    return to_unit_range(X), y, to_unit_range(Xt), yt


def _flops_per_epoch(hidden: list[int], n: int) -> float:
    """Matrix-multiply FLOPs of forward + backward over one epoch.

    Forward x @ W and backward x.T @ g for every layer; g @ W.T for all but the first
    (nobody needs the gradient of the input images).
    """
    widths = [784, *hidden, 10]
    per_sample = 0
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        per_sample += 2 * a * b * (2 if i == 0 else 3)
    return float(per_sample) * n


def _gemm_rate(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = a.T.copy()
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times)


# ----------------------------------------------------------------------------- workers
def _run_xpnet(case: dict, epochs: int, seed: int) -> dict:
    from xpnet import Sequential
    from xpnet.layers import Dense
    from xpnet.optimizers import Adam

    X, y, Xt, yt = _data()
    widths = [784, *case["hidden"]]
    layers = [Dense(a, b, activation="relu") for a, b in itertools.pairwise(widths)]
    model = Sequential([*layers, Dense(widths[-1], 10)], seed=seed)
    hist = model.fit(
        X, y, epochs=epochs, batch_size=case["batch"], optimizer=Adam(lr=1e-3), seed=seed
    )
    from xpnet.kernels import get_kernels

    return {
        "kernels": get_kernels(np).name,
        "epoch_seconds": hist.history["seconds"],
        "test_accuracy": model.evaluate(Xt, yt)["accuracy"],
    }


def _run_torch(case: dict, epochs: int, seed: int, fused: bool = False) -> dict:
    import torch

    torch.manual_seed(seed)
    X, y, Xt, yt = _data()
    X, y, Xt, yt = map(torch.from_numpy, (X, y, Xt, yt))
    widths = [784, *case["hidden"]]
    mods: list = []
    for a, b in itertools.pairwise(widths):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods, torch.nn.Linear(widths[-1], 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    loss_fn = torch.nn.CrossEntropyLoss()
    bs, n = case["batch"], X.shape[0]
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        model.train()
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        acc = (model(Xt).argmax(1) == yt).float().mean().item()
    return {"epoch_seconds": times, "test_accuracy": acc}


def _run_sklearn(case: dict, epochs: int, seed: int) -> dict:
    import warnings

    from sklearn.neural_network import MLPClassifier

    X, y, Xt, yt = _data()
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(case["hidden"]),
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=case["batch"],
        alpha=0.0,
        random_state=seed,
        shuffle=True,
    )
    classes = np.arange(10)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            t0 = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            times.append(time.perf_counter() - t0)
    return {"epoch_seconds": times, "test_accuracy": float(clf.score(Xt, yt))}


def _worker(lib: str, case_name: str, epochs: int, seed: int) -> None:
    case = CASES[case_name]
    if lib == "xpnet":
        out = _run_xpnet(case, epochs, seed)
    elif lib == "torch":
        out = _run_torch(case, epochs, seed)
    elif lib == "torch-fused":
        out = _run_torch(case, epochs, seed, fused=True)
    else:
        out = _run_sklearn(case, epochs, seed)
    # ru_maxrss is in KiB on Linux: the peak resident set of this whole run.
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


# ----------------------------------------------------------------------------- driver
def _spawn(lib: str, case: str, epochs: int, seed: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        lib,
        "--case",
        case,
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{lib}/{case} failed:\n{proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=LIBS)
    ap.add_argument("--case", default=None)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="one case, one epoch, one round")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.case, args.epochs, args.seed)
        return 0
    cases = ["deep-b128"] if args.quick else args.cases.split(",")
    epochs, rounds = (1, 1) if args.quick else (args.epochs, args.rounds)
    libs = args.libs.split(",")
    try:
        _data()
    except Exception as exc:  # the benchmark is useless without the real data
        print(f"bench: MNIST is not available ({exc}); set XPNET_DATA_DIR", file=sys.stderr)
        return 1
    gemm = _gemm_rate()
    results: dict[str, dict[str, list[dict]]] = {c: {lib: [] for lib in libs} for c in cases}
    for r in range(rounds):
        for case in cases:
            for lib in libs:  # alternate A B C so load drift hits every library alike
                res = _spawn(lib, case, epochs, args.seed + r)
                results[case][lib].append(res)
                print(
                    f"round {r + 1} {case:11s} {lib:11s} "
                    f"{statistics.median(res['epoch_seconds']):.3f} s/epoch",
                    flush=True,
                )
    gemm_after = _gemm_rate()
    rows = []
    for case in cases:
        floor = _flops_per_epoch(CASES[case]["hidden"], 60000) / max(gemm, gemm_after)
        ref = statistics.median(
            [t for res in results[case].get("xpnet", []) for t in res["epoch_seconds"]] or [0]
        )
        for lib in libs:
            ts = [t for res in results[case][lib] for t in res["epoch_seconds"]]
            firsts = [res["epoch_seconds"][0] for res in results[case][lib]]
            lasts = [res["epoch_seconds"][-1] for res in results[case][lib]]
            med = statistics.median(ts)
            rows.append(
                {
                    "case": case,
                    "lib": lib,
                    "median_s": med,
                    "min_s": min(ts),
                    "max_s": max(ts),
                    "samples_per_s": 60000 / med,
                    "test_accuracy": statistics.median(
                        r["test_accuracy"] for r in results[case][lib]
                    ),
                    "peak_mib": max(r["peak_mib"] for r in results[case][lib]),
                    "vs_xpnet": med / ref if ref else float("nan"),
                    "last_over_first": statistics.median(lasts) / statistics.median(firsts),
                    "floor_s": floor,
                }
            )
    head = (
        f"{'case':11s} {'library':8s} {'s/epoch med (min-max)':>24s} {'samples/s':>10s} "
        f"{'test acc':>8s} {'peak MiB':>8s} {'/ xpnet':>7s} {'last/1st':>8s} {'floor s':>7s}"
    )
    print()
    print(
        f"float32 GEMM rate (2048^3, median of 5, before/after): {gemm / 1e9:.0f} / "
        f"{gemm_after / 1e9:.0f} GFLOP/s; epochs per run {epochs}, rounds {rounds}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rng = f"{r['median_s']:.3f} ({r['min_s']:.2f}-{r['max_s']:.2f})"
        print(
            f"{r['case']:11s} {r['lib']:8s} {rng:>24s} {r['samples_per_s']:10.0f} "
            f"{r['test_accuracy']:8.4f} {r['peak_mib']:8.0f} {r['vs_xpnet']:7.2f} "
            f"{r['last_over_first']:8.2f} {r['floor_s']:7.3f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version,
        "numpy": np.__version__,
        "gemm_gflops": [gemm / 1e9, gemm_after / 1e9],
        "epochs": epochs,
        "rounds": rounds,
        "blas_threads_env": {
            k: os.environ.get(k)
            for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "xpnet_kernels": sorted(
            {r.get("kernels", "?") for c in results.values() for r in c.get("xpnet", [])}
        ),
    }
    path = out / f"cpu-{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows, "raw": results}, indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
