"""GPU training benchmark: xpnet on CuPy vs PyTorch eager on CUDA, data on the device.

Cases (MNIST, float32, Adam lr 1e-3, ReLU MLPs, TF32 off unless ``CUPY_TF32=1``):

* ``deep-b128``: 784-256-128-64-32-10 at batch 128;
* ``wide-b512``: 784-512-512-10 at batch 512;
* ``cli-like``: the model of ``xpnet train``'s defaults (``xpnet.cli.DEFAULTS``: 784-512-256-10,
  ReLU, dropout 0.2, batch 128) with a constant Adam lr 1e-3 in place of the CLI's step
  schedule, trained until 98% test accuracy: the training seconds it took (evaluation is off
  the clock), capped at ``--max-epochs``.

For each case the two libraries alternate epoch by epoch (xpnet, torch, torch, xpnet, ...) so
drift in clocks and load hits both; the table shows the median seconds per epoch, the kernels
launched per training step and the final test accuracy. Both start from the same weights
(xpnet's, copied into torch) and keep the same per-step bookkeeping (loss sum and correct
count accumulated on the device, read once per epoch), as ``Sequential.fit`` does.

Kernels per step are counted with CUPTI through ``torch.profiler`` (Kineto): it records every
kernel the process launches, CuPy's included, and a probe that launches three known CuPy
kernels checks that it does before any CuPy count is reported. Per-step counts are the
difference between a run of 15 and a run of 5 steps, divided by 10, so per-epoch work (the
shuffle, the final read-back) cancels out. CuPy itself offers no kernel counter
(``cupyx.profiler`` times code and marks NVTX ranges; ``nsys profile --stats=true`` is the
tool-side alternative).

    python benchmarks/bench_gpu.py                 # all cases, 5 timed epochs each
    python benchmarks/bench_gpu.py --quick         # deep-b128 only, 2 epochs, no time-to-98%
    python benchmarks/bench_gpu.py --require-gpu   # exit 1 (not 0) when there is no GPU

Needs MNIST under ``$XPNET_DATA_DIR/mnist`` (no download), CuPy, and torch built with CUDA
(without torch the xpnet column is still measured, without kernel counts). Writes
``benchmarks/results/gpu-bench-<time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

CASES: dict[str, dict[str, Any]] = {
    "deep-b128": {"hidden": [256, 128, 64, 32], "batch": 128, "dropout": 0.0},
    "wide-b512": {"hidden": [512, 512], "batch": 512, "dropout": 0.0},
}
TARGET_ACCURACY = 0.98
TF32 = int(os.environ.get("CUPY_TF32", "0") or 0) > 0
COUNT_STEPS = (5, 15)
TORCH_DEVICE = "cuda"
COUNTED_ACTIVITY = "CUDA"  # the profiler activity (and device type) counted as kernels


def _gpu_problem() -> str | None:
    """None when the cupy backend can run here, else the library's own reason why not."""
    from xpnet.backend import unavailable_reason

    return unavailable_reason("cupy")


def _torch_problem() -> str | None:
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return "torch was built without CUDA or sees no device"
    return None


def _sync() -> None:
    import cupy

    cupy.cuda.Device().synchronize()
    if _torch_problem() is None:
        import torch

        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- kernel counts


def _count_kernels(fn: Any) -> int | None:
    """CUDA kernels launched while ``fn()`` runs (all libraries), via CUPTI in torch.profiler."""
    if _torch_problem() is not None:
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    _sync()
    with profile(activities=[getattr(ProfilerActivity, COUNTED_ACTIVITY)]) as prof:
        fn()
        _sync()
    try:
        events = [(e.name(), e.device_type()) for e in prof.profiler.kineto_results.events()]
    except AttributeError:  # older torch: the parsed events carry the same fields
        events = [(e.name, e.device_type) for e in prof.events()]
    return sum(
        1
        for name, device in events
        if device == getattr(DeviceType, COUNTED_ACTIVITY)
        and not name.startswith(("Memcpy", "Memset"))
    )


def _cupy_counting_works() -> tuple[bool, str]:
    """Does the counter see CuPy's kernels? Three in-place ufuncs are three kernels."""
    import cupy

    x = cupy.ones(1 << 16, dtype=cupy.float32)
    x += 1  # compile outside the counted region
    x *= 2
    x -= 3

    def three() -> None:
        cupy.add(x, 1, out=x)
        cupy.multiply(x, 2, out=x)
        cupy.subtract(x, 3, out=x)

    n = _count_kernels(three)
    if n == 3:
        return True, "CUPTI via torch.profiler (probe: 3 CuPy kernels seen as 3)"
    return False, f"n/a: the CUPTI probe saw {n} kernels for 3 CuPy kernels"


def _per_step(run_steps: Any) -> float | None:
    lo, hi = COUNT_STEPS
    a, b = _count_kernels(lambda: run_steps(lo)), _count_kernels(lambda: run_steps(hi))
    return None if a is None or b is None else (b - a) / (hi - lo)


# ----------------------------------------------------------------------------- runners


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from xpnet.datasets import load_mnist, to_unit_range

    (X, y), (Xt, yt) = load_mnist(download=False)
    return to_unit_range(X), y.astype(np.int64), to_unit_range(Xt), yt.astype(np.int64)


class XpnetRun:
    """One xpnet model on CuPy, its data already on the device."""

    name = "xpnet-cupy"

    def __init__(self, case: dict[str, Any], data: tuple[np.ndarray, ...], seed: int) -> None:
        import xpnet
        from xpnet.layers import Dense, Dropout
        from xpnet.optimizers import Adam

        backend = xpnet.backend.resolve_backend("cupy")
        widths = [784, *case["hidden"], 10]
        layers: list[Any] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            last = i == len(widths) - 2
            layers.append(Dense(a, b, activation=None if last else "relu"))
            if case["dropout"] and not last:
                layers.append(Dropout(case["dropout"]))
        self.model = xpnet.Sequential(layers, dtype="float32", seed=seed, backend=backend)
        self.optimizer = Adam(lr=1e-3)
        self.batch = case["batch"]
        X, y, Xt, yt = data
        self.X, self.y = backend.asarray(X, "float32"), backend.asarray(y, "int64")
        self.Xt, self.yt = backend.asarray(Xt, "float32"), backend.asarray(yt, "int64")

    def initial_weights(self) -> list[np.ndarray]:
        return self.model.get_weights()

    def epoch(self) -> float:
        history = self.model.fit(self.X, self.y, batch_size=self.batch, optimizer=self.optimizer)
        return history.history["seconds"][0]  # ends with the epoch's one read-back: synced

    def steps(self, n: int) -> None:
        k = n * self.batch
        self.model.fit(self.X[:k], self.y[:k], batch_size=self.batch, optimizer=self.optimizer)

    def accuracy(self) -> float:
        return self.model.evaluate(self.Xt, self.yt)["accuracy"]


class TorchRun:
    """The same model in PyTorch eager mode, started from xpnet's initial weights."""

    name = "torch"

    def __init__(
        self, case: dict[str, Any], data: tuple[np.ndarray, ...], weights: list[np.ndarray]
    ) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = TF32
        torch.backends.cudnn.allow_tf32 = TF32
        dev = torch.device(TORCH_DEVICE)
        widths = [784, *case["hidden"], 10]
        mods: list[Any] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            lin = torch.nn.Linear(a, b)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(weights[2 * i].T.copy()))
                lin.bias.copy_(torch.from_numpy(weights[2 * i + 1]))
            mods.append(lin)
            if i < len(widths) - 2:
                mods.append(torch.nn.ReLU())
                if case["dropout"]:
                    mods.append(torch.nn.Dropout(case["dropout"]))
        self.torch = torch
        self.model = torch.nn.Sequential(*mods).to(dev)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batch = case["batch"]
        X, y, Xt, yt = data
        self.X, self.y = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
        self.Xt, self.yt = torch.from_numpy(Xt).to(dev), torch.from_numpy(yt).to(dev)

    def _train(self, X: Any, y: Any) -> None:
        torch = self.torch
        f = torch.nn.functional
        n, bs = X.shape[0], self.batch
        self.model.train()
        perm = torch.randperm(n, device=X.device)
        loss_sum = torch.zeros((), device=X.device)
        correct = torch.zeros((), dtype=torch.int64, device=X.device)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb, yb = X[idx], y[idx]
            out = self.model(xb)
            loss = f.cross_entropy(out, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * idx.numel()
            correct += (out.argmax(1) == yb).sum()
        float(loss_sum), int(correct)  # the epoch's read-back, as in xpnet's fit

    def epoch(self) -> float:
        if self.X.is_cuda:
            self.torch.cuda.synchronize()
        t0 = time.perf_counter()
        self._train(self.X, self.y)
        return time.perf_counter() - t0

    def steps(self, n: int) -> None:
        k = n * self.batch
        self._train(self.X[:k], self.y[:k])

    def accuracy(self) -> float:
        self.model.eval()
        with self.torch.no_grad():
            return float((self.model(self.Xt).argmax(1) == self.yt).float().mean())


def _runs(case: dict[str, Any], data: tuple[np.ndarray, ...], seed: int) -> list[Any]:
    runs: list[Any] = [XpnetRun(case, data, seed)]
    if _torch_problem() is None:
        runs.append(TorchRun(case, data, runs[0].initial_weights()))
    for run in runs:  # compile kernels, create cuBLAS handles, pick GEMM algorithms
        run.steps(10)
    _sync()
    return runs


def _cli_like() -> dict[str, Any]:
    from xpnet.cli import DEFAULTS

    return {
        "hidden": list(DEFAULTS["hidden"]),
        "batch": DEFAULTS["batch_size"],
        "dropout": DEFAULTS["dropout"],
    }


def bench_case(case: dict[str, Any], data: tuple[np.ndarray, ...], epochs: int) -> dict:
    runs = _runs(case, data, seed=0)
    seconds: dict[str, list[float]] = {r.name: [] for r in runs}
    for e in range(epochs):
        for run in runs if e % 2 == 0 else runs[::-1]:
            seconds[run.name].append(run.epoch())
    out = {}
    for run in runs:
        out[run.name] = {
            "epoch_seconds": seconds[run.name],
            "median_epoch_seconds": statistics.median(seconds[run.name]),
            "kernels_per_step": _per_step(run.steps),
            "test_accuracy": run.accuracy(),
        }
    return out


def time_to_target(data: tuple[np.ndarray, ...], max_epochs: int) -> dict:
    runs = _runs(_cli_like(), data, seed=1)
    out: dict[str, dict[str, Any]] = {r.name: {"seconds": 0.0, "epochs": None} for r in runs}
    for e in range(max_epochs):
        for run in runs if e % 2 == 0 else runs[::-1]:
            rec = out[run.name]
            if rec["epochs"] is not None:
                continue
            rec["seconds"] += run.epoch()
            rec["accuracy"] = run.accuracy()
            if rec["accuracy"] >= TARGET_ACCURACY:
                rec["epochs"] = e + 1
        if all(r["epochs"] is not None for r in out.values()):
            break
    return out


# ----------------------------------------------------------------------------- report


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per case")
    parser.add_argument("--max-epochs", type=int, default=30, help="cap for time-to-98%%")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--require-gpu", action="store_true")
    args = parser.parse_args(argv)

    problem = _gpu_problem()
    if problem is not None:
        strict = args.require_gpu or os.environ.get("XPNET_REQUIRE_GPU") == "1"
        print(f"bench_gpu: no GPU to benchmark on: {problem}", file=sys.stderr)
        return 1 if strict else 0
    try:
        data = _data()
    except Exception as exc:
        print(f"bench_gpu: MNIST is needed under $XPNET_DATA_DIR/mnist: {exc}", file=sys.stderr)
        return 1
    torch_note = _torch_problem()
    if torch_note is None:
        cupy_counts, count_note = _cupy_counting_works()
    else:
        cupy_counts, count_note = False, f"n/a: {torch_note}"
        print(f"bench_gpu: PyTorch column skipped: {torch_note}", file=sys.stderr)

    cases = {"deep-b128": CASES["deep-b128"]} if args.quick else CASES
    epochs = 2 if args.quick else args.epochs
    results = {name: bench_case(case, data, epochs) for name, case in cases.items()}
    if not cupy_counts:
        for per_lib in results.values():
            per_lib["xpnet-cupy"]["kernels_per_step"] = None
    target = None if args.quick else time_to_target(data, args.max_epochs)

    device = _device_name()
    print(f"\n{device}, float32, TF32 {'on' if TF32 else 'off'}, median of {epochs} epochs")
    print(f"kernel counts: {count_note}\n")
    header = f"{'case':<11}{'library':<12}{'s/epoch':>9}{'vs torch':>10}{'kernels/step':>14}"
    header += f"{'test acc':>10}"
    print(header)
    print("-" * len(header))
    for name, per_lib in results.items():
        ref = per_lib.get("torch", {}).get("median_epoch_seconds")
        for lib, r in per_lib.items():
            ratio = None if ref is None else r["median_epoch_seconds"] / ref
            print(
                f"{name:<11}{lib:<12}{r['median_epoch_seconds']:>9.3f}{_fmt(ratio, '.2f'):>10}"
                f"{_fmt(r['kernels_per_step'], '.1f'):>14}{r['test_accuracy']:>10.4f}"
            )
    if target is not None:
        print(f"\ntime to {TARGET_ACCURACY:.0%} test accuracy, CLI-like model {_cli_like()}:")
        for lib, r in target.items():
            if r["epochs"] is None:
                print(f"  {lib:<12} not reached in {args.max_epochs} epochs ({r['seconds']:.1f} s)")
            else:
                print(f"  {lib:<12} {r['seconds']:.2f} s of training ({r['epochs']} epochs)")

    stamp = _dt.datetime.now(_dt.timezone.utc)
    out = HERE / "results" / f"gpu-bench-{stamp:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": stamp.isoformat(timespec="seconds"),
        "device": device,
        "tf32": TF32,
        "kernel_count_method": count_note,
        "cases": {k: {**CASES[k], "results": v} for k, v in results.items()},
        "time_to_98": None if target is None else {"model": _cli_like(), "results": target},
        "versions": _versions(),
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(HERE.parent)}")
    return 0


def _device_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])


def _versions() -> dict[str, str]:
    import cupy

    import xpnet

    v = {"xpnet": xpnet.__version__, "cupy": cupy.__version__, "numpy": np.__version__}
    if _torch_problem() is None:
        import torch

        v["torch"] = torch.__version__
    return v


if __name__ == "__main__":
    sys.exit(main())
