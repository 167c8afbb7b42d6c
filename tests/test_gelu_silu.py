"""GELU and SiLU: the erf against math.erf over the whole real line, PyTorch agreement,
gradients, kernels, Dense(activation=...) and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.kernels import PortableKernels, erf, erfc
from xpnet.kernels.numpy_fast import NumpyKernels
from xpnet.layers import GELU, Dense, SiLU
from xpnet.testing import check_layer

# Dense coverage of [-30, 30], the branch edges, tiny and huge values, the infinities.
_EDGES = [0.0, -0.0, 1e-300, -1e-300, 1e-17, 0.46875, -0.46875, 0.46876, 4.0, -4.0, 4.0001]
_EDGES += [5.9, 26.5, 26.543, 27.0, -27.0, 1e10, -1e10, 1e308, -1e308, math.inf, -math.inf]
_X = np.concatenate([np.linspace(-30.0, 30.0, 120001), np.array(_EDGES)])


def test_erf_matches_math_erf_over_the_real_line():
    got = erf(_X)
    want = np.array([math.erf(v) for v in _X])
    np.testing.assert_allclose(got, want, rtol=2e-15, atol=0)


def test_erfc_matches_math_erfc_including_the_tails():
    got = erfc(_X)
    want = np.array([math.erfc(v) for v in _X])
    normal = want > 1e-300  # beyond |x| ~ 26.5 erfc is subnormal, then 0
    np.testing.assert_allclose(got[normal], want[normal], rtol=5e-14)
    np.testing.assert_allclose(got[~normal], want[~normal], atol=1e-300)


def test_erf_nan_float32_and_array_api_strict():
    assert np.isnan(erf(np.array([np.nan]))[0])
    x32 = np.linspace(-5, 5, 101, dtype=np.float32)
    assert erf(x32).dtype == np.float32
    np.testing.assert_allclose(erf(x32), [math.erf(v) for v in x32], rtol=2e-6, atol=1e-7)
    xs = pytest.importorskip("array_api_strict")
    got = erf(xs.asarray(_X[:1000]))
    np.testing.assert_array_equal(np.asarray(got), erf(_X[:1000]))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-12, 12, 2001), np.random.default_rng(0).normal(size=500)])
    g = np.random.default_rng(1).normal(size=x.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.GELU(approximate=approximate)(tx)
    ty.backward(torch.tensor(g))
    layer = GELU(approximate)
    y = layer.forward(x.reshape(-1, 1), training=True)
    dx = layer.backward(g.reshape(-1, 1))
    # torch forms 1 + erf (and 1 + tanh), which lose the far negative tail to cancellation
    # (erfc keeps it): there the two agree in absolute terms only.
    atol = 1e-15 if approximate == "none" else 2e-14
    np.testing.assert_allclose(y.ravel(), ty.detach().numpy(), rtol=1e-12, atol=atol)
    np.testing.assert_allclose(dx.ravel(), tx.grad.numpy(), rtol=1e-12, atol=atol)


def test_silu_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-40, 40, 2001), [-800.0, 800.0]])
    g = np.random.default_rng(1).normal(size=x.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.SiLU()(tx)
    ty.backward(torch.tensor(g))
    layer = SiLU()
    np.testing.assert_allclose(
        layer.forward(x, training=True), ty.detach().numpy(), rtol=1e-12, atol=1e-300
    )
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("shape", [(6, 6), (4, 9)], ids=str)
@pytest.mark.parametrize("build", [GELU, lambda: GELU("tanh"), SiLU], ids=["gelu", "tanh", "silu"])
def test_gradients(backend, build, shape):
    x = np.random.default_rng(2).normal(size=shape) * 3
    check_layer(build(), x, backend=backend, elementwise=True)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "silu"])
def test_dense_shorthand_gradients_and_equivalence(backend, act):
    x = np.random.default_rng(3).normal(size=(5, 5)) * 2
    check_layer(Dense(5, 5, activation=act), x, backend=backend, elementwise=True)
    fused = xpnet.Sequential([Dense(5, 4, activation=act)], dtype="float64", seed=4)
    layer = GELU("tanh") if act == "gelu_tanh" else (GELU() if act == "gelu" else SiLU())
    split = xpnet.Sequential([Dense(5, 4), layer], dtype="float64", seed=4)
    np.testing.assert_array_equal(fused.predict_proba(x), split.predict_proba(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "silu"])
def test_numpy_kernels_match_portable(dtype, act):
    x = (np.random.default_rng(0).normal(size=(50, 7)) * 6).astype(dtype)
    g = np.random.default_rng(1).normal(size=(50, 7)).astype(dtype)
    fast, ref = NumpyKernels(), PortableKernels()
    got, want = fast.activation(x, act), ref.activation(x, act)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        fast.activation_backward(g, x, act), ref.activation_backward(g, x, act)
    )
    # bias_activation (Dense's path) dispatches the same kernels.
    b = np.zeros(7, dtype=dtype)
    np.testing.assert_array_equal(fast.bias_activation(x.copy(), b, act), want)


def test_backends_agree(other_backend):
    X = np.random.default_rng(0).normal(size=(40, 6))
    y = np.arange(40) % 3
    for act in ("gelu", "silu"):
        a = xpnet.Sequential(
            [Dense(6, 8, activation=act), GELU("tanh"), Dense(8, 3)],
            dtype="float64",
            seed=1,
            backend="numpy",
        )
        b = xpnet.Sequential(
            [Dense(6, 8, activation=act), GELU("tanh"), Dense(8, 3)],
            dtype="float64",
            seed=1,
            backend=other_backend,
        )
        for m in (a, b):
            m.fit(X, y, epochs=2, batch_size=8, seed=2)
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)


def test_config_round_trip_and_errors():
    m = xpnet.Sequential([Dense(3, 3), GELU("tanh"), SiLU(), Dense(3, 2, activation="gelu")])
    back = xpnet.Sequential.from_config(m.get_config())
    assert back.layers[1].approximate == "tanh" and back.layers[1].name == "gelu_tanh"
    assert back.layers[3].activation == "gelu"
    for bad in ("exact", "Tanh", None, 1):
        with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
            GELU(bad)
