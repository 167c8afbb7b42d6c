"""xpnet's MLPClassifier against scikit-learn's, on MNIST, with the same hyperparameters.

For each solver (Adam, and SGD with Nesterov momentum 0.9) both estimators get the same
arguments and the same float32 data, run a fixed number of epochs (``tol=0`` so neither stops
early), and report ``fit`` wall time and test accuracy. Runs alternate between the libraries
(A B A B ...) so that drift in machine load hits both alike; the figures are medians.

    python benchmarks/bench_sklearn.py                 # 10 epochs, 2 rounds
    python benchmarks/bench_sklearn.py --quick         # 5000 samples, 1 epoch, 1 round
    python benchmarks/bench_sklearn.py --json out.json

Needs MNIST under $XPNET_DATA_DIR/mnist (or the cache) and scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
sys.path.insert(0, str(HERE))
from bench_distributed import step_products  # noqa: E402

SOLVERS: dict[str, dict[str, Any]] = {
    "adam": {"solver": "adam", "learning_rate_init": 1e-3},
    "sgd": {
        "solver": "sgd",
        "learning_rate_init": 0.05,
        "momentum": 0.9,
        "nesterovs_momentum": True,
    },
}


def _data(n_train: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from xpnet.datasets import load_mnist, to_unit_range

    (X, y), (Xt, yt) = load_mnist(download=False)
    X, Xt = to_unit_range(X).astype(np.float32), to_unit_range(Xt).astype(np.float32)
    if n_train is not None:
        X, y = X[:n_train], y[:n_train]
    return X, y, Xt, yt


def _one(lib: str, params: dict[str, Any], data: tuple[np.ndarray, ...]) -> dict[str, float]:
    from sklearn.exceptions import ConvergenceWarning

    if lib == "xpnet":
        from xpnet.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    X, y, Xt, yt = data
    est = MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t0
    return {"fit_s": seconds, "accuracy": float(est.score(Xt, yt)), "epochs": est.n_iter_}


def _products_seconds(rows: int, hidden: list[int], rounds: int = 7) -> float:
    """One training step's matrix products alone (median per step), the floor of both."""
    step = step_products(rows, [784, *hidden, 10])
    for _ in range(20):
        step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        times.append((time.perf_counter() - t0) / 20)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--n-train", type=int, default=None, help="first N training samples")
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    ap.add_argument("--quick", action="store_true", help="5000 samples, 1 epoch, 1 round")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.n_train = 1, 1, args.n_train or 5000
    data = _data(args.n_train)
    results: dict[str, Any] = {
        "machine": platform.platform(),
        "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "n_train": int(data[0].shape[0]),
        "epochs": args.epochs,
        "hidden": args.hidden,
        "cases": {},
    }
    for name in args.solvers:
        params = dict(
            SOLVERS[name],
            hidden_layer_sizes=tuple(args.hidden),
            batch_size=args.batch_size,
            max_iter=args.epochs,
            tol=0.0,
            n_iter_no_change=args.epochs + 1,
            alpha=1e-4,
            random_state=0,
        )
        runs: dict[str, list[dict[str, float]]] = {"xpnet": [], "sklearn": []}
        for _ in range(args.rounds):
            for lib in runs:
                runs[lib].append(_one(lib, params, data))
        summary = {
            lib: {
                "fit_s": statistics.median(r["fit_s"] for r in rs),
                "accuracy": statistics.median(r["accuracy"] for r in rs),
            }
            for lib, rs in runs.items()
        }
        speedup = summary["sklearn"]["fit_s"] / summary["xpnet"]["fit_s"]
        results["cases"][name] = {"params": {k: str(v) for k, v in params.items()}, **summary}
        results["cases"][name]["speedup"] = speedup
        xp_, sk_ = summary["xpnet"], summary["sklearn"]
        print(
            f"{name:5s} xpnet {xp_['fit_s']:7.2f}s acc {xp_['accuracy']:.4f} | sklearn "
            f"{sk_['fit_s']:7.2f}s acc {sk_['accuracy']:.4f} | speedup {speedup:.2f}x"
        )
    # Both libraries call the same NumPy matmul; what a 2x step leaves for the rest.
    products = _products_seconds(args.batch_size, args.hidden)
    steps = -(-results["n_train"] // args.batch_size) * args.epochs
    results["products_seconds_per_step"] = products
    print(f"one step's matrix products alone: {products * 1e3:.3f} ms (median)")
    for name, case in results["cases"].items():
        ours, theirs = case["xpnet"]["fit_s"] / steps, case["sklearn"]["fit_s"] / steps
        print(
            f"  {name:5s} per step: xpnet {ours * 1e3:.3f} ms, scikit-learn {theirs * 1e3:.3f} ms; "
            f"besides the products xpnet takes {(ours - products) * 1e3:.3f} ms, where half "
            f"scikit-learn's step leaves {(theirs / 2 - products) * 1e3:.3f} ms"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
