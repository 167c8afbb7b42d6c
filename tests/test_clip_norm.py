"""clip_norm on every optimizer: torch.nn.utils.clip_grad_norm_'s scaling, flat and
per-parameter paths, nothing read back, records, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.layers import BatchNorm, Dense
from xpnet.optimizers import OPTIMIZERS, SGD, Adam, AdamW, RMSProp
from xpnet.parameter import Parameter


def _grads(seed=0, scale=10.0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(4, 3)) * scale, rng.normal(size=3) * scale]


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e6, 0.0])
def test_scaling_matches_torch(max_norm):
    torch = pytest.importorskip("torch")
    grads = _grads()
    params = [Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.copy()
    SGD(lr=1.0, clip_norm=max_norm).step(params)
    tp = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tp, grads, strict=True):
        t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_(tp, max_norm=max_norm)
    for p, t in zip(params, tp, strict=True):
        np.testing.assert_allclose(-p.data, t.grad.numpy(), rtol=1e-12, atol=1e-300)


def test_flat_and_per_parameter_paths_agree(backend):
    X = np.random.default_rng(0).normal(size=(32, 4)) * 20
    y = np.arange(32) % 3
    layers = lambda: [Dense(4, 6, activation="relu"), BatchNorm(6), Dense(6, 3)]  # noqa: E731
    flat = xpnet.Sequential(layers(), dtype="float64", seed=1)
    flat.fit(X, y, epochs=2, batch_size=8, optimizer=Adam(clip_norm=0.1), shuffle=False)
    # A hand loop over a copy of the parameter list: no flat buffer in the optimizer's view.
    ref = xpnet.Sequential(layers(), dtype="float64", seed=1)
    opt = Adam(clip_norm=0.1)
    loss = xpnet.losses.SoftmaxCrossEntropy()
    xp = ref.backend.xp
    Xd, yd = ref.backend.asarray(X), ref.backend.asarray(y)
    for _ in range(2):
        for i in range(0, 32, 8):
            loss.forward(ref.forward(Xd[i : i + 8, ...], training=True), yd[i : i + 8])
            ref.backward(loss.backward())
            params = ref.parameters()
            for p in params:
                p.grad = xp.asarray(p.grad, copy=True)  # off the flat buffer
            opt.step(params)
    for a, b in zip(flat.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_clipping_changes_training_only_when_the_norm_is_large():
    X = np.random.default_rng(0).normal(size=(32, 4))
    y = np.arange(32) % 3
    runs = {}
    for clip in (None, 1e9, 1e-3):
        m = xpnet.Sequential([Dense(4, 3)], dtype="float64", seed=2)
        m.fit(X, y, epochs=1, batch_size=8, optimizer=SGD(lr=0.1, clip_norm=clip))
        runs[clip] = m.get_weights()[0]
    np.testing.assert_allclose(runs[None], runs[1e9], rtol=1e-12)
    assert not np.allclose(runs[None], runs[1e-3])


@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()))
def test_every_optimizer_takes_and_records_clip_norm(cls):
    opt = cls(clip_norm=2.5)
    assert opt.clip_norm == 2.5
    assert opt.hyperparameters()["clip_norm"] == 2.5
    assert type(opt)(**opt.hyperparameters()).clip_norm == 2.5
    assert "clip_norm" not in cls().hyperparameters()  # old records unchanged


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True])
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSProp])
def test_bad_clip_norm(cls, bad):
    with pytest.raises(ValueError, match="clip_norm"):
        cls(clip_norm=bad)


def test_clipped_training_resumes_bit_identically(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 4)) * 5
    y = np.arange(40) % 3

    def model():
        return xpnet.Sequential(
            [Dense(4, 6, activation="gelu"), Dense(6, 3)], dtype="float64", seed=3
        )

    whole = model()
    whole.fit(X, y, epochs=3, batch_size=8, seed=1, optimizer=Adam(clip_norm=0.5))
    first = model()
    first.fit(
        X, y, epochs=1, batch_size=8, seed=1, optimizer=Adam(clip_norm=0.5), checkpoint=tmp_path
    )
    again = model()
    again.fit(
        X,
        y,
        epochs=3,
        batch_size=8,
        seed=1,
        optimizer=Adam(clip_norm=0.5),
        checkpoint=tmp_path,
        resume=True,
    )
    for a, b in zip(whole.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
