"""The numba-compiled CPU kernels against the portable reference, and their selection.

Tolerances, in units in the last place (ulps) of the dtype:

* 0 for every forward activation and bias + activation: a model's predictions must not
  depend on the kernel set (ReLU family and bias are exact in any order; sigmoid, tanh and
  softmax use NumPy's own ``exp``/``tanh``);
* 4 ulps for the backward kernels and the optimizer updates (Adam, SGD momentum, RMSProp):
  the same operations in the same order, except a reciprocal-multiply for a division
  (``fastmath`` ``arcp``; no ``contract``, see ``xpnet/kernels/numba_cpu.py``) and, for
  softmax's backward, a row sum in another order;
* 64 ulps for ``log_softmax_with_probs``, plus an absolute term scaled by the logits for the
  log, because a row is summed in another order and numba's ``exp``/``log`` are the C
  library's, not NumPy's.

NaN and infinity must land exactly where the reference puts them: the compiled code is
built without ``nnan``/``ninf``, and the divergence guard needs a NaN to survive. The
kernel tests skip when numba is not installed; the selection tests run either way.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from xpnet import kernels
from xpnet.kernels import PortableKernels, get_kernels
from xpnet.kernels.numpy_fast import _FLUSH_EVERY, NumpyKernels
from xpnet.testing import assert_allclose

DTYPES = ["float32", "float64"]
ACTS = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax"]
ALPHA = 0.01
ULPS = {"relu": 0, "leaky_relu": 0, "sigmoid": 0, "tanh": 0, "softmax": 0}  # forward: exact
ALGEBRAIC_ULPS = 4
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-3, -1e-3, 30.0, -30.0, 100.0, -100.0]

needs_numba = pytest.mark.skipif(
    "numba" not in sys.modules and __import__("importlib").util.find_spec("numba") is None,
    reason="numba is not installed",
)
try:  # x86-64, where the compiled updates set DAZ and FTZ
    from xpnet.kernels.numba_fpenv import FLUSHES_SUBNORMALS
except ImportError:  # no numba: the tests that read it are skipped
    FLUSHES_SUBNORMALS = False


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.delenv("XPNET_KERNELS", raising=False)
    kernels.reset_kernels()
    # The reference warns on the NaN and infinity inputs (inf - inf); the values are the point.
    with np.errstate(all="ignore"):
        yield
    kernels.reset_kernels()


@pytest.fixture(params=[False, True], ids=["serial", "parallel"])
def nk(request):
    from xpnet.kernels.numba_cpu import NumbaKernels

    return NumbaKernels(parallel=request.param)


@pytest.fixture
def numba_kernels():
    from xpnet.kernels.numba_cpu import NumbaKernels

    return NumbaKernels()


def _close(actual, desired, dtype, ulps, scale=1.0, what=""):
    assert isinstance(actual, np.ndarray) and actual.dtype == np.dtype(dtype), (
        f"{what}: got {type(actual).__name__} {getattr(actual, 'dtype', None)}, want {dtype}"
    )
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    eps = float(np.finfo(dtype).eps)
    # xpnet's assert_allclose: NaNs at the same places, infinities equal.
    assert_allclose(actual, desired, rtol=ulps * eps, atol=ulps * eps * scale, err_msg=what)


def _sample(rng, shape, dtype, special=True, scale=3.0):
    x = rng.standard_normal(shape) * scale
    if special and x.size:
        flat = x.reshape(-1)
        k = min(flat.size, len(SPECIAL))
        # Spread the specials over the rows, so some rows stay finite (the softmax family
        # turns a whole row into NaN for one NaN in it, as the reference does).
        idx = rng.choice(flat.size, size=k, replace=False)
        flat[idx] = SPECIAL[:k]
    return x.astype(dtype)


SHAPES = [(0, 5), (1, 1), (7, 1), (33, 10), (128, 257)]


def _layouts(x):
    """C-contiguous, transposed (Fortran order) and a strided view with the same values."""
    wide = np.empty((x.shape[0], 2 * x.shape[1]), x.dtype)
    wide[:, ::2] = x
    return {"c": x, "fortran": np.asfortranarray(x), "strided": wide[:, ::2]}


# ----------------------------------------------------------------------------- selection


def test_default_numpy_kernels_are_numba_when_numba_imports():
    import array_api_compat.numpy as np_xp

    k = get_kernels(np_xp)
    try:
        import numba  # noqa: F401
    except ImportError:
        assert type(k) is NumpyKernels
        return
    from xpnet.kernels.numba_cpu import NumbaKernels

    assert isinstance(k, NumbaKernels) and k.name == "numba"
    assert k.parallel is False  # the measured default (benchmarks/NOTES.md §9)


def test_xpnet_kernels_numpy_and_portable_force_the_others(monkeypatch):
    import array_api_compat.numpy as np_xp

    monkeypatch.setenv("XPNET_KERNELS", "numpy")
    kernels.reset_kernels()
    assert type(get_kernels(np_xp)) is NumpyKernels
    assert get_kernels(np_xp).name == "numpy"
    monkeypatch.setenv("XPNET_KERNELS", "Portable")
    kernels.reset_kernels()
    assert type(get_kernels(np_xp)) is PortableKernels


def test_numpy_backend_falls_back_to_numpy_kernels_without_numba(monkeypatch):
    # A None entry in sys.modules makes ``import numba`` raise ImportError, as on a platform
    # without a numba wheel.
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "xpnet.kernels.numba_cpu", raising=False)
    import array_api_compat.numpy as np_xp

    assert type(kernels._make("array_api_compat.numpy", np_xp)) is NumpyKernels


# ----------------------------------------------------------------------------- activations


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_per_activation_forward_matches_portable(numba_kernels, rng, dtype, act, shape):
    x0 = _sample(rng, shape, dtype)
    for layout, x in _layouts(x0).items():
        # Per layout: NumPy's own row sums depend on the memory order.
        want = PortableKernels().activation(x, act, ALPHA)
        before = x.copy()
        method = getattr(numba_kernels, act)
        got = method(x, ALPHA) if act == "leaky_relu" else method(x)
        np.testing.assert_array_equal(x, before, err_msg=f"{act} modified its input")
        _close(got, want, dtype, ULPS[act], what=f"{act} forward ({layout})")
        # The generic entry point dispatches to the same kernel.
        generic = numba_kernels.activation(x, act, ALPHA)
        np.testing.assert_array_equal(generic, got, err_msg=f"{act}: generic != per-activation")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_per_activation_backward_matches_portable(numba_kernels, rng, dtype, act, shape):
    y0 = PortableKernels().activation(_sample(rng, shape, dtype), act, ALPHA)
    g0 = _sample(rng, shape, dtype, scale=1.0)
    want = PortableKernels().activation_backward(g0, y0, act, ALPHA)
    for (layout, g), y in zip(_layouts(g0).items(), _layouts(y0).values(), strict=True):
        method = getattr(numba_kernels, f"{act}_backward")
        got = method(g, y, ALPHA) if act == "leaky_relu" else method(g, y)
        _close(got, want, dtype, ALGEBRAIC_ULPS, what=f"{act} backward ({layout})")
        generic = numba_kernels.activation_backward(g, y, act, ALPHA)
        np.testing.assert_array_equal(generic, got, err_msg=f"{act}: generic != per-activation")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_entries_in_a_row(numba_kernels, dtype):
    # -inf in the first column: neither the row max nor the row sums may start from it.
    x = np.array([[-np.inf, 1.0, 2.0], [np.inf, 1.0, 2.0], [1.0, -np.inf, 0.0]], dtype=dtype)
    g = np.array([[-np.inf, 1.0, 0.5], [1.0, 2.0, 3.0], [0.5, 0.25, np.inf]], dtype=dtype)
    ref = PortableKernels()
    _close(numba_kernels.softmax(x), ref.activation(x, "softmax"), dtype, 64, what="softmax")
    got, want = numba_kernels.log_softmax_with_probs(x), ref.log_softmax_with_probs(x)
    for a, d in zip(got, want, strict=True):
        _close(a, d, dtype, 64, scale=3.0, what="log_softmax")
    y = ref.activation(x, "softmax")
    want = ref.activation_backward(g, y, "softmax")
    _close(numba_kernels.softmax_backward(g, y), want, dtype, 4, what="softmax backward")


@needs_numba
def test_nan_survives_every_forward_and_backward(numba_kernels):
    x = np.array([[np.nan, 1.0, -1.0]], dtype=np.float32)
    for act in ACTS:
        y = numba_kernels.activation(x, act, ALPHA)
        assert np.isnan(y[0, 0]), f"{act} forward dropped a NaN"
        g = np.array([[1.0, np.nan, 1.0]], dtype=np.float32)
        yy = np.array([[0.5, 0.5, 0.5]], dtype=np.float32)
        assert np.isnan(numba_kernels.activation_backward(g, yy, act, ALPHA)[0, 1]), act


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, *ACTS])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bias_activation_matches_portable(numba_kernels, rng, dtype, act, shape):
    z0 = _sample(rng, shape, dtype)
    b = _sample(rng, shape[1:], dtype, special=False, scale=1.0)
    want = PortableKernels().bias_activation(z0.copy(), b, act, ALPHA)
    z = z0.copy()
    got = numba_kernels.bias_activation(z, b, act, ALPHA)
    _close(got, want, dtype, ULPS.get(act or "relu", ALGEBRAIC_ULPS), what=f"bias + {act}")
    # A non-contiguous product (never made by Dense, but allowed) takes the NumPy path.
    want_f = PortableKernels().bias_activation(np.asfortranarray(z0), b, act, ALPHA)
    got_f = numba_kernels.bias_activation(np.asfortranarray(z0), b, act, ALPHA)
    _close(got_f, want_f, dtype, ULPS.get(act or "relu", ALGEBRAIC_ULPS), what=f"F bias + {act}")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 10), (1, 1), (5, 10), (64, 10), (3, 1000)], ids=str)
def test_log_softmax_with_probs_matches_portable(numba_kernels, rng, dtype, shape):
    host = rng.standard_normal(shape) * 4.0
    if shape[0] >= 5:
        host[1] = 7.0  # a constant row: uniform probabilities
        host[2, :] = 0.0
        host[2, -1] = 1e4  # one dominant class: exp underflows everywhere else
        host[3] += 1e4  # large logits: only the shift by the row max keeps exp finite
        host[4, 0] = np.nan  # the whole row becomes NaN, as in the reference
        host[0, 0] = -np.inf  # a class ruled out: probability 0, the rest finite
    logits = host.astype(dtype)
    want_lp, want_p = PortableKernels().log_softmax_with_probs(logits)
    scale = 1.0 + float(np.nanmax(np.abs(host))) if host.size else 1.0
    for layout, x in _layouts(logits).items():
        lp, p = numba_kernels.log_softmax_with_probs(x)
        _close(lp, want_lp, dtype, 64, scale=scale, what=f"log_softmax ({layout})")
        _close(p, want_p, dtype, 64, what=f"softmax ({layout})")


@needs_numba
def test_other_dtypes_take_the_numpy_path(numba_kernels, rng):
    # float16 is not compiled: the result must still be the reference's, in float16.
    x = _sample(rng, (6, 4), "float16", special=False)
    for act in ACTS:
        got = numba_kernels.activation(x, act, ALPHA)
        want = PortableKernels().activation(x, act, ALPHA)
        assert got.dtype == np.float16
        assert_allclose(got, want, rtol=4e-3, atol=4e-3, err_msg=act)


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


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 13, 4099])
def test_adam_matches_portable(nk, rng, dtype, n):
    p0 = rng.standard_normal(n).astype(dtype)
    fast = [p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
    ref = [p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
    for t in range(1, 4):  # below the flush step, which the next test covers
        g = (rng.standard_normal(n) * 0.1).astype(dtype)
        if n >= 13 and t == 2:
            g[:3] = [np.nan, np.inf, -np.inf]
        nk.adam_update(fast[0], g, fast[1], fast[2], **_adam_scalars(t))
        PortableKernels().adam_update(ref[0], g, ref[1], ref[2], **_adam_scalars(t))
        for name, a, d in zip("pmv", fast, ref, strict=True):
            _close(a, d, dtype, ALGEBRAIC_ULPS, what=f"Adam {name} after step {t}")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_flushes_subnormal_moments_only_on_flush_steps(nk, rng, dtype):
    tiny = np.finfo(dtype).tiny
    n = 12
    sub = np.zeros(n, dtype=bool)
    sub[::3] = True
    p0 = rng.standard_normal(n).astype(dtype)
    m0 = (rng.standard_normal(n) * 0.01).astype(dtype)
    v0 = ((rng.standard_normal(n) * 0.01) ** 2).astype(dtype)
    m0[sub] = np.array([tiny / 4, -tiny / 8, tiny / 64, -tiny / 2], dtype=dtype)
    v0[sub] = np.array([tiny / 2, tiny / 16, tiny / 4, tiny / 8], dtype=dtype)
    g = (rng.standard_normal(n) * 0.1).astype(dtype)
    g[sub] = 0.0
    for step, flushed in ((_FLUSH_EVERY - 1, False), (_FLUSH_EVERY, True)):
        fast = [a.copy() for a in (p0, m0, v0)]
        ref = [a.copy() for a in (p0, m0, v0)]
        nk.adam_update(fast[0], g, fast[1], fast[2], **_adam_scalars(step))
        PortableKernels().adam_update(ref[0], g, ref[1], ref[2], **_adam_scalars(step))
        _close(fast[0], ref[0], dtype, ALGEBRAIC_ULPS, what=f"p at step {step}")
        for name, a, d in (("m", fast[1], ref[1]), ("v", fast[2], ref[2])):
            _close(a[~sub], d[~sub], dtype, ALGEBRAIC_ULPS, what=f"{name} at step {step}")
            assert np.all(d[sub] != 0), "the reference keeps its subnormals"
            if flushed or FLUSHES_SUBNORMALS:  # x86-64: DAZ and FTZ zero them on every step
                np.testing.assert_array_equal(a[sub], 0.0, err_msg=f"{name} not flushed")
            else:
                _close(a[sub], d[sub], dtype, ALGEBRAIC_ULPS, what=f"{name} flushed early")


@needs_numba
def test_adam_on_non_contiguous_state_takes_the_numpy_path(numba_kernels, rng):
    base = rng.standard_normal(20).astype(np.float32)
    p, m, v = base[::2].copy(), np.zeros(10, np.float32), np.zeros(10, np.float32)
    strided = [np.zeros(20, np.float32) for _ in range(3)]
    for s, a in zip(strided, (p, m, v), strict=True):
        s[::2] = a
    g = rng.standard_normal(10).astype(np.float32)
    views = [s[::2] for s in strided]
    numba_kernels.adam_update(views[0], g, views[1], views[2], **_adam_scalars(1))
    PortableKernels().adam_update(p, g, m, v, **_adam_scalars(1))
    for name, a, d in zip("pmv", views, (p, m, v), strict=True):
        _close(np.ascontiguousarray(a), d, "float32", ALGEBRAIC_ULPS, what=f"strided {name}")


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov,dampening", [(False, 0.0), (False, 0.25), (True, 0.0)], ids=str)
def test_sgd_momentum_matches_portable(numba_kernels, rng, dtype, nesterov, dampening):
    n = 257
    p0, b0 = rng.standard_normal(n).astype(dtype), (rng.standard_normal(n) * 0.1).astype(dtype)
    fast, ref = [p0.copy(), b0.copy()], [p0.copy(), b0.copy()]
    hyper = {"lr": 0.05, "momentum": 0.9, "dampening": dampening, "nesterov": nesterov}
    for step in range(3):
        g = (rng.standard_normal(n) * 0.1).astype(dtype)
        if step == 1:
            g[:3] = [np.nan, np.inf, -np.inf]
        numba_kernels.sgd_momentum_update(fast[0], g, fast[1], **hyper)
        PortableKernels().sgd_momentum_update(ref[0], g, ref[1], **hyper)
        for name, a, d in zip(("p", "buf"), fast, ref, strict=True):
            _close(a, d, dtype, ALGEBRAIC_ULPS, what=f"SGD {name} after step {step}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("centered", [False, True], ids=["plain", "centered"])
@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["nomomentum", "momentum"])
@pytest.mark.parametrize("which", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_rmsprop_matches_portable(rng, dtype, centered, momentum, which):
    if which == "numba":
        from xpnet.kernels.numba_cpu import NumbaKernels

        k: PortableKernels = NumbaKernels()
    else:
        k = NumpyKernels()
    n = 300
    p0 = rng.standard_normal(n).astype(dtype)

    def state():
        return [
            p0.copy(),
            np.zeros(n, dtype),
            np.zeros(n, dtype) if centered else None,
            np.zeros(n, dtype) if momentum else None,
        ]

    fast, ref = state(), state()
    hyper = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": momentum}
    for step in range(4):
        g = (rng.standard_normal(n) * 0.1).astype(dtype)
        if step == 2:
            g[:3] = [np.nan, np.inf, -np.inf]
        k.rmsprop_update(fast[0], g, *fast[1:], **hyper)
        PortableKernels().rmsprop_update(ref[0], g, *ref[1:], **hyper)
        for name, a, d in zip(("p", "square_avg", "grad_avg", "buf"), fast, ref, strict=True):
            if d is not None:
                _close(a, d, dtype, ALGEBRAIC_ULPS, what=f"RMSProp {name} step {step}")


# ----------------------------------------------------------------------------- the cache


@needs_numba
def test_compiled_code_is_cached_per_user_when_the_package_directory_is_not_writable(tmp_path):
    # A read-only site-packages, as root can see it too: a *file* where numba would make the
    # package's __pycache__ directory. numba must then fall back to its user-wide cache
    # (under XDG_CACHE_HOME), with no NUMBA_CACHE_DIR set by anyone.
    import os
    import shutil
    import subprocess
    from pathlib import Path

    site = tmp_path / "site"
    shutil.copytree(
        Path(kernels.__file__).parents[1], site / "xpnet", ignore=shutil.ignore_patterns("__py*")
    )
    (site / "xpnet" / "kernels" / "__pycache__").write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    code = (
        "import numpy as np\n"
        "from xpnet.kernels.numba_cpu import NumbaKernels\n"
        "g = np.array([1.0, -2.0], 'float32')\n"
        "print(NumbaKernels().relu_backward(g, np.array([1.0, 0.0], 'float32')))\n"
    )
    for _ in range(2):  # compile and write, then load from the cache
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=site, env=env, capture_output=True, text=True,
            timeout=600, check=True,
        )  # fmt: skip
        assert out.stdout.split() == ["[1.", "0.]"], out.stdout
    cached = list((tmp_path / "cache" / "numba").rglob("numba_cpu._backward_flat-*.nbi"))
    assert cached, f"nothing cached under {tmp_path / 'cache'}: {out.stderr}"


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, *ACTS])
def test_forward_passes_give_the_reference_bits(numba_kernels, rng, dtype, act):
    # Predictions must not depend on the kernel set or backend (Sequential.to relies on it).
    z0 = _sample(rng, (65, 17), dtype)
    b = _sample(rng, (17,), dtype, special=False, scale=1.0)
    ref = PortableKernels()
    want = ref.bias_activation(z0.copy(), b, act, ALPHA)
    np.testing.assert_array_equal(numba_kernels.bias_activation(z0.copy(), b, act, ALPHA), want)
    if act is not None:
        np.testing.assert_array_equal(
            numba_kernels.activation(z0, act, ALPHA), ref.activation(z0, act, ALPHA)
        )
