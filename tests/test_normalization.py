"""BatchNorm and LayerNorm: PyTorch agreement, gradients, buffers in checkpoints and resume,
EarlyStopping restoring the running statistics, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.backend import backend_of
from xpnet.callbacks import EarlyStopping
from xpnet.kernels import PortableKernels
from xpnet.kernels.numpy_fast import NumpyKernels
from xpnet.layers import BatchNorm, Dense, LayerNorm, ReLU
from xpnet.testing import check_layer


def _x(shape, seed=0, scale=3.0, shift=1.0):
    return np.random.default_rng(seed).normal(size=shape) * scale + shift


@pytest.mark.parametrize("shape", [(7, 5), (5, 5), (2, 3)], ids=str)
@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_gradients(backend, kind, shape):
    layer = kind(shape[1])
    check_layer(layer, _x(shape), backend=backend, elementwise=True)


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, 0.37])
def test_batchnorm_matches_torch(momentum):
    torch = pytest.importorskip("torch")
    x, g = _x((9, 4)), _x((9, 4), seed=1, shift=0.0)
    model = xpnet.Sequential([BatchNorm(4, eps=1e-3, momentum=momentum)], dtype="float64")
    model.set_weights([np.array([1.0, 2.0, -0.5, 0.3]), np.array([0.1, 0.0, -1.0, 2.0])])
    ref = torch.nn.BatchNorm1d(4, eps=1e-3, momentum=momentum).double()
    with torch.no_grad():
        ref.weight[:] = torch.tensor([1.0, 2.0, -0.5, 0.3], dtype=torch.float64)
        ref.bias[:] = torch.tensor([0.1, 0.0, -1.0, 2.0], dtype=torch.float64)
    bn = model.layers[0]
    for step in range(3):
        xs = x + step
        tx = torch.tensor(xs, requires_grad=True)
        ty = ref(tx)
        ty.backward(torch.tensor(g))
        y = bn.forward(xs, training=True)
        dx = bn.backward(g)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bn.weight.grad, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bn.bias.grad, ref.bias.grad.numpy(), rtol=1e-12, atol=1e-12)
        ref.weight.grad = ref.bias.grad = None
    np.testing.assert_allclose(bn.running_mean, ref.running_mean.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bn.running_var, ref.running_var.numpy(), rtol=1e-12, atol=1e-14)
    ref.eval()
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
    np.testing.assert_allclose(bn.forward(x), want, rtol=1e-12, atol=1e-12)


def test_layernorm_matches_torch():
    torch = pytest.importorskip("torch")
    x, g = _x((6, 5)), _x((6, 5), seed=1, shift=0.0)
    model = xpnet.Sequential([LayerNorm(5, eps=1e-4)], dtype="float64")
    w, b = np.linspace(-1.0, 2.0, 5), np.linspace(0.5, -0.5, 5)
    model.set_weights([w, b])
    ref = torch.nn.LayerNorm(5, eps=1e-4).double()
    with torch.no_grad():
        ref.weight[:] = torch.tensor(w)
        ref.bias[:] = torch.tensor(b)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(g))
    ln = model.layers[0]
    np.testing.assert_allclose(ln.forward(x, training=True), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ln.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ln.weight.grad, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ln.bias.grad, ref.bias.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_kernels_match_portable(dtype):
    x = _x((11, 6)).astype(dtype)
    g = _x((11, 6), seed=2).astype(dtype)
    w = np.linspace(-1, 1, 6).astype(dtype)
    fast, ref = NumpyKernels(), PortableKernels()
    tol = 1e-6 if dtype == "float32" else 1e-14
    for axis in (0, 1):
        m, v = x.mean(axis=axis, keepdims=axis == 1), x.var(axis=axis, keepdims=axis == 1)
        (xh, s), (xh_ref, s_ref) = fast.normalize(x, m, v, 1e-5), ref.normalize(x, m, v, 1e-5)
        np.testing.assert_array_equal(xh, xh_ref)
        np.testing.assert_array_equal(s, s_ref)
        assert xh.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(fast.scale_shift(xh, w, w), ref.scale_shift(xh, w, w))
    m, v = x.mean(axis=0), x.var(axis=0)
    xh, s = ref.normalize(x, m, v, 1e-5)
    dw, db = (g * xh).sum(axis=0), g.sum(axis=0)
    np.testing.assert_allclose(
        fast.batch_norm_backward(g, xh, s, w, dw, db),
        ref.batch_norm_backward(g, xh, s, w, dw, db),
        rtol=tol,
        atol=tol,
    )
    m, v = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    xh, s = ref.normalize(x, m, v, 1e-5)
    np.testing.assert_allclose(
        fast.layer_norm_backward(g, xh, s, w),
        ref.layer_norm_backward(g, xh, s, w),
        rtol=tol,
        atol=tol,
    )


def _model(backend, norm=BatchNorm, seed=0):
    return xpnet.Sequential(
        [Dense(4, 8), norm(8), ReLU(), Dense(8, 3)], dtype="float64", seed=seed, backend=backend
    )


def _data(n=64):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, 4)) * 2 + 1
    return X, (X[:, 0] > 1).astype(np.int64) + (X[:, 1] > 2)


def test_backends_agree(other_backend):
    X, y = _data()
    a, b = _model("numpy"), _model(other_backend)
    for m in (a, b):
        m.fit(X, y, epochs=2, batch_size=16, seed=3)
    # The bias of the Dense before BatchNorm has a gradient of zero up to rounding (the
    # normalisation removes it), so it holds rounding noise: compared in absolute terms.
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-10)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(
            xpnet.to_numpy(a.layers[1].buffers()[name]),
            xpnet.to_numpy(b.layers[1].buffers()[name]),
            rtol=1e-10,
            atol=1e-10,
        )


def test_weights_order_and_summary():
    m = _model("numpy")
    shapes = [w.shape for w in m.get_weights()]
    assert shapes == [(4, 8), (8,), (8,), (8,), (8, 3), (3,)]
    np.testing.assert_array_equal(m.get_weights()[2], np.ones(8))  # BatchNorm weight
    np.testing.assert_array_equal(m.get_weights()[3], np.zeros(8))  # then bias
    assert "Total parameters: 83" in m.summary(print_fn=None)
    assert set(m.layers[1].buffers()) == {"running_mean", "running_var"}
    assert all(p.name in ("weight", "bias") for p in m.layers[1].parameters())


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_save_load_keeps_the_running_statistics(tmp_path, fmt):
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    X, y = _data()
    m = _model("numpy")
    m.fit(X, y, epochs=2, batch_size=16)
    path = m.save(tmp_path / "m.bin", format=fmt)
    back = xpnet.load_model(path)
    np.testing.assert_array_equal(back.layers[1].running_var, m.layers[1].running_var)
    np.testing.assert_array_equal(back.layers[1].running_mean, m.layers[1].running_mean)
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))


def test_resume_is_bit_identical(tmp_path):
    X, y = _data()
    whole = _model("numpy")
    whole.fit(X, y, epochs=4, batch_size=16, seed=1)
    part = _model("numpy")
    part.fit(X, y, epochs=2, batch_size=16, seed=1, checkpoint=tmp_path)
    resumed = _model("numpy")
    resumed.fit(X, y, epochs=4, batch_size=16, seed=1, checkpoint=tmp_path, resume=True)
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.layers[1].running_var, resumed.layers[1].running_var)
    np.testing.assert_array_equal(whole.layers[1].running_mean, resumed.layers[1].running_mean)


def test_early_stopping_restores_the_running_statistics():
    X, y = _data(96)
    m = _model("numpy")
    snapshots = []

    class Snap(xpnet.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], np.array(m.layers[1].running_mean)))

    stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    # A learning rate this large makes the validation loss rise, so the stop comes early.
    m.fit(
        X[:64],
        y[:64],
        epochs=30,
        batch_size=8,
        validation_data=(X[64:], y[64:]),
        optimizer=xpnet.optimizers.SGD(lr=0.5),
        callbacks=[Snap(), stop],
    )
    best = min(snapshots, key=lambda s: s[0])
    assert len(snapshots) < 30
    assert not np.array_equal(snapshots[-1][1], best[1])
    np.testing.assert_array_equal(m.layers[1].running_mean, best[1])


def test_to_moves_the_running_statistics(other_backend):
    X, y = _data()
    m = _model("numpy")
    m.fit(X, y, epochs=1, batch_size=16)
    want = m.predict_proba(X)
    m.to(other_backend)
    np.testing.assert_allclose(m.predict_proba(X), want, rtol=1e-12)
    assert backend_of(m.layers[1].running_mean) == other_backend


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: BatchNorm(0), "num_features"),
        (lambda: BatchNorm(3.5), "num_features"),
        (lambda: BatchNorm(3, eps=0.0), "eps"),
        (lambda: BatchNorm(3, eps=-1e-5), "eps"),
        (lambda: BatchNorm(3, eps=float("nan")), "eps"),
        (lambda: BatchNorm(3, momentum=1.5), "momentum"),
        (lambda: BatchNorm(3, momentum=-0.1), "momentum"),
        (lambda: LayerNorm(3, eps=0), "eps"),
        (lambda: LayerNorm(True), "num_features"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_training_batch_of_one_row_raises():
    m = _model("numpy")
    bn = m.layers[1]
    m.forward(np.ones((3, 4)))  # builds
    with pytest.raises(ValueError, match="more than one row"):
        bn.forward(np.ones((1, 8)), training=True)
    assert bn.forward(np.ones((1, 8))).shape == (1, 8)  # inference is fine
    X, y = _data(17)
    with pytest.raises(ValueError, match="more than one row"):
        m.fit(X, y, epochs=1, batch_size=16, shuffle=False)


def test_wrong_width_raises():
    m = _model("numpy")
    m.forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"expected input of shape \(n, 8\)"):
        m.layers[1].forward(np.ones((3, 7)))
