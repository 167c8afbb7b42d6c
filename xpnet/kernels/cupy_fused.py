"""CuPy fast paths: each element-wise hot spot of training as one fused CUDA kernel.

Every kernel evaluates the portable reference's formula in the same order of operations and
in the array's own precision. Kernels whose own arithmetic has multiply-adds (Adam, SGD, the
backward kernels, and with them the ReLU family) are compiled with ``--fmad=false``, so NVRTC
does not contract ``a * b + c`` into one FMA, which rounds once where NumPy rounds twice: they
match the portable kernels to the last bit on the same inputs. Kernels built on
``exp``/``tanh``/``log`` keep NVRTC's defaults, under which CUDA's math library is documented
and CuPy's own ufuncs run it, and their own arithmetic (adds, divides, selects) has nothing to
contract. ``tests/test_kernels.py`` holds them to that: on the GPU, on the CUDA sources
through NVRTC, and on the same sources compiled for the CPU.

Scalars (learning rate, betas, leaky slope) are kernel *arguments* cast to the array dtype on
the host, so one compiled kernel per dtype serves every step, a float32 kernel never computes
in float64, and nothing here reads a value back from the device.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat.cupy as cupy_xp
import cupy
import numpy as np

from .portable import PortableKernels

__all__ = ["CupyKernels"]

# Separately rounded multiply and add, as NumPy does; see the module docstring.
_EXACT_OPTIONS = ("--fmad=false",)
# exp/tanh/log as CuPy's ufuncs compile them (the flags CUDA's error bounds are stated for).
_MATH_OPTIONS: tuple[str, ...] = ()
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# Device helpers shared by the element-wise kernels. CuPy puts ``typedef <dtype> T;`` before
# this preamble, so the template parameter is called F to keep the two apart.
_PREAMBLE = r"""
template <typename F>
__device__ __forceinline__ F xpnet_relu(F x) {
    // NaN passes through, as numpy.maximum(x, 0) lets it.
    return (x > F(0) || isnan(x)) ? x : F(0);
}
template <typename F>
__device__ __forceinline__ F xpnet_leaky_relu(F x, F alpha) {
    return x > F(0) ? x : alpha * x;
}
template <typename F>
__device__ __forceinline__ F xpnet_sigmoid(F x) {
    // exp(-|x|) <= 1, so neither branch can overflow.
    const F e = exp(-fabs(x));
    return x >= F(0) ? F(1) / (F(1) + e) : e / (F(1) + e);
}
// GELU through CUDA's erfc (Phi(x) = erfc(-x / sqrt 2) / 2, as the portable kernel forms it).
template <typename F>
__device__ __forceinline__ F xpnet_gelu(F x) {
    return x * (F(0.5) * erfc(x * F(-0.7071067811865476)));
}
template <typename F>
__device__ __forceinline__ F xpnet_gelu_backward(F g, F x) {
    const F cdf = F(0.5) * erfc(x * F(-0.7071067811865476));
    const F pdf = F(0.3989422804014327) * exp(F(-0.5) * (x * x));
    return g * (cdf + x * pdf);
}
template <typename F>
__device__ __forceinline__ F xpnet_gelu_tanh(F x) {
    const F t = tanh(F(0.7978845608028654) * (x + F(0.044715) * (x * x * x)));
    return F(0.5) * x * (F(1) + t);
}
template <typename F>
__device__ __forceinline__ F xpnet_gelu_tanh_backward(F g, F x) {
    const F x2 = x * x;
    const F t = tanh(F(0.7978845608028654) * (x + F(0.044715) * (x2 * x)));
    const F du = F(0.7978845608028654) * (F(1) + F(3.0 * 0.044715) * x2);
    return g * (F(0.5) * (F(1) + t) + F(0.5) * x * (F(1) - t * t) * du);
}
template <typename F>
__device__ __forceinline__ F xpnet_silu_backward(F g, F x) {
    const F s = xpnet_sigmoid(x);
    return g * (s * (F(1) + x * (F(1) - s)));
}
"""

# ``{x}`` is the pre-activation: the input ``x``, or ``t = z + b`` in the fused bias kernels.
_FORWARD_OPS = {
    "relu": "xpnet_relu({x})",
    "leaky_relu": "xpnet_leaky_relu({x}, alpha)",
    "sigmoid": "xpnet_sigmoid({x})",
    "tanh": "tanh({x})",
    "gelu": "xpnet_gelu({x})",
    "gelu_tanh": "xpnet_gelu_tanh({x})",
    "silu": "{x} * xpnet_sigmoid({x})",
}

_BACKWARD_OPS = {
    "relu": "y > (T)0 ? g : (T)0",
    "leaky_relu": "y > (T)0 ? g : alpha * g",
    "sigmoid": "g * y * ((T)1 - y)",
    "tanh": "g * ((T)1 - y * y)",
    # For these ``y`` is the activation's *input* (see INPUT_ACTIVATIONS).
    "gelu": "xpnet_gelu_backward(g, y)",
    "gelu_tanh": "xpnet_gelu_tanh_backward(g, y)",
    "silu": "xpnet_silu_backward(g, y)",
}


def _uses_alpha(act: str) -> bool:
    return act == "leaky_relu"


def _uses_math(act: str | None) -> bool:
    return act in ("sigmoid", "tanh", *_INPUT_MATH)


# Activations whose backward kernels call exp/tanh/erfc themselves.
_INPUT_MATH = ("gelu", "gelu_tanh", "silu")


def _elementwise(
    in_params: str,
    out_params: str,
    operation: str,
    name: str,
    no_return: bool = False,
    math: bool = False,
) -> Any:
    return cupy.ElementwiseKernel(
        in_params,
        out_params,
        operation,
        name,
        preamble=_PREAMBLE,
        no_return=no_return,
        options=_MATH_OPTIONS if math else _EXACT_OPTIONS,
    )


def _forward_kernel(act: str) -> Any:
    alpha = ", T alpha" if _uses_alpha(act) else ""
    op = _FORWARD_OPS[act].format(x="x")
    return _elementwise(f"T x{alpha}", "T y", f"y = {op}", f"xpnet_{act}", math=_uses_math(act))


def _bias_kernel(act: str | None) -> Any:
    # z is an output parameter that is also read: z <- act(z + b), b broadcast along rows.
    if act is None:
        return _elementwise("T b", "T z", "z = z + b", "xpnet_bias")
    alpha = ", T alpha" if _uses_alpha(act) else ""
    op = _FORWARD_OPS[act].format(x="t")
    return _elementwise(
        f"T b{alpha}",
        "T z",
        f"const T t = z + b; z = {op}",
        f"xpnet_bias_{act}",
        math=_uses_math(act),
    )


def _backward_kernel(act: str) -> Any:
    alpha = ", T alpha" if _uses_alpha(act) else ""
    return _elementwise(
        f"T g, T y{alpha}",
        "T dx",
        f"dx = {_BACKWARD_OPS[act]}",
        # The exp/erfc/tanh backwards are named apart from the multiply-add kernels, which
        # are the ones compiled --fmad=false (tests/test_kernels.py tells them by name).
        f"xpnet_{act}_derivative" if act in _INPUT_MATH else f"xpnet_{act}_backward",
        math=act in _INPUT_MATH,
    )


_FORWARD = {act: _forward_kernel(act) for act in _FORWARD_OPS}
_BIAS = {act: _bias_kernel(act) for act in (None, *_FORWARD_OPS)}
_BACKWARD = {act: _backward_kernel(act) for act in _BACKWARD_OPS}

# m, v and p are read and written in place (output parameters); each new moment is kept in a
# register so p's update uses exactly the rounded value stored, as the portable code does.
_ADAM = _elementwise(
    "T g, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T step_size, T root_bc2, T eps",
    "T p, T m, T v",
    """
    const T m_new = m * beta1 + one_minus_beta1 * g;
    const T v_new = v * beta2 + one_minus_beta2 * (g * g);
    m = m_new;
    v = v_new;
    p = p - step_size * (m_new / (sqrt(v_new) / root_bc2 + eps));
    """,
    "xpnet_adam",
    no_return=True,
)

_SGD_MOMENTUM = {
    nesterov: _elementwise(
        "T g, T momentum, T one_minus_dampening, T lr",
        "T p, T buf",
        f"""
        const T b = buf * momentum + one_minus_dampening * g;
        buf = b;
        p = p - lr * {"(g + momentum * b)" if nesterov else "b"};
        """,
        "xpnet_sgd_nesterov" if nesterov else "xpnet_sgd_momentum",
        no_return=True,
    )
    for nesterov in (False, True)
}

# Row-wise log-softmax and softmax: one block per row, a tree reduction in shared memory for
# the row max and then for the sum of exp(x - max). The formulas are the portable ones:
# shifted = x - max; log_probs = shifted - log(sum); probs = exp(shifted) / sum.
LOG_SOFTMAX_SOURCE = r"""
#define XPNET_MAX_BLOCK 256

template <typename F>
__device__ __forceinline__ F xpnet_max_nan(F a, F b) {
    // NaN wins, as in numpy.max, so a diverged row stays visibly NaN.
    return (a > b || isnan(a)) ? a : b;
}

template <typename F>
__device__ __forceinline__ void xpnet_log_softmax_row(
        const F* x, F* logp, F* prob,
        const int n_cols, const int with_log, F* red) {
    const int tid = threadIdx.x;
    const long long base = (long long)blockIdx.x * n_cols;
    const F* xr = x + base;

    F mx = xr[0];
    for (int j = tid; j < n_cols; j += blockDim.x) mx = xpnet_max_nan(mx, xr[j]);
    red[tid] = mx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] = xpnet_max_nan(red[tid], red[tid + s]);
        __syncthreads();
    }
    mx = red[0];
    __syncthreads();

    F sum = F(0);
    for (int j = tid; j < n_cols; j += blockDim.x) sum += exp(xr[j] - mx);
    red[tid] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        __syncthreads();
    }
    const F total = red[0];
    const F log_total = log(total);
    for (int j = tid; j < n_cols; j += blockDim.x) {
        const F shifted = xr[j] - mx;
        if (with_log) logp[base + j] = shifted - log_total;
        prob[base + j] = exp(shifted) / total;
    }
}

extern "C" __global__ void xpnet_log_softmax_float32(
        const float* x, float* logp, float* prob, const int n_cols, const int with_log) {
    __shared__ float red[XPNET_MAX_BLOCK];
    xpnet_log_softmax_row<float>(x, logp, prob, n_cols, with_log, red);
}

extern "C" __global__ void xpnet_log_softmax_float64(
        const double* x, double* logp, double* prob, const int n_cols, const int with_log) {
    __shared__ double red[XPNET_MAX_BLOCK];
    xpnet_log_softmax_row<double>(x, logp, prob, n_cols, with_log, red);
}
"""
_MAX_BLOCK = 256  # XPNET_MAX_BLOCK above: the shared buffer holds one value per thread.

# Compiled on first use (per device), not at import: importing needs no GPU.
_LOG_SOFTMAX_MODULE = cupy.RawModule(code=LOG_SOFTMAX_SOURCE, options=_MATH_OPTIONS)

# The normalisation layers' element-wise parts, in the portable kernels' order of operations
# (statistics and row sums come from CuPy's reductions).
_INV_STD = _elementwise(
    "T var, T eps", "T inv_std", "inv_std = (T)1 / sqrt(var + eps)", "xpnet_norm_inv_std"
)
_CENTER_SCALE = _elementwise(
    "T x, T mean, T inv_std", "T xhat", "xhat = (x - mean) * inv_std", "xpnet_norm_center"
)
_SCALE_SHIFT = _elementwise(
    "T xhat, T weight, T bias", "T y", "y = xhat * weight + bias", "xpnet_norm_scale_shift"
)
_BATCH_NORM_BACKWARD = _elementwise(
    "T g, T xhat, T scale, T dbias, T dweight, T inv_n",
    "T dx",
    "dx = scale * (g - dbias * inv_n - xhat * (dweight * inv_n))",
    "xpnet_batch_norm_backward",
)
_LAYER_NORM_BACKWARD = _elementwise(
    "T g, T xhat, T inv_std, T mean_g, T mean_gx",
    "T dx",
    "dx = inv_std * (g - mean_g - xhat * mean_gx)",
    "xpnet_layer_norm_backward",
)

#: Every element-wise kernel object, for inspection (``tests/test_kernels.py`` compiles them).
ELEMENTWISE_KERNELS: tuple[Any, ...] = (
    *_FORWARD.values(),
    *_BIAS.values(),
    *_BACKWARD.values(),
    _ADAM,
    *_SGD_MOMENTUM.values(),
    _INV_STD,
    _CENTER_SCALE,
    _SCALE_SHIFT,
    _BATCH_NORM_BACKWARD,
    _LAYER_NORM_BACKWARD,
)


def _float_dtype(*arrays: Any) -> np.dtype | None:
    """The shared float32/float64 dtype of CuPy ``arrays``, or None (use the portable path)."""
    first = arrays[0]
    if not isinstance(first, cupy.ndarray) or first.dtype not in _FLOATS:
        return None
    for a in arrays[1:]:
        if not isinstance(a, cupy.ndarray) or a.dtype != first.dtype:
            return None
    return first.dtype


def _block_size(n_cols: int) -> int:
    block = 32  # one warp at least
    while block < n_cols and block < _MAX_BLOCK:
        block *= 2
    return block


class CupyKernels(PortableKernels):
    """Fused CuPy kernels with the portable kernels' maths.

    Inputs the fused kernels do not cover (a dtype other than float32/float64, mixed dtypes,
    softmax's backward) take the portable path, so behaviour never depends on the shortcut.
    """

    name = "cupy"

    def __init__(self, xp: ModuleType | None = None) -> None:
        super().__init__(cupy_xp if xp is None else xp)
        # RawModule.get_function builds a new function object on every call; the row kernel
        # runs once per batch, so each is fetched once per (dtype, device) and kept.
        self._row_functions: dict[tuple[str, int], Any] = {}

    # Products written straight into ``out`` (a view into the model's flat gradient buffer),
    # rather than the portable version's product-then-copy.
    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        if out is None or out.shape != (a.shape[0], b.shape[1]) or out.dtype != a.dtype:
            return a @ b
        return cupy.matmul(a, b, out=out)

    def sum_rows(self, a: Any, out: Any = None) -> Any:
        if out is None or out.shape != a.shape[1:] or out.dtype != a.dtype:
            return cupy.sum(a, axis=0)
        return cupy.sum(a, axis=0, out=out)

    def _fused(self, act: str, x: Any, alpha: float | None = None) -> Any:
        """``act(x)`` by its fused kernel, or None where the portable path must run."""
        dt = _float_dtype(x)
        if dt is None:
            return None
        kern = _FORWARD[act]
        return kern(x) if alpha is None else kern(x, dt.type(alpha))

    def _fused_backward(self, act: str, grad: Any, y: Any, alpha: float | None = None) -> Any:
        dt = _float_dtype(grad, y)
        if dt is None:
            return None
        kern = _BACKWARD[act]
        return kern(grad, y) if alpha is None else kern(grad, y, dt.type(alpha))

    def relu(self, x: Any) -> Any:
        out = self._fused("relu", x)
        return super().relu(x) if out is None else out

    def relu_backward(self, grad: Any, y: Any) -> Any:
        out = self._fused_backward("relu", grad, y)
        return super().relu_backward(grad, y) if out is None else out

    def leaky_relu(self, x: Any, alpha: float) -> Any:
        out = self._fused("leaky_relu", x, alpha)
        return super().leaky_relu(x, alpha) if out is None else out

    def leaky_relu_backward(self, grad: Any, y: Any, alpha: float) -> Any:
        out = self._fused_backward("leaky_relu", grad, y, alpha)
        return super().leaky_relu_backward(grad, y, alpha) if out is None else out

    def sigmoid(self, x: Any) -> Any:
        out = self._fused("sigmoid", x)
        return super().sigmoid(x) if out is None else out

    def sigmoid_backward(self, grad: Any, y: Any) -> Any:
        out = self._fused_backward("sigmoid", grad, y)
        return super().sigmoid_backward(grad, y) if out is None else out

    def tanh(self, x: Any) -> Any:
        out = self._fused("tanh", x)
        return super().tanh(x) if out is None else out

    def tanh_backward(self, grad: Any, y: Any) -> Any:
        out = self._fused_backward("tanh", grad, y)
        return super().tanh_backward(grad, y) if out is None else out

    def gelu(self, x: Any) -> Any:
        out = self._fused("gelu", x)
        return super().gelu(x) if out is None else out

    def gelu_backward(self, grad: Any, x: Any) -> Any:
        out = self._fused_backward("gelu", grad, x)
        return super().gelu_backward(grad, x) if out is None else out

    def gelu_tanh(self, x: Any) -> Any:
        out = self._fused("gelu_tanh", x)
        return super().gelu_tanh(x) if out is None else out

    def gelu_tanh_backward(self, grad: Any, x: Any) -> Any:
        out = self._fused_backward("gelu_tanh", grad, x)
        return super().gelu_tanh_backward(grad, x) if out is None else out

    def silu(self, x: Any) -> Any:
        out = self._fused("silu", x)
        return super().silu(x) if out is None else out

    def silu_backward(self, grad: Any, x: Any) -> Any:
        out = self._fused_backward("silu", grad, x)
        return super().silu_backward(grad, x) if out is None else out

    def normalize(self, x: Any, mean: Any, var: Any, eps: float) -> tuple[Any, Any]:
        dt = _float_dtype(x, mean, var)
        if dt is None:
            return super().normalize(x, mean, var, eps)
        inv_std = _INV_STD(var, dt.type(eps))
        return _CENTER_SCALE(x, mean, inv_std), inv_std

    def scale_shift(self, xhat: Any, weight: Any, bias: Any) -> Any:
        if _float_dtype(xhat, weight, bias) is None:
            return super().scale_shift(xhat, weight, bias)
        return _SCALE_SHIFT(xhat, weight, bias)

    def batch_norm_backward(
        self, grad: Any, xhat: Any, inv_std: Any, weight: Any, dweight: Any, dbias: Any
    ) -> Any:
        dt = _float_dtype(grad, xhat, inv_std, weight, dweight, dbias)
        if dt is None:
            return super().batch_norm_backward(grad, xhat, inv_std, weight, dweight, dbias)
        n = grad.shape[0]
        return _BATCH_NORM_BACKWARD(grad, xhat, weight * inv_std, dbias, dweight, dt.type(1.0 / n))

    def layer_norm_backward(self, grad: Any, xhat: Any, inv_std: Any, weight: Any) -> Any:
        if _float_dtype(grad, xhat, inv_std, weight) is None:
            return super().layer_norm_backward(grad, xhat, inv_std, weight)
        g = grad * weight
        mean_g = cupy.mean(g, axis=1, keepdims=True)
        mean_gx = cupy.mean(g * xhat, axis=1, keepdims=True)
        return _LAYER_NORM_BACKWARD(g, xhat, inv_std, mean_g, mean_gx)

    def softmax(self, x: Any) -> Any:
        if _float_dtype(x) is None or x.ndim != 2 or x.size == 0:
            return super().softmax(x)
        return self._log_softmax(x, with_log=False)[1]

    # softmax_backward stays portable: it needs a row sum, which no element-wise kernel has.

    def bias_activation(self, z: Any, b: Any, act: str | None, alpha: float = 0.0) -> Any:
        dt = _float_dtype(z, b)
        if dt is None or z.ndim != 2 or b.ndim != 1 or b.shape[0] != z.shape[1]:
            return super().bias_activation(z, b, act, alpha)
        # The output z is passed explicitly: the kernel writes act(z + b) over it in place.
        if act is None:
            return _BIAS[None](b, z)
        if act in _FORWARD_OPS:
            if _uses_alpha(act):
                return _BIAS[act](b, dt.type(alpha), z)
            return _BIAS[act](b, z)
        _BIAS[None](b, z)  # softmax: the row kernel after the bias
        return self.activation(z, act, alpha)

    def log_softmax_with_probs(self, logits: Any) -> tuple[Any, Any]:
        if _float_dtype(logits) is None or logits.ndim != 2 or logits.size == 0:
            return super().log_softmax_with_probs(logits)
        return self._log_softmax(logits, with_log=True)

    def _log_softmax(self, logits: Any, *, with_log: bool) -> tuple[Any, Any]:
        x = cupy.ascontiguousarray(logits)
        n_rows, n_cols = (int(d) for d in x.shape)
        prob = cupy.empty_like(x)
        logp = cupy.empty_like(x) if with_log else prob  # not written when with_log is 0
        key = (x.dtype.name, int(getattr(x.device, "id", 0)))
        kern = self._row_functions.get(key)
        if kern is None:
            kern = _LOG_SOFTMAX_MODULE.get_function(f"xpnet_log_softmax_{x.dtype.name}")
            self._row_functions[key] = kern
        kern(
            (n_rows,),
            (_block_size(n_cols),),
            (x, logp, prob, np.int32(n_cols), np.int32(1 if with_log else 0)),
        )
        return (logp if with_log else None), prob

    def adam_update(
        self,
        p: Any,
        g: Any,
        m: Any,
        v: Any,
        *,
        beta1: float,
        beta2: float,
        step_size: float,
        root_bc2: float,
        eps: float,
        step: int,
    ) -> None:
        dt = _float_dtype(p, g, m, v)
        if dt is None or not (p.shape == g.shape == m.shape == v.shape):
            super().adam_update(
                p,
                g,
                m,
                v,
                beta1=beta1,
                beta2=beta2,
                step_size=step_size,
                root_bc2=root_bc2,
                eps=eps,
                step=step,
            )
            return
        # 1 - beta is formed in float64 on the host and then rounded, as the portable
        # ``(1.0 - beta1) * g`` does under NumPy's promotion rules.
        t = dt.type
        _ADAM(
            g,
            t(beta1),
            t(1.0 - beta1),
            t(beta2),
            t(1.0 - beta2),
            t(step_size),
            t(root_bc2),
            t(eps),
            p,
            m,
            v,
        )

    def sgd_momentum_update(
        self,
        p: Any,
        g: Any,
        buf: Any,
        *,
        lr: float,
        momentum: float,
        dampening: float,
        nesterov: bool,
    ) -> None:
        dt = _float_dtype(p, g, buf)
        if dt is None or not (p.shape == g.shape == buf.shape):
            super().sgd_momentum_update(
                p, g, buf, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov
            )
            return
        t = dt.type
        _SGD_MOMENTUM[bool(nesterov)](g, t(momentum), t(1.0 - dampening), t(lr), p, buf)
