"""Can an xpnet training step be captured into a CUDA graph on CuPy, and what does it buy?

CuPy refuses any cuBLAS call while a stream is capturing (cupy/cupy#6290: its ``cublas``
wrapper calls ``setStream``, which raises ``NotImplementedError`` when
``cudaStreamIsCapturing`` is true), although cuBLAS itself supports capture. This script:

1. tries to capture one ordinary xpnet step (``model.forward`` / ``backward`` /
   ``optimizer.step``, matrix products through ``cupy.matmul``) and reports what happens;
2. captures the same step written against static buffers, with every matrix product sent to
   cuBLAS directly through ``ctypes`` (its own handle, stream and workspace, so CuPy's guard
   is never reached), the element-wise work through xpnet's fused CuPy kernels, and an Adam
   kernel that reads the step count from device memory (a captured graph replays its kernel
   arguments, so host-side bias corrections would freeze at the capture step);
3. checks that replaying the graph gives the same weights as running that step eagerly, and
   how close both are to xpnet's own step; and times eager vs graph replay per step.

    python benchmarks/cuda_graph_experiment.py            # 784-256-128-64-32-10, batch 128
    python benchmarks/cuda_graph_experiment.py --steps 500

Float32, synthetic data (capture does not depend on the values). Writes
``benchmarks/results/gpu-cuda-graph.json``. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# CuPy's default CUB reductions are left out so every reduction is a plain CuPy kernel; set
# before CuPy is imported because CuPy reads it once.
os.environ.setdefault("CUPY_ACCELERATORS", "")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

SIZES = (784, 256, 128, 64, 32, 10)
BATCH = 128
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8
TF32 = int(os.environ.get("CUPY_TF32", "0") or 0) > 0

_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_CUBLAS_DEFAULT_MATH, _CUBLAS_TF32_TENSOR_OP_MATH = 0, 3


def _gpu_problem() -> str | None:
    """None when the cupy backend can run here, else the library's own reason why not."""
    from xpnet.backend import unavailable_reason

    return unavailable_reason("cupy")


# ----------------------------------------------------------------------------- cuBLAS by hand


def _load_cublas() -> ctypes.CDLL:
    """The libcublas CuPy already loaded (same process, same library), else one by name."""
    import cupy

    a = cupy.ones((2, 2), dtype=cupy.float32)
    a @ a  # makes CuPy load libcublas
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "/libcublas.so" in path:
                return ctypes.CDLL(path)
    for name in ("libcublas.so.12", "libcublas.so.13", ctypes.util.find_library("cublas")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    raise RuntimeError("could not find libcublas to call it directly")


class DirectCublas:
    """A cuBLAS handle of our own, bound to one stream: SGEMM on row-major CuPy arrays."""

    def __init__(self, stream_ptr: int) -> None:
        import cupy

        self.lib = _load_cublas()
        self.handle = ctypes.c_void_p()
        self._check(self.lib.cublasCreate_v2(ctypes.byref(self.handle)), "create")
        self._check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)), "stream")
        # After setStream (which resets it): a fixed workspace, so nothing is allocated inside
        # a capture (cuBLAS before 12.2 would otherwise cudaMalloc one per capture).
        self.workspace = cupy.empty(32 << 20, dtype=cupy.uint8)
        self._check(
            self.lib.cublasSetWorkspace_v2(
                self.handle,
                ctypes.c_void_p(self.workspace.data.ptr),
                ctypes.c_size_t(self.workspace.nbytes),
            ),
            "workspace",
        )
        mode = _CUBLAS_TF32_TENSOR_OP_MATH if TF32 else _CUBLAS_DEFAULT_MATH
        self._check(self.lib.cublasSetMathMode(self.handle, ctypes.c_int(mode)), "math mode")
        self.one, self.zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"cuBLAS {what} failed with status {status}")

    def gemm(self, a: Any, b: Any, c: Any, ta: bool = False, tb: bool = False) -> None:
        """``c = op(a) @ op(b)`` for C-contiguous float32 arrays (``op`` transposes if set).

        cuBLAS is column-major and sees a row-major matrix as its transpose, so the call
        computes ``c.T = op(b).T @ op(a).T`` with ``b`` first.
        """
        rows, cols = c.shape
        inner = a.shape[0] if ta else a.shape[1]
        status = self.lib.cublasSgemm_v2(
            self.handle,
            ctypes.c_int(_CUBLAS_OP_T if tb else _CUBLAS_OP_N),
            ctypes.c_int(_CUBLAS_OP_T if ta else _CUBLAS_OP_N),
            ctypes.c_int(cols),
            ctypes.c_int(rows),
            ctypes.c_int(inner),
            ctypes.byref(self.one),
            ctypes.c_void_p(b.data.ptr),
            ctypes.c_int(b.shape[1]),
            ctypes.c_void_p(a.data.ptr),
            ctypes.c_int(a.shape[1]),
            ctypes.byref(self.zero),
            ctypes.c_void_p(c.data.ptr),
            ctypes.c_int(cols),
        )
        self._check(status, "sgemm")


# ----------------------------------------------------------------------------- the static step


def _adam_device_step_kernel() -> Any:
    import cupy

    # xpnet's fused Adam with the bias corrections formed on the device, in float64 like the
    # host's, from a step counter that the graph itself increments.
    return cupy.ElementwiseKernel(
        "T g, raw int32 t, float64 lr, float64 beta1, float64 beta2, float64 eps",
        "T p, T m, T v",
        """
        const double tt = (double)t[0];
        const T step_size = (T)(lr / (1.0 - pow(beta1, tt)));
        const T root_bc2 = (T)sqrt(1.0 - pow(beta2, tt));
        const T m_new = m * (T)beta1 + (T)(1.0 - beta1) * g;
        const T v_new = v * (T)beta2 + (T)(1.0 - beta2) * (g * g);
        m = m_new;
        v = v_new;
        p = p - step_size * (m_new / (sqrt(v_new) / root_bc2 + (T)eps));
        """,
        "xpnet_adam_device_step",
        options=("--fmad=false",),
        no_return=True,
    )


class StaticStep:
    """One training step of a ReLU MLP on fixed buffers, so it can be captured and replayed.

    Persistent state (weights, moments, step counter, batch buffers, loss sum) is allocated
    here, before any capture; temporaries come from whatever allocator is active.
    """

    def __init__(self, weights: list[np.ndarray], X: Any, y: Any, stream: Any) -> None:
        import array_api_compat.cupy as cupy_xp
        import cupy

        from xpnet.kernels import get_kernels

        self.cp = cupy
        self.kernels = get_kernels(cupy_xp)
        self.blas = DirectCublas(stream.ptr)
        self.adam = _adam_device_step_kernel()
        self.X, self.y = X, y
        self.params = [cupy.asarray(w, dtype=cupy.float32) for w in weights]
        self.grads = [cupy.empty_like(p) for p in self.params]
        self.m = [cupy.zeros_like(p) for p in self.params]
        self.v = [cupy.zeros_like(p) for p in self.params]
        self.t = cupy.zeros(1, dtype=cupy.int32)
        self.idx = cupy.zeros(BATCH, dtype=cupy.int64)
        self.xb = cupy.empty((BATCH, SIZES[0]), dtype=cupy.float32)
        self.yb = cupy.empty(BATCH, dtype=cupy.int64)
        self.ones = cupy.ones((1, BATCH), dtype=cupy.float32)
        self.classes = cupy.arange(SIZES[-1], dtype=cupy.int64)
        self.loss_sum = cupy.zeros((), dtype=cupy.float32)

    def state(self) -> list[Any]:
        return [*self.params, *self.m, *self.v, self.t, self.loss_sum]

    def step(self) -> None:
        cp, k, n_layers = self.cp, self.kernels, len(SIZES) - 1
        cp.take(self.X, self.idx, axis=0, out=self.xb)
        cp.take(self.y, self.idx, axis=0, out=self.yb)
        acts = [self.xb]
        for i in range(n_layers):
            z = cp.empty((BATCH, SIZES[i + 1]), dtype=cp.float32)
            self.blas.gemm(acts[-1], self.params[2 * i], z)
            acts.append(
                k.bias_activation(z, self.params[2 * i + 1], "relu" if i < n_layers - 1 else None)
            )
        log_p, probs = k.log_softmax_with_probs(acts[-1])
        target = (self.yb[:, None] == self.classes[None, :]).astype(cp.float32)
        self.loss_sum += -cp.sum(target * log_p) / BATCH
        g = (probs - target) * cp.float32(1.0 / BATCH)
        for i in range(n_layers - 1, -1, -1):
            if i < n_layers - 1:
                g = k.activation_backward(g, acts[i + 1], "relu")
            self.blas.gemm(acts[i], g, self.grads[2 * i], ta=True)
            self.blas.gemm(self.ones, g, self.grads[2 * i + 1].reshape(1, -1))
            if i > 0:
                dx = cp.empty((BATCH, SIZES[i]), dtype=cp.float32)
                self.blas.gemm(g, self.params[2 * i], dx, tb=True)
                g = dx
        self.t += 1
        for p, grad, m, v in zip(self.params, self.grads, self.m, self.v, strict=True):
            self.adam(grad, self.t, LR, BETA1, BETA2, EPS, p, m, v)


# ----------------------------------------------------------------------------- experiments


def try_plain_capture(weights: list[np.ndarray], X: Any, y: Any) -> str:
    """Capture xpnet's own step (cupy.matmul inside); return what happened."""
    import cupy

    from xpnet.losses import SoftmaxCrossEntropy
    from xpnet.optimizers import Adam
    from xpnet.testing import make_mlp

    model = make_mlp("cupy", sizes=SIZES, dtype="float32", seed=0)
    model.set_weights(weights)
    loss_fn, opt = SoftmaxCrossEntropy(), Adam(lr=LR)
    xb, yb = X[:BATCH], y[:BATCH]

    def step() -> None:
        loss_fn.forward(model.forward(xb, training=True), yb)
        model.backward(loss_fn.backward())
        opt.step(model.parameters())

    step()  # compile and create the optimizer state outside the capture
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    outcome = "captured without error"
    with stream:
        stream.begin_capture()
        try:
            step()
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                stream.end_capture()
            except Exception as exc:
                outcome += f" (end_capture: {type(exc).__name__}: {exc})"
    return outcome


def _timed(run: Any, stream: Any, steps: int, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        stream.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            run()
        stream.synchronize()
        times.append((time.perf_counter() - t0) / steps)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--check-steps", type=int, default=20)
    args = parser.parse_args(argv)
    problem = _gpu_problem()
    if problem is not None:
        print(f"cuda_graph_experiment: no GPU: {problem}", file=sys.stderr)
        return 0

    import cupy

    from xpnet.backend import to_numpy
    from xpnet.losses import SoftmaxCrossEntropy
    from xpnet.optimizers import Adam
    from xpnet.testing import make_mlp

    rng = np.random.default_rng(0)
    n = 60 * BATCH
    X = cupy.asarray(rng.random((n, SIZES[0]), dtype=np.float32))
    y = cupy.asarray(rng.integers(0, SIZES[-1], n))
    weights = make_mlp("numpy", sizes=SIZES, dtype="float32", seed=0).get_weights()
    report: dict[str, Any] = {"sizes": list(SIZES), "batch": BATCH, "tf32": TF32}

    report["plain_capture"] = try_plain_capture(weights, X, y)
    print(f"1. xpnet's own step under capture: {report['plain_capture']}")

    stream = cupy.cuda.Stream(non_blocking=True)
    batches = [cupy.asarray(rng.permutation(n)[:BATCH]) for _ in range(args.check_steps)]
    with stream:
        step = StaticStep(weights, X, y, stream)
        start = [a.copy() for a in step.state()]

        def restore() -> None:
            for a, s in zip(step.state(), start, strict=True):
                a[...] = s  # in place: the graph holds these addresses

        for _ in range(3):  # compile every kernel, pick cuBLAS algorithms
            step.step()
        restore()
        for b in batches:
            step.idx[...] = b
            step.step()
        eager = [to_numpy(p).copy() for p in step.params]

        pool = cupy.cuda.MemoryPool()  # private to the graph: its temporaries live here
        graph = None
        try:
            with cupy.cuda.using_allocator(pool.malloc):
                stream.begin_capture()
                try:
                    step.step()
                finally:
                    graph = stream.end_capture()
            report["direct_cublas_capture"] = "captured"
        except Exception as exc:
            report["direct_cublas_capture"] = f"{type(exc).__name__}: {exc}"
        print(f"2. static step, cuBLAS called directly: {report['direct_cublas_capture']}")
        if graph is None or report["direct_cublas_capture"] != "captured":
            return _write(report)

        restore()
        for b in batches:
            step.idx[...] = b
            graph.launch(stream)
        replayed = [to_numpy(p).copy() for p in step.params]
        report["graph_vs_eager_max_abs"] = max(
            float(np.max(np.abs(a - e))) for a, e in zip(replayed, eager, strict=True)
        )

        # The same batches through xpnet's own step, for the distance to the real thing.
        model = make_mlp("cupy", sizes=SIZES, dtype="float32", seed=0)
        model.set_weights(weights)
        loss_fn, opt = SoftmaxCrossEntropy(), Adam(lr=LR)
        for b in batches:
            loss_fn.forward(model.forward(X[b], training=True), y[b])
            model.backward(loss_fn.backward())
            opt.step(model.parameters())
        report["static_vs_xpnet_max_abs"] = max(
            float(np.max(np.abs(a - w))) for a, w in zip(eager, model.get_weights(), strict=True)
        )
        print(
            f"3. after {args.check_steps} steps: graph vs eager max |dw| "
            f"{report['graph_vs_eager_max_abs']:.3g}; static step vs xpnet's step "
            f"{report['static_vs_xpnet_max_abs']:.3g}"
        )

        fixed = batches[0]

        def eager_step() -> None:
            step.idx[...] = fixed
            step.step()

        def graph_step() -> None:
            step.idx[...] = fixed
            graph.launch(stream)

        def xpnet_step() -> None:
            loss_fn.forward(model.forward(X[fixed], training=True), y[fixed])
            model.backward(loss_fn.backward())
            opt.step(model.parameters())

        timings = {}
        for name, run in (("xpnet", xpnet_step), ("eager", eager_step), ("graph", graph_step)):
            timings[name] = _timed(run, stream, args.steps, args.repeats)
        # alternate once more so drift hits all three alike
        for name, run in (("graph", graph_step), ("eager", eager_step), ("xpnet", xpnet_step)):
            timings[name] += _timed(run, stream, args.steps, args.repeats)
        med = {k: statistics.median(v) for k, v in timings.items()}
        report["seconds_per_step"] = med
        report["speedup_graph_vs_eager"] = med["eager"] / med["graph"]
        report["speedup_graph_vs_xpnet"] = med["xpnet"] / med["graph"]
        try:
            dot = graph.debug_dot_str()
            report["graph_kernel_nodes"] = dot.count("KERNEL")
        except Exception as exc:
            report["graph_kernel_nodes"] = f"n/a ({type(exc).__name__})"
        print(
            f"4. per step (median of {2 * args.repeats} x {args.steps}): xpnet "
            f"{med['xpnet'] * 1e6:.0f} us, static eager {med['eager'] * 1e6:.0f} us, "
            f"graph {med['graph'] * 1e6:.0f} us: graph is {report['speedup_graph_vs_eager']:.2f}x "
            f"the eager static step, {report['speedup_graph_vs_xpnet']:.2f}x xpnet's step "
            f"(graph kernel nodes: {report['graph_kernel_nodes']})"
        )
        # `pool` stays referenced until here: the graph's temporaries live in it.
        report["graph_pool_bytes"] = pool.total_bytes()
    return _write(report)


def _write(report: dict[str, Any]) -> int:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    report["device"] = name.decode() if isinstance(name, bytes) else str(name)
    report["cupy"] = cupy.__version__
    report["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    out = HERE / "results" / "gpu-cuda-graph.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
