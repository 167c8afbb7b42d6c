"""NumPy vs CuPy: the same model, seed and data give the same numbers on both backends.

Training is compared step by step (loss, gradients after the first step, weights after every
step) and end to end through ``fit``, with tolerances per dtype in the spirit of CuPy's
``numpy_cupy_allclose`` (:func:`xpnet.testing.tolerance`): float64 element-wise to about 1e-10
relative, float32 to about 1e-4. Initial weights and dropout masks come from the host
generator and must be identical, not merely close.

With TensorFloat-32 matrix products (``CUPY_TF32=1``, read from the environment as CuPy reads
it) each product is only good to about 1e-3 of the size of its terms, so element-wise relative
checks stop making sense for entries formed by cancellation. The float32 comparisons then
become norm-wise: ``max|a - d| <= 4e-3 max|d|`` per array (losses: relative 4e-3). Adam turns
a perturbed small gradient into an update of about ``lr`` whatever its size, so Adam-trained
weights may also differ by ``lr * steps``; and a ReLU unit flips where TF32 moves its
pre-activation across zero, so for ReLU networks gradients and weights are only held to a
relative Frobenius distance of 0.1. (A CPU simulation of TF32 rounding, 20 steps, put ReLU
networks at about 0.05 and the others within these bounds.) With TF32 off, the default of
``nox -s tests-gpu``, none of this applies.

Every test here but the first needs CuPy and a CUDA device: it skips cleanly without them, or
fails under ``XPNET_REQUIRE_GPU=1`` (set by ``nox -s tests-gpu``). The first runs the same
harness on NumPy against array-api-strict, so the comparison code is exercised on every CI run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import xpnet
from xpnet.backend import Backend, to_numpy
from xpnet.kernels import get_kernels
from xpnet.layers import Dropout
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam, Optimizer
from xpnet.testing import assert_allclose, make_blobs, make_mlp, tolerance

DTYPES = ["float32", "float64"]

#: CuPy enables TF32 matrix products when CUPY_TF32 is a positive integer (it reads it so).
TF32 = int(os.environ.get("CUPY_TF32", "0") or 0) > 0

#: Under TF32, float32 comparisons are norm-wise with this relative tolerance (module doc).
TF32_RTOL = 4 * tolerance("float32", tf32=True)[0]
#: ... and for ReLU networks, whose units flip where TF32 moves a pre-activation across zero,
#: gradients and weights only to this relative Frobenius distance.
TF32_KINK_RTOL = 0.1


def _tf32(dtype: str) -> bool:
    return TF32 and dtype == "float32"


def assert_agree(
    actual, desired, dtype: str, what: str, adam_drift: float = 0.0, kinks: bool = False
) -> None:
    """``actual`` (CuPy's) against ``desired`` (NumPy's) with the tolerance for ``dtype``.

    Under TF32 (float32 only) ``adam_drift`` is the extra absolute room of an Adam-trained
    weight (``lr * steps``) and ``kinks`` marks values downstream of ReLUs.
    """
    if not _tf32(dtype):
        rtol, atol = tolerance(dtype)
        assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)
        return
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    if kinks:
        dist = float(np.linalg.norm(a - d)) / max(float(np.linalg.norm(d)), 1e-30)
        assert dist <= TF32_KINK_RTOL, f"{what}: relative distance {dist:.3g} (TF32, ReLU)"
        return
    allowed = max(TF32_RTOL * float(np.max(np.abs(d), initial=0.0)), adam_drift)
    worst = float(np.max(np.abs(a - d), initial=0.0))
    assert worst <= allowed, f"{what}: max |difference| {worst:.3g} > {allowed:.3g} (TF32)"


def _backend(name: str) -> Backend:
    try:
        with xpnet.use_backend(name) as backend:
            return backend
    except xpnet.BackendUnavailableError as exc:
        if name == "cupy" and os.environ.get("XPNET_REQUIRE_GPU") == "1":
            pytest.fail(f"XPNET_REQUIRE_GPU=1 but the cupy backend is unavailable: {exc}")
        pytest.skip(f"backend {name!r} unavailable: {exc}")


@pytest.fixture
def cupy_backend() -> Backend:
    return _backend("cupy")


# ----------------------------------------------------------------------------- the harness


@dataclass
class Trace:
    """What one short training run produced, as host arrays."""

    initial: list[np.ndarray]
    first_grads: list[np.ndarray]
    losses: list[float]
    weights: list[list[np.ndarray]]  # after each step


@dataclass(frozen=True)
class Config:
    activation: str
    dropout: float
    optimizer: Callable[[], Optimizer]
    steps: int = 20


CONFIGS = {
    "relu-adam": Config("relu", 0.0, lambda: Adam(lr=1e-3)),
    "tanh-dropout-sgd": Config("tanh", 0.2, lambda: SGD(lr=0.05, momentum=0.9, nesterov=True)),
    "sigmoid-adam": Config("sigmoid", 0.0, lambda: Adam(lr=3e-3)),
}


def _data(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=256, n_features=20, n_classes=5, spread=2.0, seed=seed)
    # Standardized, as real inputs are: a saturated tanh or sigmoid computes its derivative
    # from the output as 1 - y*y or y*(1 - y), which cancels to rounding noise, and Adam
    # scales such a gradient up to an update of order lr whatever its size.
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def train_trace(backend: Backend, dtype: str, config: Config, batch_size: int = 32) -> Trace:
    """Run ``config.steps`` hand-written training steps, recording everything on the host.

    The batches are drawn on the host from a fixed permutation so both backends see the same
    samples in the same order; the model's generator draws the weights and dropout masks.
    """
    X, y = _data()
    model = make_mlp(
        backend,
        sizes=(20, 64, 32, 5),
        activation=config.activation,
        dropout=config.dropout,
        dtype=dtype,
        seed=0,
    )
    loss_fn = SoftmaxCrossEntropy()
    optimizer = config.optimizer()
    params = model.parameters()
    order = np.random.default_rng(2).permutation(len(X))
    trace = Trace(model.get_weights(), [], [], [])
    for step in range(config.steps):
        lo = (step * batch_size) % len(X)
        idx = order[lo : lo + batch_size]
        xb = model.backend.asarray(X[idx], dtype=dtype)
        yb = model.backend.asarray(y[idx], dtype="int64")
        value = loss_fn.forward(model.forward(xb, training=True), yb)
        model.backward(loss_fn.backward())
        if step == 0:
            trace.first_grads = [to_numpy(p.grad).copy() for p in params]
        optimizer.step(params)
        trace.losses.append(float(value))
        trace.weights.append(model.get_weights())
    return trace


def assert_traces_agree(actual: Trace, desired: Trace, dtype: str, config: Config) -> None:
    adam_lr = config.optimizer().lr if isinstance(config.optimizer(), Adam) else 0.0
    kinks = config.activation == "relu"
    for i, (a, d) in enumerate(zip(actual.initial, desired.initial, strict=True)):
        np.testing.assert_array_equal(a, d, err_msg=f"initial weight array {i} differs")
    for i, (a, d) in enumerate(zip(actual.first_grads, desired.first_grads, strict=True)):
        assert_agree(a, d, dtype, f"gradient {i} after step 1", kinks=kinks)
    for step, (la, ld) in enumerate(zip(actual.losses, desired.losses, strict=True)):
        assert_agree(la, ld, dtype, f"loss at step {step + 1}")
    for step, (wa, wd) in enumerate(zip(actual.weights, desired.weights, strict=True)):
        for i, (a, d) in enumerate(zip(wa, wd, strict=True)):
            what = f"weights {i} after step {step + 1}"
            assert_agree(a, d, dtype, what, adam_drift=adam_lr * (step + 1), kinks=kinks)
    assert desired.losses[-1] < desired.losses[0], "the model did not learn"


def test_harness_agrees_on_two_cpu_backends():
    """The comparison code itself, on every CI run: NumPy (fast kernels) vs array-api-strict
    (portable kernels) must agree like NumPy and CuPy must."""
    strict = _backend("array_api_strict")
    numpy_backend = _backend("numpy")
    for name in ("relu-adam", "tanh-dropout-sgd"):
        config = dataclasses.replace(CONFIGS[name], steps=8)
        assert_traces_agree(
            train_trace(strict, "float64", config),
            train_trace(numpy_backend, "float64", config),
            "float64",
            config,
        )


# ----------------------------------------------------------------------------- NumPy vs CuPy


@pytest.mark.gpu
def test_cupy_uses_the_fused_kernels(cupy_backend):
    # The registry falls back to the portable kernels on ImportError; on a GPU that would hide
    # a broken cupy_fused module behind passing agreement tests.
    from xpnet.kernels.cupy_fused import CupyKernels

    assert isinstance(get_kernels(cupy_backend.xp), CupyKernels)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_initial_weights_are_identical(cupy_backend, dtype):
    on_numpy = make_mlp("numpy", sizes=(20, 64, 32, 5), dtype=dtype, seed=3).get_weights()
    on_cupy = make_mlp(cupy_backend, sizes=(20, 64, 32, 5), dtype=dtype, seed=3).get_weights()
    for a, d in zip(on_cupy, on_numpy, strict=True):
        assert a.dtype == d.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, d)


@pytest.mark.gpu
def test_dropout_masks_are_identical(cupy_backend):
    numpy_backend = _backend("numpy")
    masks = []
    for backend in (numpy_backend, cupy_backend):
        layer = Dropout(0.3)
        layer.rng = np.random.default_rng(42)
        ones = backend.asarray(np.ones((64, 50)), dtype="float32")
        # On ones the output is the scaled mask itself; two calls check the generator advances
        # identically too.
        masks.append([to_numpy(layer.forward(ones, training=True)).copy() for _ in range(2)])
    for a, d in zip(masks[1], masks[0], strict=True):
        np.testing.assert_array_equal(a, d)
    assert not np.array_equal(masks[0][0], masks[0][1])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", list(CONFIGS), ids=str)
def test_training_agrees_step_by_step(cupy_backend, dtype, config):
    numpy_trace = train_trace(_backend("numpy"), dtype, CONFIGS[config])
    cupy_trace = train_trace(cupy_backend, dtype, CONFIGS[config])
    assert_traces_agree(cupy_trace, numpy_trace, dtype, CONFIGS[config])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_agrees(cupy_backend, dtype):
    X, y = _data()
    Xv, yv = _data(seed=9)
    results = {}
    for backend in (_backend("numpy"), cupy_backend):
        model = make_mlp(backend, sizes=(20, 64, 32, 5), dropout=0.1, dtype=dtype, seed=4)
        history = model.fit(
            X,
            y,
            epochs=3,
            batch_size=24,
            optimizer=Adam(lr=2e-3),
            validation_data=(Xv, yv),
            seed=8,
        )
        results[backend.name] = (history.history, model.get_weights())
    (h_np, w_np), (h_cp, w_cp) = results["numpy"], results["cupy"]
    steps = 3 * -(-len(y) // 24)
    for key in ("loss", "val_loss"):
        for epoch, (a, d) in enumerate(zip(h_cp[key], h_np[key], strict=True)):
            assert_agree(a, d, dtype, f"{key} of epoch {epoch + 1}")
    for key, n in (("accuracy", len(y)), ("val_accuracy", len(yv))):
        # An argmax between two nearly equal logits may go either way: one sample at most
        # (2% of them under TF32).
        flips = max(1, n // 50) if _tf32(dtype) else 1
        diff = np.max(np.abs(np.subtract(h_cp[key], h_np[key])))
        assert diff <= flips / n + 1e-12, f"{key} differs by {diff}"
    for i, (a, d) in enumerate(zip(w_cp, w_np, strict=True)):
        assert_agree(a, d, dtype, f"final weights {i}", adam_drift=2e-3 * steps, kinks=True)


# ----------------------------------------------------------------------------- transfers


def _count_transfers(mp: pytest.MonkeyPatch) -> dict[str, int]:
    """Count device-to-host reads (each public way a CuPy array reaches the host; one read may
    count twice where CuPy routes, say, ``__float__`` through ``get``) and host-to-device moves
    through the backend namespace's ``asarray``."""
    import array_api_compat.cupy as cupy_xp
    import cupy

    counts = {"to_host": 0, "to_device": 0}

    def counted(original, key, host_only=False):
        def wrapper(*args, **kwargs):
            if not host_only or isinstance(args[0], np.ndarray):
                counts[key] += 1
            return original(*args, **kwargs)

        return wrapper

    for name in ("get", "item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        if hasattr(cupy.ndarray, name):
            mp.setattr(cupy.ndarray, name, counted(getattr(cupy.ndarray, name), "to_host"))
    mp.setattr(cupy_xp, "asarray", counted(cupy_xp.asarray, "to_device", host_only=True))
    return counts


def _fit_transfers(backend: Backend, n_samples: int, check_every: int = 10**6) -> dict[str, int]:
    X, y = make_blobs(n_samples=n_samples, n_features=10, n_classes=3, seed=0)
    model = make_mlp(backend, sizes=(10, 16, 3), dtype="float32", seed=0)
    model.parameters()  # build outside the counted region
    with pytest.MonkeyPatch.context() as mp:
        counts = _count_transfers(mp)
        model.fit(X, y, epochs=2, batch_size=16, check_every=check_every, seed=0)
        return dict(counts)


@pytest.mark.gpu
def test_transfer_counter_sees_every_read_path(cupy_backend):
    """The counter behind the next test must register each path, or that test could pass by
    counting nothing."""
    with pytest.MonkeyPatch.context() as mp:
        counts = _count_transfers(mp)
        a = cupy_backend.asarray(np.arange(3.0), dtype="float32")
        assert counts["to_device"] == 1
        for read in (lambda: float(a[0]), lambda: int(a[1]), lambda: to_numpy(a)):
            before = counts["to_host"]
            read()
            assert counts["to_host"] > before


@pytest.mark.gpu
def test_fit_moves_data_per_epoch_not_per_batch(cupy_backend):
    few = _fit_transfers(cupy_backend, n_samples=64)  # 4 batches an epoch
    many = _fit_transfers(cupy_backend, n_samples=512)  # 32 batches an epoch
    assert few == many, f"transfers grow with the number of batches: {few} vs {many}"
    # 2 epochs, one read each (the loss sum, the correct count and the finiteness of every
    # weight stacked into one array), maybe counted twice where CuPy routes one read via get.
    assert 0 < many["to_host"] <= 2 * 1 * 2, many
    # Each finiteness check reads one number back: 32 // 5 = 6 more per epoch, 2 epochs.
    checked = _fit_transfers(cupy_backend, n_samples=512, check_every=5)
    extra = checked["to_host"] - many["to_host"]
    assert extra > 0 and extra % 12 == 0, (checked, many)
