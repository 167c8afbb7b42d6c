"""The fast kernels (NumPy in-place, CuPy fused) against the portable reference.

Every fast method runs on the same inputs as :class:`~xpnet.kernels.PortableKernels` on the
same backend and must agree to a stated number of units in the last place (ulps):

* algebraic kernels (ReLU family, the backward kernels, bias add, Adam, SGD momentum) use the
  same operations in the same order, so they agree to 4 ulps (in practice bit for bit);
* kernels built on ``exp``/``tanh`` to 16 ulps (CUDA's math library is within 2 ulps of
  correct rounding, and the portable path on CuPy calls the same functions);
* the row-wise softmax to 64 ulps plus an absolute term scaled by the logits, because the
  fused kernel sums a row in a different order than ``xp.sum``.

The CuPy cases carry the ``gpu`` mark and skip without CuPy and a CUDA device (they fail
instead under ``XPNET_REQUIRE_GPU=1``). Two more checks need CuPy installed but no device, and
skip without it: the CUDA sources are compiled with NVRTC to check that float32 kernels
contain no float64 arithmetic and the algebraic kernels no contracted multiply-adds; and the
``cupy-on-host`` backend runs the same sources compiled for the CPU with g++ (see the end of
this file), so every test here also checks CupyKernels and its kernels on a machine without a
GPU.
"""

from __future__ import annotations

import math
import os
import re
import sys

import numpy as np
import pytest

import xpnet
from xpnet import kernels
from xpnet.backend import to_numpy
from xpnet.kernels import PortableKernels, get_kernels
from xpnet.kernels.numpy_fast import _FLUSH_EVERY, NumpyKernels
from xpnet.layers import Dense, Tanh
from xpnet.optimizers import SGD, Adam
from xpnet.testing import assert_allclose, make_blobs, tolerance

DTYPES = ["float32", "float64"]
ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh"]
SHAPES_2D = [(1, 1), (7, 13), (33, 10), (128, 257)]
SHAPES_ANY = [(1,), (13,), (257,), (64, 33)]
ALPHA = 0.01

ALGEBRAIC_ULPS = 4
TRANSCENDENTAL_ULPS = 16
SOFTMAX_ULPS = 64

# Values where the branches and the saturation of each activation are decided.
EDGE_VALUES = [0.0, -0.0, 1e-3, -1e-3, 20.0, -20.0, 80.0, -80.0, 1e3, -1e3]


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test chooses its kernels anew: no XPNET_KERNELS, an empty per-namespace cache."""
    monkeypatch.delenv("XPNET_KERNELS", raising=False)
    kernels.reset_kernels()  # the choice is cached per namespace
    kernels._by_namespace.clear()
    yield
    kernels._by_namespace.clear()


@pytest.fixture(
    params=[
        pytest.param("numpy", id="numpy"),
        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
        pytest.param("cupy-on-host", id="cupy-on-host"),
    ]
)
def fast_backend(request):
    """A backend with fast kernels: NumPy always, CuPy where a CUDA device is present, and
    CuPy's kernels compiled for the CPU where CuPy and g++ are installed (see the end of the
    file): the CUDA sources and CupyKernels' calling code run on NumPy arrays."""
    if request.param == "cupy-on-host":
        emulated = _cupy_kernels_on_host(
            request.getfixturevalue("monkeypatch"), request.getfixturevalue("host_build_dir")
        )
        with xpnet.use_backend("numpy") as backend:
            kernels._by_namespace[backend.xp.__name__] = emulated
            yield backend
        return
    try:
        with xpnet.use_backend(request.param) as backend:
            yield backend
    except xpnet.BackendUnavailableError as exc:
        if request.param == "cupy" and os.environ.get("XPNET_REQUIRE_GPU") == "1":
            pytest.fail(f"XPNET_REQUIRE_GPU=1 but the cupy backend is unavailable: {exc}")
        pytest.skip(f"backend {request.param!r} unavailable: {exc}")


def _forward(k, act, x):
    """The activation by its own kernel method (``k.relu(x)``, ``k.leaky_relu(x, alpha)``)."""
    return getattr(k, act)(x, ALPHA) if act == "leaky_relu" else getattr(k, act)(x)


def _backward(k, act, grad, y):
    fn = getattr(k, f"{act}_backward")
    return fn(grad, y, ALPHA) if act == "leaky_relu" else fn(grad, y)


def _fast(backend):
    k = get_kernels(backend.xp)
    assert type(k) is not PortableKernels, f"{backend.name} has no fast kernels registered"
    return k


def _ulp_close(actual, desired, dtype, ulps, scale=1.0, what=""):
    eps = float(np.finfo(dtype).eps)
    assert str(actual.dtype).endswith(dtype), f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert_allclose(actual, desired, rtol=ulps * eps, atol=ulps * eps * scale, err_msg=what)


def _dev(backend, host, dtype):
    """A fresh array on ``backend`` (NumPy's asarray would share ``host``'s memory)."""
    return backend.asarray(np.array(host, dtype=np.float64, copy=True), dtype=dtype)


def _normal(rng, shape, scale=1.0, edges=False):
    x = rng.standard_normal(shape) * scale
    if edges:
        flat = x.reshape(-1)
        k = min(flat.size, len(EDGE_VALUES))
        flat[:k] = EDGE_VALUES[:k]
    return x


# ----------------------------------------------------------------------------- registry


def test_numpy_gets_its_fast_kernels_and_strict_the_portable_ones():
    import array_api_compat.numpy as np_xp
    import array_api_strict

    assert isinstance(get_kernels(np_xp), NumpyKernels)
    assert get_kernels(np_xp) is get_kernels(np_xp)  # cached per namespace
    assert type(get_kernels(array_api_strict)) is PortableKernels


def test_xpnet_kernels_portable_selects_the_reference(monkeypatch):
    import array_api_compat.numpy as np_xp

    assert isinstance(get_kernels(np_xp), NumpyKernels)  # fills the cache first
    monkeypatch.setenv("XPNET_KERNELS", "portable")
    kernels.reset_kernels()  # the choice is cached per namespace
    assert type(get_kernels(np_xp)) is PortableKernels
    monkeypatch.setenv("XPNET_KERNELS", "PORTABLE")
    kernels.reset_kernels()  # the choice is cached per namespace
    assert type(get_kernels(np_xp)) is PortableKernels
    monkeypatch.delenv("XPNET_KERNELS")
    kernels.reset_kernels()  # the choice is cached per namespace
    assert isinstance(get_kernels(np_xp), NumpyKernels)


def test_cupy_namespace_falls_back_to_portable_when_cupy_cannot_be_imported(monkeypatch):
    # A None entry in sys.modules makes ``import cupy`` raise ImportError, as on a machine
    # without CuPy; the registry must then hand out the portable kernels, not fail.
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(sys.modules, "xpnet.kernels.cupy_fused", raising=False)
    monkeypatch.setattr(kernels, "_fused_failure_reported", False)
    with pytest.warns(RuntimeWarning):
        k = kernels._make("array_api_compat.cupy", None)
    assert type(k) is PortableKernels


def test_a_failed_fused_import_warns_once_naming_the_error(monkeypatch):
    # The fused module itself failing (a broken CUDA install, say) used to fall back silently
    # to the portable kernels, about four times the kernel launches per step.
    import types
    import warnings

    monkeypatch.setitem(sys.modules, "xpnet.kernels.cupy_fused", None)
    monkeypatch.setattr(kernels, "_fused_failure_reported", False)
    fake_cupy_namespace = types.ModuleType("array_api_compat.cupy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = get_kernels(fake_cupy_namespace)
        kernels.reset_kernels()
        second = get_kernels(fake_cupy_namespace)
    assert type(first) is PortableKernels and type(second) is PortableKernels
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    # The error itself is named: its type and Python's own message.
    assert "ModuleNotFoundError" in messages[0] and "None in sys.modules" in messages[0]
    assert "portable" in messages[0]


def test_every_activation_layer_has_its_kernel_pair_on_every_kernel_set():
    from xpnet.layers.activations import ACTIVATIONS as LAYERS

    assert set(LAYERS) == set(kernels.ACTIVATION_KERNELS)
    for cls in (PortableKernels, NumpyKernels):
        for act in kernels.ACTIVATION_KERNELS:
            assert callable(getattr(cls, act)) and callable(getattr(cls, f"{act}_backward"))


def test_unknown_activation_names_the_known_ones():
    k = PortableKernels()
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*relu, leaky_relu"):
        k.activation(np.zeros((2, 2)), "swish")
    with pytest.raises(ValueError, match="unknown activation 'matmul'"):
        k.activation_backward(np.zeros((2, 2)), np.zeros((2, 2)), "matmul")


def test_backend_hands_out_the_kernels_of_its_namespace(monkeypatch):
    numpy_backend = xpnet.backend.resolve_backend("numpy")
    assert numpy_backend.kernels is get_kernels(numpy_backend.xp)
    assert isinstance(numpy_backend.kernels, NumpyKernels)
    assert numpy_backend.kernels.xp is numpy_backend.xp
    monkeypatch.setenv("XPNET_KERNELS", "portable")
    kernels.reset_kernels()
    assert type(numpy_backend.kernels) is PortableKernels
    assert numpy_backend.kernels.xp is numpy_backend.xp


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [*ACTIVATIONS, "softmax"])
@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
def test_activation_matches_portable(fast_backend, rng, dtype, act, shape):
    host = _normal(rng, shape, 3.0, edges=True)
    x = _dev(fast_backend, host, dtype)
    before = to_numpy(x).copy()
    got = _forward(_fast(fast_backend), act, x)
    want = _forward(PortableKernels(), act, x)
    np.testing.assert_array_equal(to_numpy(x), before, err_msg="activation modified its input")
    # The dispatch by name (Dense's fused path uses it) is the same method.
    _ulp_close(_fast(fast_backend).activation(x, act, ALPHA), got, dtype, 0, what=f"{act} by name")
    ulps = ALGEBRAIC_ULPS if act in ("relu", "leaky_relu") else TRANSCENDENTAL_ULPS
    if act == "softmax":
        ulps = SOFTMAX_ULPS
    _ulp_close(got, want, dtype, ulps, what=f"{act} forward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [*ACTIVATIONS, "softmax"])
@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
def test_activation_backward_matches_portable(fast_backend, rng, dtype, act, shape):
    x = _dev(fast_backend, _normal(rng, shape, 3.0, edges=True), dtype)
    y = PortableKernels().activation(x, act, ALPHA)
    grad = _dev(fast_backend, _normal(rng, shape), dtype)
    got = _backward(_fast(fast_backend), act, grad, y)
    want = _backward(PortableKernels(), act, grad, y)
    _ulp_close(got, want, dtype, ALGEBRAIC_ULPS, what=f"{act} backward")
    by_name = _fast(fast_backend).activation_backward(grad, y, act, ALPHA)
    _ulp_close(by_name, got, dtype, 0, what=f"{act} backward by name")


def test_relu_backward_is_zero_where_the_output_is_zero(fast_backend):
    y = _dev(fast_backend, np.array([[0.0, 0.0, 2.0], [0.0, 1.0, 0.0]]), "float32")
    grad = _dev(fast_backend, np.array([[5.0, -3.0, 7.0], [1.0, 2.0, -4.0]]), "float32")
    got = to_numpy(_fast(fast_backend).relu_backward(grad, y))
    np.testing.assert_array_equal(got, [[0.0, 0.0, 7.0], [0.0, 2.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, *ACTIVATIONS, "softmax"])
@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
def test_bias_activation_matches_portable(fast_backend, rng, dtype, act, shape):
    z_host = _normal(rng, shape, 3.0, edges=True)
    b = _dev(fast_backend, _normal(rng, shape[1:]), dtype)
    got = _fast(fast_backend).bias_activation(_dev(fast_backend, z_host, dtype), b, act)
    want = PortableKernels().bias_activation(_dev(fast_backend, z_host, dtype), b, act)
    ulps = {"sigmoid": TRANSCENDENTAL_ULPS, "tanh": TRANSCENDENTAL_ULPS, "softmax": SOFTMAX_ULPS}
    _ulp_close(got, want, dtype, ulps.get(act, ALGEBRAIC_ULPS), what=f"bias + {act}")
    assert tuple(got.shape) == shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 10), (64, 10), (9, 300), (3, 1000)], ids=str)
def test_log_softmax_matches_portable(fast_backend, rng, dtype, shape):
    host = _normal(rng, shape, 4.0)
    rows = shape[0]
    if rows >= 5:
        host[1] = 7.0  # a constant row: uniform probabilities
        host[2, :] = 0.0
        host[2, -1] = 1e4  # one dominant class: exp underflows everywhere else
        host[3] += 1e4  # large logits: only the shift by the row max keeps exp finite
        host[4] -= 1e4
    logits = _dev(fast_backend, host, dtype)
    log_p, p = _fast(fast_backend).log_softmax_with_probs(logits)
    want_log_p, want_p = PortableKernels().log_softmax_with_probs(logits)
    scale = 1.0 + float(np.max(np.abs(host)))
    _ulp_close(log_p, want_log_p, dtype, SOFTMAX_ULPS, scale=scale, what="log_softmax")
    _ulp_close(p, want_p, dtype, SOFTMAX_ULPS, what="softmax")
    assert np.all(np.isfinite(to_numpy(log_p)))
    assert_allclose(np.sum(to_numpy(p).astype(np.float64), axis=1), np.ones(rows), rtol=1e-5)


def test_the_row_kernel_is_fetched_once_per_dtype(fast_backend, rng, monkeypatch):
    # RawModule.get_function builds a new function object per call; once per batch that is
    # host time in series with the GPU, so CupyKernels keeps the function per dtype.
    k = _fast(fast_backend)
    if k.name != "cupy":
        pytest.skip("the row kernel belongs to the CuPy kernels")
    from xpnet.kernels import cupy_fused as cf

    real, fetched = cf._LOG_SOFTMAX_MODULE, []

    class CountingModule:
        def get_function(self, name):
            fetched.append(name)
            return real.get_function(name)

    monkeypatch.setattr(cf, "_LOG_SOFTMAX_MODULE", CountingModule())
    k._row_functions.clear()
    for dtype in ("float32", "float32", "float64", "float32", "float64"):
        logits = _dev(fast_backend, _normal(rng, (4, 10)), dtype)
        k.softmax(logits)
        k.log_softmax_with_probs(logits)
    assert sorted(fetched) == ["xpnet_log_softmax_float32", "xpnet_log_softmax_float64"]


# ----------------------------------------------------------------------------- optimizers


def _adam_scalars(t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    return {
        "beta1": beta1,
        "beta2": beta2,
        "step_size": lr / (1.0 - beta1**t),
        "root_bc2": math.sqrt(1.0 - beta2**t),
        "eps": eps,
        "step": t,
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_ANY, ids=str)
def test_adam_update_matches_portable(fast_backend, rng, dtype, shape):
    p0 = _normal(rng, shape, 0.5)
    fast = [_dev(fast_backend, p0, dtype)] + [
        _dev(fast_backend, np.zeros(shape), dtype) for _ in range(2)
    ]
    ref = [_dev(fast_backend, p0, dtype)] + [
        _dev(fast_backend, np.zeros(shape), dtype) for _ in range(2)
    ]
    for t in range(1, 4):  # below the NumPy flush step, which the next test covers
        g = _dev(fast_backend, _normal(rng, shape, 0.1), dtype)
        _fast(fast_backend).adam_update(*fast[:1], g, *fast[1:], **_adam_scalars(t))
        PortableKernels().adam_update(*ref[:1], g, *ref[1:], **_adam_scalars(t))
        for name, a, d in zip("pmv", fast, ref, strict=True):
            _ulp_close(a, d, dtype, ALGEBRAIC_ULPS, what=f"Adam {name} after step {t}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_ANY, ids=str)
@pytest.mark.parametrize("nesterov,dampening", [(False, 0.0), (False, 0.25), (True, 0.0)], ids=str)
def test_sgd_momentum_update_matches_portable(fast_backend, rng, dtype, shape, nesterov, dampening):
    p0, b0 = _normal(rng, shape, 0.5), _normal(rng, shape, 0.1)
    fast = [_dev(fast_backend, a, dtype) for a in (p0, b0)]
    ref = [_dev(fast_backend, a, dtype) for a in (p0, b0)]
    hyper = {"lr": 0.05, "momentum": 0.9, "dampening": dampening, "nesterov": nesterov}
    for step in range(3):
        g = _dev(fast_backend, _normal(rng, shape, 0.1), dtype)
        _fast(fast_backend).sgd_momentum_update(fast[0], g, fast[1], **hyper)
        PortableKernels().sgd_momentum_update(ref[0], g, ref[1], **hyper)
        for name, a, d in zip(("p", "buf"), fast, ref, strict=True):
            _ulp_close(a, d, dtype, ALGEBRAIC_ULPS, what=f"SGD {name} after step {step}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_adam_flushes_subnormal_moments_only_on_flush_steps(rng, dtype):
    tiny = np.finfo(dtype).tiny
    n = 12
    sub = np.zeros(n, dtype=bool)
    sub[::3] = True  # every third entry holds a subnormal moment and a zero gradient
    p0 = _normal(rng, n, 0.5).astype(dtype)
    m0 = _normal(rng, n, 0.01).astype(dtype)
    v0 = (np.abs(_normal(rng, n, 0.01)) ** 2).astype(dtype)
    m0[sub] = np.array([tiny / 4, -tiny / 8, tiny / 64, -tiny / 2], dtype=dtype)
    v0[sub] = np.array([tiny / 2, tiny / 16, tiny / 4, tiny / 8], dtype=dtype)
    assert np.all(np.abs(m0[sub]) < tiny) and np.all(m0[sub] != 0)  # really subnormal
    g = _normal(rng, n, 0.1).astype(dtype)
    g[sub] = 0.0
    for step, flushed in ((_FLUSH_EVERY - 1, False), (_FLUSH_EVERY, True)):
        fast = [a.copy() for a in (p0, m0, v0)]
        ref = [a.copy() for a in (p0, m0, v0)]
        NumpyKernels().adam_update(fast[0], g, fast[1], fast[2], **_adam_scalars(step))
        PortableKernels().adam_update(ref[0], g, ref[1], ref[2], **_adam_scalars(step))
        _ulp_close(fast[0], ref[0], dtype, ALGEBRAIC_ULPS, what=f"p at step {step}")
        for name, a, d in (("m", fast[1], ref[1]), ("v", fast[2], ref[2])):
            # Normal moments are untouched by the flush: equal to the reference.
            np.testing.assert_array_equal(a[~sub], d[~sub], err_msg=f"{name} at step {step}")
            assert np.all(d[sub] != 0), "the reference keeps its subnormals"
            if flushed:
                np.testing.assert_array_equal(a[sub], 0.0, err_msg=f"{name} not flushed")
            else:
                np.testing.assert_array_equal(a[sub], d[sub], err_msg=f"{name} flushed early")


# ----------------------------------------------------------------------------- training


def _train(backend, dtype, optimizer, portable, monkeypatch):
    if portable:
        monkeypatch.setenv("XPNET_KERNELS", "portable")
        kernels.reset_kernels()  # the choice is cached per namespace
    else:
        monkeypatch.delenv("XPNET_KERNELS", raising=False)
        kernels.reset_kernels()  # the choice is cached per namespace
    X, y = make_blobs(n_samples=120, n_features=8, n_classes=3, seed=3)
    # Standardized, so no tanh saturates: there ``1 - y*y`` cancels to rounding noise, and
    # Adam's first steps divide a gradient by ``|g| + eps``, turning a one-ulp difference in
    # ``tanh`` (CUDA's and NumPy's differ) into a weight difference of order ``lr``.
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = xpnet.Sequential(
        [
            Dense(8, 16, activation="relu"),
            Dense(16, 12),
            Tanh(),
            Dense(12, 10, activation="leaky_relu"),
            Dense(10, 3),
        ],
        dtype=dtype,
        seed=5,
        backend=backend,
    )
    # 15 steps an epoch, 30 in all: past NumPy's subnormal flush at step 16.
    history = model.fit(X, y, epochs=2, batch_size=8, optimizer=optimizer, seed=11)
    monkeypatch.delenv("XPNET_KERNELS", raising=False)
    kernels.reset_kernels()  # the choice is cached per namespace
    return history.history["loss"], model.get_weights()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: Adam(lr=0.01), lambda: SGD(lr=0.05, momentum=0.9, nesterov=True)],
    ids=["adam", "sgd-nesterov"],
)
def test_training_with_fast_kernels_matches_portable(
    fast_backend, dtype, make_optimizer, monkeypatch
):
    fast_loss, fast_w = _train(fast_backend, dtype, make_optimizer(), False, monkeypatch)
    ref_loss, ref_w = _train(fast_backend, dtype, make_optimizer(), True, monkeypatch)
    rtol, atol = tolerance(dtype)
    assert_allclose(fast_loss, ref_loss, rtol=rtol, atol=atol, err_msg="epoch losses")
    for i, (a, d) in enumerate(zip(fast_w, ref_w, strict=True)):
        assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=f"weight array {i}")
    assert fast_loss[1] < fast_loss[0], "the model did not learn; the comparison is vacuous"


# ----------------------------------------------------------------------------- CUDA sources


def _nvrtc():
    pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC is not available to compile the CUDA sources: {exc}")
    return nvrtc


def _compile(nvrtc, source, options):
    prog = nvrtc.createProgram(source, "xpnet_check.cu", [], [])
    try:
        nvrtc.compileProgram(prog, ["--gpu-architecture=compute_80", *options])
    except Exception as exc:
        raise AssertionError(f"NVRTC rejected:\n{source}\n{nvrtc.getProgramLog(prog)}") from exc
    ptx = nvrtc.getPTX(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


def _elementwise_source(kernel, ctype):
    """The kernel body as CuPy's ElementwiseKernel lays it out: ``typedef``, preamble, and
    each parameter bound by reference to its element (scalars too, which changes no types)."""
    params, binds = [], []
    for p, const in [(p, "const ") for p in kernel.in_params] + [
        (p, "") for p in kernel.out_params
    ]:
        t = "T" if p.ctype == "T" else p.ctype
        params.append(f"{const}{t}* _raw_{p.name}")
        binds.append(f"{const}{t} &{p.name} = _raw_{p.name}[i];")
    return (
        f"typedef {ctype} T;\n{kernel.preamble}\n"
        f'extern "C" __global__ void {kernel.name}({", ".join(params)}, long long _n) {{\n'
        "  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < _n;\n"
        "       i += (long long)blockDim.x * gridDim.x) {\n"
        f"    {' '.join(binds)}\n    {kernel.operation};\n  }}\n}}\n"
    )


_F64_OP = re.compile(r"\S+\.f64\b")
# Kernels without exp/tanh/log: any fma in them would be a contraction NumPy does not do.
_ALGEBRAIC = re.compile(r"relu|backward|bias$|adam|sgd|norm")


def test_cupy_kernel_sources_compile_in_their_own_precision():
    nvrtc = _nvrtc()
    from xpnet.kernels import cupy_fused

    checked = 0
    for kernel in cupy_fused.ELEMENTWISE_KERNELS:
        options = kernel.kwargs.get("options", ())
        algebraic = bool(_ALGEBRAIC.search(kernel.name))
        # The multiply-add kernels must not be contracted; the exp/tanh ones keep the defaults.
        assert ("--fmad=false" in options) == algebraic, (kernel.name, options)
        for ctype in ("float", "double"):
            ptx = _compile(nvrtc, _elementwise_source(kernel, ctype), options)
            if ctype == "float":
                assert not _F64_OP.findall(ptx), f"{kernel.name} computes in float64 for float32"
            if algebraic:
                assert "fma." not in ptx, f"{kernel.name} ({ctype}) contracts a multiply-add"
            checked += 1
    ptx = _compile(nvrtc, cupy_fused.LOG_SOFTMAX_SOURCE, cupy_fused._MATH_OPTIONS)
    entries = dict(re.findall(r"\.entry (\w+)\((.*?)\n}", ptx, flags=re.S))
    assert set(entries) == {"xpnet_log_softmax_float32", "xpnet_log_softmax_float64"}
    assert not _F64_OP.findall(entries["xpnet_log_softmax_float32"])
    assert _F64_OP.findall(entries["xpnet_log_softmax_float64"])  # the check can see f64
    assert checked == 2 * len(cupy_fused.ELEMENTWISE_KERNELS)


# ----------------------------------------------------------------------------- CUDA on the host
#
# Without a GPU the CUDA sources can still run: each kernel body is compiled for the CPU with
# g++ (``-ffp-contract=off``, the host twin of ``--fmad=false``), called the way CuPy's
# ElementwiseKernel calls it (input parameters, then optional outputs; arrays broadcast,
# scalars cast to T, outputs allocated when absent), and the row kernel runs one std::thread
# per CUDA thread with a std::barrier for __syncthreads. CupyKernels, unchanged, then drives
# them on NumPy arrays through the ``cupy-on-host`` parameter of ``fast_backend``. What this
# cannot check is CuPy itself: its argument binding is mimicked from its source, not run.

_HOST_HEADER = r"""
#include <cmath>
#include <cstdint>
using namespace std;
#define __device__
#define __forceinline__ inline
"""

_HOST_THREADS = r"""
#include <barrier>
#include <thread>
#include <vector>
struct xpnet_dim { unsigned x; };
thread_local xpnet_dim threadIdx;
xpnet_dim blockIdx, blockDim;
static std::barrier<>* xpnet_barrier;
#define __syncthreads() xpnet_barrier->arrive_and_wait()
#define __global__
#define __shared__ static
"""

_HOST_LAUNCH = r"""
template <typename F, typename K>
static void xpnet_launch(K kern, int grid, int block, const F* x, F* lp, F* p, int c, int w) {
    blockDim.x = block;
    for (int b = 0; b < grid; ++b) {  // one block at a time: __shared__ is a static array
        blockIdx.x = b;
        std::barrier<> bar(block);
        xpnet_barrier = &bar;
        std::vector<std::thread> threads;
        for (int t = 0; t < block; ++t)
            threads.emplace_back([=] { threadIdx.x = t; kern(x, lp, p, c, w); });
        for (auto& th : threads) th.join();
    }
}
extern "C" void launch_float32(int g, int b, const float* x, float* lp, float* p, int c, int w) {
    xpnet_launch<float>(xpnet_log_softmax_float32, g, b, x, lp, p, c, w);
}
extern "C" void launch_float64(int g, int b, const double* x, double* lp, double* p, int c,
                               int w) {
    xpnet_launch<double>(xpnet_log_softmax_float64, g, b, x, lp, p, c, w);
}
"""


@pytest.fixture(scope="session")
def host_build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda-on-host")


def _host_library(source, build_dir):
    import ctypes
    import hashlib
    import subprocess

    stem = build_dir / hashlib.sha256(source.encode()).hexdigest()[:20]
    lib = stem.with_suffix(".so")
    if not lib.exists():
        stem.with_suffix(".cpp").write_text(source)
        cmd = ["g++", "-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-pthread"]
        subprocess.run([*cmd, str(stem.with_suffix(".cpp")), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


class _HostElementwise:
    """A cupy.ElementwiseKernel's body compiled for the CPU, called as CuPy calls it."""

    def __init__(self, kernel, build_dir):
        self.kernel, self.build_dir, self.libs = kernel, build_dir, {}
        self.nin = len(kernel.in_params)
        self.params = [*kernel.in_params, *kernel.out_params]

    def _lib(self, ctype):
        if ctype not in self.libs:
            args, binds = [], []
            for p in self.params:
                const = "const " if p in self.kernel.in_params else ""
                # mode 0: a scalar; 1: full size; 2: one row broadcast over the rows
                args.append(f"{const}T* _raw_{p.name}, long long _m_{p.name}")
                index = f"(_m_{p.name} == 0 ? 0 : _m_{p.name} == 1 ? i : i % _ncols)"
                binds.append(f"{const}T &{p.name} = _raw_{p.name}[{index}];")
            self.libs[ctype] = _host_library(
                f"{_HOST_HEADER}typedef {ctype} T;\n{self.kernel.preamble}\n"
                f'extern "C" void run({", ".join(args)}, long long _n, long long _ncols) {{\n'
                f"  for (long long i = 0; i < _n; ++i) {{ {' '.join(binds)}\n"
                f"    {self.kernel.operation};\n  }}\n}}\n",
                self.build_dir,
            )
        return self.libs[ctype]

    def __call__(self, *args):
        import ctypes

        arrays = [a for a in args if isinstance(a, np.ndarray)]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        (dtype,) = {a.dtype for a in arrays}  # CuPy: one T for every array
        args = list(args) + [np.empty(shape, dtype) for _ in range(len(self.params) - len(args))]
        outs = args[self.nin :]
        assert all(o.shape == shape and o.flags.c_contiguous for o in outs), self.kernel.name
        c_args, keep = [], []
        for a in args:
            if not isinstance(a, np.ndarray):
                buf, mode = np.array([a], dtype=dtype), 0  # CuPy casts a scalar to T
            elif a.shape == shape:
                buf, mode = np.ascontiguousarray(a), 1
            else:
                assert a.shape == shape[-1:], f"{self.kernel.name}: broadcast {a.shape}"
                buf, mode = np.ascontiguousarray(a), 2
            keep.append(buf)
            c_args += [ctypes.c_void_p(buf.ctypes.data), ctypes.c_longlong(mode)]
        n, ncols = int(np.prod(shape)), int(shape[-1]) if shape else 1
        lib = self._lib("float" if dtype == np.float32 else "double")
        lib.run(*c_args, ctypes.c_longlong(n), ctypes.c_longlong(ncols))
        if self.kernel.no_return:
            return None
        return outs[0] if len(outs) == 1 else tuple(outs)


class _HostRowModule:
    """The log-softmax RawModule on CPU threads."""

    def __init__(self, source, build_dir):
        self.lib = _host_library(_HOST_HEADER + _HOST_THREADS + source + _HOST_LAUNCH, build_dir)

    def get_function(self, name):
        import ctypes

        suffix = name.rsplit("_", 1)[-1]
        launch = getattr(self.lib, f"launch_{suffix}")

        def call(grid, block, args):
            x, logp, prob, n_cols, with_log = args
            assert all(a.flags.c_contiguous and a.dtype.name == suffix for a in (x, logp, prob))
            assert isinstance(n_cols, np.int32) and isinstance(with_log, np.int32)
            pointers = [ctypes.c_void_p(a.ctypes.data) for a in (x, logp, prob)]
            launch(grid[0], block[0], *pointers, int(n_cols), int(with_log))

        return call


def _cupy_kernels_on_host(monkeypatch, build_dir):
    import shutil
    import types

    pytest.importorskip("cupy", reason="CuPy is not installed (needed to import the kernels)")
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: cannot compile the CUDA sources for the host")
    from xpnet.kernels import cupy_fused as cf

    for table in (cf._FORWARD, cf._BIAS, cf._BACKWARD, cf._SGD_MOMENTUM):
        for key, kernel in table.items():
            monkeypatch.setitem(table, key, _HostElementwise(kernel, build_dir))
    monkeypatch.setattr(cf, "_ADAM", _HostElementwise(cf._ADAM, build_dir))
    for name in ("_INV_STD", "_CENTER_SCALE", "_SCALE_SHIFT", "_BATCH_NORM_BACKWARD"):
        monkeypatch.setattr(cf, name, _HostElementwise(getattr(cf, name), build_dir))
    monkeypatch.setattr(cf, "_LOG_SOFTMAX_MODULE", _HostRowModule(cf.LOG_SOFTMAX_SOURCE, build_dir))
    host = types.SimpleNamespace(
        ndarray=np.ndarray, ascontiguousarray=np.ascontiguousarray, empty_like=np.empty_like
    )
    monkeypatch.setattr(cf, "cupy", host)
    import array_api_compat.numpy as np_xp

    # The portable fallbacks (softmax's backward) then run on the NumPy arrays it is given.
    return cf.CupyKernels(np_xp)
