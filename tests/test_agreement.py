"""The same training run on NumPy and on another backend gives the same numbers.

Same architecture, seed, data, dropout masks and shuffles (all drawn on the host), a few
epochs of Adam: the loss history and the final weights must agree to the per-dtype tolerance
of :func:`xpnet.testing.tolerance`. Run with ``-s`` to see the measured differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Sequential
from xpnet.layers import Dense, Dropout, Tanh
from xpnet.optimizers import Adam
from xpnet.testing import (
    TF32_TOLERANCE,
    TOLERANCES,
    assert_allclose,
    make_blobs,
    make_mlp,
    max_differences,
    tf32_active,
    tolerance,
)


def train(backend, dtype: str):
    X, y = make_blobs(256, n_features=20, n_classes=4, spread=2.0, seed=3)
    Xv, yv = make_blobs(64, n_features=20, n_classes=4, spread=2.0, seed=3)
    model = Sequential(
        [
            Dense(20, 32, activation="relu"),
            Dropout(0.2),
            Dense(32, 16),
            Tanh(),
            Dropout(0.1),
            Dense(16, 4),
        ],
        dtype=dtype,
        seed=0,
        backend=backend,
    )
    history = model.fit(
        X,
        y,
        epochs=4,
        batch_size=32,
        optimizer=Adam(lr=1e-2),
        validation_data=(Xv, yv),
        seed=1,
    )
    return history.history, model.get_weights(), model.predict_proba(X)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_agrees_with_numpy(other_backend, dtype, record_property):
    reference = train(xpnet.set_backend("numpy"), dtype)
    result = train(other_backend, dtype)
    rtol, atol = tolerance(dtype, tf32=tf32_active(other_backend))

    (h_ref, w_ref, p_ref), (h, w, p) = reference, result
    assert h_ref["loss"][-1] < h_ref["loss"][0]  # it did train
    worst_abs = worst_rel = 0.0
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert_allclose(h[key], h_ref[key], rtol=rtol, atol=atol, err_msg=f"history {key}")
        a, r = max_differences(h[key], h_ref[key])
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
    for i, (a, r) in enumerate(zip(w, w_ref, strict=True)):
        assert a.dtype == np.dtype(dtype)
        assert_allclose(a, r, rtol=rtol, atol=atol, err_msg=f"weight array {i}")
        d_abs, d_rel = max_differences(a, r)
        worst_abs, worst_rel = max(worst_abs, d_abs), max(worst_rel, d_rel)
    assert_allclose(p, p_ref, rtol=rtol, atol=atol, err_msg="predict_proba")

    line = (
        f"agreement numpy vs {other_backend.name} [{dtype}]: max abs diff {worst_abs:.3g}, "
        f"max rel diff {worst_rel:.3g} (tolerance rtol={rtol:g}, atol={atol:g})"
    )
    print(line)
    record_property(f"agreement_{other_backend.name}_{dtype}_max_rel", worst_rel)
    record_property(f"agreement_{other_backend.name}_{dtype}_max_abs", worst_abs)


# --------------------------------------------------------------------------- the yardstick
def test_tolerances_per_dtype(backend):
    assert tolerance("float64") == TOLERANCES["float64"]
    assert tolerance(np.float32) == TOLERANCES["float32"]
    assert tolerance(backend.xp.float64) == TOLERANCES["float64"]  # a dtype of any backend
    assert tolerance("float32", tf32=True) == TF32_TOLERANCE
    assert tolerance("float64", tf32=True) == TOLERANCES["float64"]
    assert TOLERANCES["float64"][0] <= 1e-10 < TOLERANCES["float32"][0] <= 1e-4
    assert TF32_TOLERANCE[0] > TOLERANCES["float32"][0]
    with pytest.raises(ValueError, match="no tolerance for dtype 'int64'"):
        tolerance("int64")


def test_assert_allclose_accepts_any_backend_and_reports_the_difference(backend):
    a = backend.asarray(np.array([1.0, 2.0, 3.0]))
    assert_allclose(a, np.array([1.0, 2.0, 3.0 + 1e-11]))
    with pytest.raises(AssertionError) as info:
        assert_allclose(a, np.array([1.0, 2.5, 3.0]), err_msg="context")
    message = str(info.value)
    assert message.startswith("context")
    assert "1 of 3 elements differ" in message
    assert "max abs difference: 0.5" in message
    assert "max rel difference: 0.2" in message
    assert "worst at index (1,)" in message


def test_assert_allclose_picks_the_coarser_dtype():
    x32 = np.array([1.0, 2.0], dtype=np.float32)
    assert_allclose(x32, np.array([1.00001, 2.0]))  # float32 tolerance
    with pytest.raises(AssertionError):
        assert_allclose(x32.astype(np.float64), np.array([1.00001, 2.0]))
    assert_allclose(x32.astype(np.float64), np.array([1.00001, 2.0]), dtype="float32")


def test_assert_allclose_nans_infs_and_shapes():
    assert_allclose(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]))
    with pytest.raises(AssertionError, match="1 of 2 elements differ"):
        assert_allclose(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(AssertionError):
        assert_allclose(np.array([np.inf]), np.array([-np.inf]))
    with pytest.raises(AssertionError, match=r"shape mismatch: actual \(2,\), desired \(3,\)"):
        assert_allclose(np.ones(2), np.ones(3))
    assert_allclose(np.full((2, 2), 0.5), 0.5)  # a scalar broadcasts


def test_max_differences():
    assert max_differences([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0)
    assert max_differences([1.0, 2.2], [1.0, 2.0]) == pytest.approx((0.2, 0.1))
    assert max_differences([1e-3], [0.0]) == (1e-3, float("inf"))


def test_make_blobs_and_make_mlp(backend):
    X, y = make_blobs(31, n_features=5, n_classes=3, seed=2)
    assert X.shape == (31, 5)
    assert X.dtype == np.float64
    assert y.dtype == np.int64
    assert sorted(np.bincount(y)) == [10, 10, 11]
    X2, y2 = make_blobs(31, n_features=5, n_classes=3, seed=2)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    model = make_mlp(sizes=(5, 7, 3), dropout=0.5, activation="tanh")
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout", "Dense"]
    assert model.layers[0].activation == "tanh"
    assert model.layers[-1].activation is None
    assert model.backend is backend
    assert model.dtype == "float64"
    with pytest.raises(ValueError, match="at least two widths"):
        make_mlp(sizes=(5,))


def test_max_differences_of_special_values():
    assert max_differences([np.inf, np.nan], [np.inf, np.nan]) == (0.0, 0.0)
    assert max_differences([np.inf], [-np.inf]) == (np.inf, np.inf)
    assert max_differences([np.nan], [1.0]) == (np.inf, np.inf)
