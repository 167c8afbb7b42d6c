"""Kernel-level ratios, side by side in one process: the optimizer update of one epoch.

Adam over the seed MLP's 244,522 float32 parameters (one flat buffer, as ``fit`` updates
it), 469 steps (one MNIST epoch at batch 128), with: numba serial, numba parallel
(``prange``), NumPy in-place, and PyTorch's fused CPU Adam (``torch._fused_adam_``). The
variants run interleaved (A B C D A B C D ...) so machine-load drift hits all alike; the
report is the median of ``--repeats`` epochs each and every variant's ratio to numba serial.
On a shared machine the absolute times are noise, the ratios less so.

    python benchmarks/bench_kernels.py [--repeats 7] [--steps 469] [--size 244522]
    python benchmarks/bench_kernels.py --compile   # first-call compile cost, cold and warm
    python benchmarks/bench_kernels.py --epochs deep-b128 --repeats 3   # needs MNIST

Also times the element-wise kernels of one batch-128 forward/backward (bias + ReLU and
ReLU backward at 128x256, log-softmax at 128x10) for numba vs NumPy in-place, and then the
GELU, SiLU, dropout and clipping kernels one by one (``--new-kernels``: only those).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_kernels.py --new-kernels --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def _adam_variants(n: int, steps: int) -> dict[str, Callable[[], None]]:
    from xpnet.kernels.numba_cpu import NumbaKernels
    from xpnet.kernels.numpy_fast import NumpyKernels

    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(n, dtype=np.float32) * 0.01 for _ in range(4)]
    variants: dict[str, Callable[[], None]] = {}

    def xpnet_epoch(kernels: NumpyKernels) -> Callable[[], None]:
        p = rng.standard_normal(n, dtype=np.float32)
        m, v = np.zeros_like(p), np.zeros_like(p)

        def run() -> None:
            for t in range(1, steps + 1):
                kernels.adam_update(
                    p, grads[t % 4], m, v, beta1=0.9, beta2=0.999,
                    step_size=1e-3 / (1 - 0.9**t), root_bc2=math.sqrt(1 - 0.999**t),
                    eps=1e-8, step=t,
                )  # fmt: skip

        return run

    variants["numba serial"] = xpnet_epoch(NumbaKernels(parallel=False))
    variants["numba parallel"] = xpnet_epoch(NumbaKernels(parallel=True))
    variants["numpy in-place"] = xpnet_epoch(NumpyKernels())
    try:
        import torch
    except ImportError:
        return variants
    # What torch.optim.Adam(fused=True) calls on the CPU, minus its Python bookkeeping.
    tp = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))
    tm, tv = torch.zeros_like(tp), torch.zeros_like(tp)
    tg = [torch.from_numpy(g) for g in grads]
    tsteps = torch.zeros(1)

    def torch_fused() -> None:
        tsteps.zero_()
        for t in range(1, steps + 1):
            tsteps.add_(1)
            torch._fused_adam_(
                [tp], [tg[t % 4]], [tm], [tv], [], [tsteps], lr=1e-3, beta1=0.9,
                beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False,
            )  # fmt: skip

    variants["torch fused"] = torch_fused
    return variants


def _elementwise_variants() -> dict[str, Callable[[], None]]:
    from xpnet.kernels.numba_cpu import NumbaKernels
    from xpnet.kernels.numpy_fast import NumpyKernels

    rng = np.random.default_rng(1)
    z = rng.standard_normal((128, 256), dtype=np.float32)
    b = rng.standard_normal(256, dtype=np.float32)
    g = rng.standard_normal((128, 256), dtype=np.float32)
    logits = rng.standard_normal((128, 10), dtype=np.float32)
    out: dict[str, Callable[[], None]] = {}
    for name, k in (("numba", NumbaKernels()), ("numpy", NumpyKernels())):

        def run(k: NumpyKernels = k) -> None:
            for _ in range(469):
                y = k.bias_activation(z.copy(), b, "relu")
                k.activation_backward(g, y, "relu")
                k.log_softmax_with_probs(logits)

        out[f"elementwise {name}"] = run
    return out


def _new_kernel_variants(numba_kernels: bool) -> dict[str, Callable[[], None]]:
    """GELU (both forms) and SiLU forward and backward, Dense's bias + GELU, dropout (mask
    and apply) at one batch-128 layer (128x256), and clipping's norm and scaling over the
    model's flat gradient, each 469 times (one epoch): numba or NumPy in-place."""
    from xpnet.kernels.numba_cpu import NumbaKernels
    from xpnet.kernels.numpy_fast import NumpyKernels

    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 256), dtype=np.float32) * 2
    g = rng.standard_normal((128, 256), dtype=np.float32)
    b = rng.standard_normal(256, dtype=np.float32)
    # Norm about 1: a limit of 0.5 then scales it every call by a float32 factor below 1
    # (0.5 / (0.5 + 1e-6) after the first), never down into the subnormal range.
    flat = rng.standard_normal(244_522, dtype=np.float32) / 500
    k: NumpyKernels = NumbaKernels() if numba_kernels else NumpyKernels()

    def loop(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(469):
                fn()

        return run

    cases: dict[str, Callable[[], object]] = {
        "gelu": lambda: k.gelu(x),
        "gelu backward": lambda: k.gelu_backward(g, x),
        "bias + gelu": lambda: k.bias_activation(x.copy(), b, "gelu"),
        "gelu_tanh": lambda: k.gelu_tanh(x),
        "gelu_tanh backward": lambda: k.gelu_tanh_backward(g, x),
        "silu": lambda: k.silu(x),
        "silu backward": lambda: k.silu_backward(g, x),
        "dropout p=0.2": lambda: k.dropout(x, 0.2, 12345, 7),
        # Gradients that the limit clips (a multiply) and that it does not (none needed).
        "clip norm, clipped": lambda: k.clip_grad_norm([flat], 0.5, 1e-6),
        "clip norm, within": lambda: k.clip_grad_norm([flat], 1e30, 1e-6),
    }
    return {name: loop(fn) for name, fn in cases.items()}


def _new_kernels(repeats: int) -> None:
    """numba against NumPy in-place for the kernels of _new_kernel_variants, interleaved."""
    sets = {lib: _new_kernel_variants(lib == "numba") for lib in ("numba", "numpy")}
    both = {f"{name} [{lib}]": run for lib, runs in sets.items() for name, run in runs.items()}
    med = _interleaved(both, repeats)
    print(f"x469 at 128x256 float32 (clip: 244,522 float32), median of {repeats}")
    print(f"  {'kernel':22s} {'numba':>9s} {'numpy':>9s}  numba/numpy")
    for name in sets["numba"]:
        t_nb, t_np = med[f"{name} [numba]"], med[f"{name} [numpy]"]
        print(f"  {name:22s} {t_nb:8.4f}s {t_np:8.4f}s  {t_nb / t_np:6.2f}")


def _interleaved(variants: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for run in variants.values():
        run()  # compile / warm up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# name -> (NumbaKernels(parallel=...) or None for NumpyKernels, extra environment)
EPOCH_VARIANTS: dict[str, tuple[bool | None, dict[str, str]]] = {
    "numba serial": (False, {}),
    "numba parallel (omp)": (True, {}),
    "numba parallel (workqueue)": (True, {"NUMBA_THREADING_LAYER": "workqueue"}),
    "numpy in-place": (None, {}),
}


def _epoch_worker(case: str, variant: str, epochs: int) -> None:
    """Train the seed MLP ``epochs`` epochs with one kernel set; print the epoch times."""
    from xpnet import Sequential, kernels
    from xpnet.datasets import load_mnist, to_unit_range
    from xpnet.kernels.numba_cpu import NumbaKernels
    from xpnet.kernels.numpy_fast import NumpyKernels
    from xpnet.layers import Dense
    from xpnet.optimizers import Adam

    parallel = EPOCH_VARIANTS[variant][0]
    k = NumpyKernels() if parallel is None else NumbaKernels(parallel=parallel)
    for ns in ("numpy", "array_api_compat.numpy"):  # the registry's per-namespace cache
        kernels._by_namespace[ns] = k
    (X, y), _ = load_mnist(download=False)
    X = to_unit_range(X)
    widths = [784, 256, 128, 64, 32]
    layers = [Dense(a, b, activation="relu") for a, b in itertools.pairwise(widths)]
    model = Sequential([*layers, Dense(widths[-1], 10)], seed=0)
    batch = {"deep-b128": 128, "deep-b32": 32}[case]
    hist = model.fit(X, y, epochs=epochs, batch_size=batch, optimizer=Adam(lr=1e-3), seed=0)
    print("EPOCHS " + " ".join(f"{t:.4f}" for t in hist.history["seconds"]))


def _epochs(case: str, repeats: int, variants: list[str]) -> None:
    """Whole epochs, each kernel set in a fresh process (a parallel kernel's thread pool
    would otherwise stay alive and slow the next variant), alternating A B C A B C."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name in variants:
            env = {**os.environ, **EPOCH_VARIANTS[name][1]}
            cmd = [sys.executable, __file__, "--epoch-worker", name, "--epochs", case]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            lines = [ln for ln in res.stdout.splitlines() if ln.startswith("EPOCHS ")]
            if not lines:
                raise RuntimeError(f"{name} failed:\n{res.stderr[-2000:]}")
            # The second epoch: the first includes loading the compiled code.
            times[name].append(float(lines[0].split()[2]))
    print(
        f"{case}: s/epoch (2nd epoch of a fresh process), median of {repeats}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    ref = statistics.median(times[variants[0]])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:28s} {med:.3f} s  ({min(ts):.3f}-{max(ts):.3f})  {med / ref:5.2f}x")


def _compile_cost() -> None:
    """First call of every kernel in a fresh process: with an empty cache, then warm."""
    code = (
        "import time, numpy as np; t0 = time.perf_counter();"
        "from xpnet.kernels.numba_cpu import NumbaKernels; k = NumbaKernels();"
        "t1 = time.perf_counter();"
        "[k.activation(np.ones((4, 3), dt), a, 0.1) for dt in ('float32',) for a in"
        " ('relu','leaky_relu','sigmoid','tanh','softmax')];"
        "[k.activation_backward(np.ones((4, 3), 'float32'), np.ones((4, 3), 'float32'), a, 0.1)"
        " for a in ('relu','leaky_relu','sigmoid','tanh','softmax')];"
        "k.bias_activation(np.ones((4, 3), 'float32'), np.ones(3, 'float32'), 'relu');"
        "k.log_softmax_with_probs(np.ones((4, 3), 'float32'));"
        "p = np.ones(5, 'float32'); k.adam_update(p, p.copy(), p.copy(), p.copy(), beta1=.9,"
        " beta2=.999, step_size=1e-3, root_bc2=.03, eps=1e-8, step=1);"
        "print(f'import {t1 - t0:.2f} s, first calls (float32) {time.perf_counter() - t1:.2f} s')"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold cache", "warm cache"):
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, cwd=HERE.parent,
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            print(f"{label}: {res.stdout.strip()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=469)
    ap.add_argument("--size", type=int, default=244_522)
    ap.add_argument("--compile", action="store_true", help="measure the first-call cost")
    ap.add_argument("--epochs", metavar="CASE", help="whole epochs instead: deep-b128|deep-b32")
    ap.add_argument("--variants", default=",".join(EPOCH_VARIANTS), help="for --epochs")
    ap.add_argument("--epoch-worker", choices=EPOCH_VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument(
        "--new-kernels", action="store_true", help="GELU/SiLU/dropout/clip kernels only"
    )
    args = ap.parse_args(argv)
    if args.new_kernels:
        _new_kernels(args.repeats)
        return 0
    if args.compile:
        _compile_cost()
        return 0
    if args.epoch_worker:
        _epoch_worker(args.epochs, args.epoch_worker, 2)
        return 0
    if args.epochs:
        _epochs(args.epochs, args.repeats, args.variants.split(","))
        return 0
    import numba

    print(
        f"numba {numba.__version__}, {numba.get_num_threads()} numba threads, "
        f"threading layer chosen on first parallel call; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    med = _interleaved(_adam_variants(args.size, args.steps), args.repeats)
    ref = med["numba serial"]
    print(f"Adam, {args.size} float32 parameters x {args.steps} steps, median of {args.repeats}")
    for name, t in med.items():
        print(f"  {name:16s} {t:.4f} s   {t / ref:5.2f}x numba serial")
    med = _interleaved(_elementwise_variants(), args.repeats)
    print("bias+ReLU 128x256, ReLU backward 128x256, log-softmax 128x10, x469")
    for name, t in med.items():
        print(f"  {name:20s} {t:.4f} s")
    _new_kernels(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
