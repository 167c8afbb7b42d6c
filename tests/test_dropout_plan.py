"""Dropout masks drawn per epoch in chunks inside ``fit`` (few host-to-device copies)."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Sequential
from xpnet.backend import to_numpy
from xpnet.layers import Dense, Dropout
from xpnet.layers import dropout as dropout_module


def _masks(layer: Dropout, backend, rows: list[int], width: int) -> np.ndarray:
    out = []
    for r in rows:
        x = backend.asarray(np.ones((r, width)), dtype="float64")
        out.append(to_numpy(layer.forward(x, training=True)))
    return np.concatenate(out)


@pytest.mark.parametrize("elements", [1 << 22, 8])
def test_planned_masks_follow_the_generator_in_order(backend, monkeypatch, elements) -> None:
    # With chunks as small as one batch (elements=8) or one chunk for the epoch, a single
    # layer consumes the generator exactly as one draw of the whole epoch would.
    monkeypatch.setattr(dropout_module, "_PLAN_ELEMENTS", elements)
    layer = Dropout(0.5)
    layer.rng = np.random.default_rng(7)
    layer.plan_epoch(10, 4)
    got = _masks(layer, backend, [4, 4, 2], 4)
    expected = (np.random.default_rng(7).random((10, 4), dtype=np.float32) >= 0.5) * 2.0
    np.testing.assert_array_equal(got, expected)


def test_fit_draws_masks_per_chunk_not_per_batch(monkeypatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = Dropout._draw

    def counting(self, shape):
        calls.append(shape)
        return real(self, shape)

    monkeypatch.setattr(Dropout, "_draw", counting)
    X = np.random.default_rng(0).standard_normal((640, 8))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential(
        [Dense(8, 16, activation="relu"), Dropout(0.2), Dense(16, 2)], seed=0, dtype="float64"
    )
    model.fit(X, y, epochs=2, batch_size=32, seed=0)
    # 20 batches an epoch, but one draw of the whole epoch's 640 x 16 mask.
    assert calls == [(640, 16), (640, 16)]
    # Outside fit the layer draws per call again.
    calls.clear()
    model.forward(xpnet.get_backend().asarray(X[:5], dtype="float64"), training=True)
    assert calls == [(5, 16)]


def test_plan_is_dropped_when_fit_stops_early() -> None:
    X = np.random.default_rng(0).standard_normal((64, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    layer = Dropout(0.5)
    model = Sequential([Dense(4, 8), layer, Dense(8, 2)], seed=0, dtype="float64")
    model.fit(X, y, epochs=1, batch_size=16, seed=0)
    assert layer._plan is None and layer._chunk is None
