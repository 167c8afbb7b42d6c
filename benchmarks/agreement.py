"""Measured NumPy-vs-CuPy differences: the same model, seed and batches trained on both.

For each precision (float64; float32 with TensorFloat-32 off; float32 with it on) the script
trains one model for N steps on NumPy and on CuPy and prints the maximum absolute and relative
differences of the step losses, the gradients after the first step, and the weights after the
last step (and the largest weight difference seen at any step). Each precision runs in its own
subprocess, because CuPy reads ``CUPY_TF32`` once, at its first float32 matrix product.

    python benchmarks/agreement.py                 # 100 steps, MNIST if present, else blobs
    python benchmarks/agreement.py --steps 20      # quicker
    python benchmarks/agreement.py --require-gpu   # exit 1 (not 0) when there is no GPU

Writes ``benchmarks/results/gpu-agreement.json``. Without CuPy or a CUDA device it says so
and exits 0, or 1 with ``--require-gpu`` (or ``XPNET_REQUIRE_GPU=1``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

CASES = {
    "float64": ("float64", "0"),
    "float32": ("float32", "0"),
    "float32-tf32": ("float32", "1"),
}
SIZES = (784, 256, 128, 10)


def _gpu_problem() -> str | None:
    """None when the cupy backend can run here, else the library's own reason why not."""
    from xpnet.backend import unavailable_reason

    return unavailable_reason("cupy")


def _data(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    from xpnet.errors import XpnetError

    try:
        from xpnet.datasets import load_mnist, to_unit_range

        (X, y), _ = load_mnist(download=False)
        return to_unit_range(X[:n]), y[:n], f"MNIST (first {n} training images)"
    except (XpnetError, OSError) as exc:
        from xpnet.testing import make_blobs

        X, y = make_blobs(n_samples=n, n_features=SIZES[0], n_classes=SIZES[-1], seed=0)
        return X, y, f"synthetic blobs, {n} samples (MNIST unavailable: {exc})"


def _trace(backend: str, dtype: str, steps: int, batch: int) -> dict[str, Any]:
    from xpnet.backend import to_numpy
    from xpnet.losses import SoftmaxCrossEntropy
    from xpnet.optimizers import Adam
    from xpnet.testing import make_mlp

    X, y, source = _data(4096)
    model = make_mlp(backend, sizes=SIZES, dtype=dtype, seed=0)
    loss_fn = SoftmaxCrossEntropy()
    opt = Adam(lr=1e-3)
    params = model.parameters()
    order = np.random.default_rng(1).permutation(len(X))
    losses, first_grads, weights = [], None, []
    for step in range(steps):
        lo = (step * batch) % (len(X) - batch + 1)
        idx = order[lo : lo + batch]
        xb = model.backend.asarray(X[idx], dtype=dtype)
        yb = model.backend.asarray(y[idx], dtype="int64")
        value = loss_fn.forward(model.forward(xb, training=True), yb)
        model.backward(loss_fn.backward())
        if first_grads is None:
            first_grads = [to_numpy(p.grad).copy() for p in params]
        opt.step(params)
        losses.append(float(value))
        weights.append(model.get_weights())
    return {"losses": np.array(losses), "grads": first_grads, "weights": weights, "data": source}


def _worst(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    from xpnet.testing import max_differences

    diffs = [max_differences(a, d) for a, d in pairs]
    return max(d[0] for d in diffs), max(d[1] for d in diffs)


def _child(dtype: str, steps: int, batch: int) -> None:
    """Runs inside the subprocess: both traces, then one JSON line on stdout."""
    ref = _trace("numpy", dtype, steps, batch)
    gpu = _trace("cupy", dtype, steps, batch)
    per_step = [
        _worst(list(zip(a, d, strict=True)))
        for a, d in zip(gpu["weights"], ref["weights"], strict=True)
    ]
    result = {
        "data": ref["data"],
        "losses": _worst([(gpu["losses"], ref["losses"])]),
        "first_gradients": _worst(list(zip(gpu["grads"], ref["grads"], strict=True))),
        "final_weights": per_step[-1],
        "weights_any_step": (max(s[0] for s in per_step), max(s[1] for s in per_step)),
        "final_loss": [float(ref["losses"][-1]), float(gpu["losses"][-1])],
    }
    print(json.dumps(result))


def _run_case(name: str, steps: int, batch: int) -> dict[str, Any]:
    dtype, tf32 = CASES[name]
    env = {**os.environ, "CUPY_TF32": tf32}
    cmd = [sys.executable, __file__, "--child", dtype, "--steps", str(steps), "--batch", str(batch)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"agreement: case {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--require-gpu", action="store_true")
    parser.add_argument("--child", choices=sorted({d for d, _ in CASES.values()}))
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.steps, args.batch)
        return 0

    problem = _gpu_problem()
    if problem is not None:
        strict = args.require_gpu or os.environ.get("XPNET_REQUIRE_GPU") == "1"
        print(f"agreement: no GPU to compare against: {problem}", file=sys.stderr)
        return 1 if strict else 0

    results = {name: _run_case(name, args.steps, args.batch) for name in CASES}
    first = next(iter(results.values()))
    print(f"NumPy vs CuPy, {'-'.join(map(str, SIZES))} MLP, Adam lr 1e-3, batch {args.batch},")
    print(f"{args.steps} steps on {first['data']}\n")
    header = f"{'case':<14}{'quantity':<18}{'max abs diff':>14}{'max rel diff':>14}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        for key in ("losses", "first_gradients", "final_weights", "weights_any_step"):
            a, rel = r[key]
            print(f"{name:<14}{key:<18}{a:>14.3e}{rel:>14.3e}")
    out = HERE / "results" / "gpu-agreement.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "steps": args.steps,
        "batch": args.batch,
        "sizes": list(SIZES),
        "device": _device_name(),
        "results": results,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(HERE.parent)}")
    return 0


def _device_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


if __name__ == "__main__":
    sys.exit(main())
