"""Dropout masks drawn per epoch in chunks inside ``fit`` (few host-to-device copies)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_fit_keys_each_stochastic_layer_before_every_training_forward(monkeypatch) -> None:
    # fit no longer plans masks; it draws one seed per stochastic layer at each epoch start
    # (after the shuffle) and keys the layer with (seed, step, 0) before each forward.
    calls: list[tuple[int, int, int]] = []

    def recording(self, seed, step, row_offset=0):
        calls.append((seed, step, row_offset))

    monkeypatch.setattr(Dropout, "set_random_key", recording)
    X = np.random.default_rng(0).standard_normal((640, 8))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential(
        [Dense(8, 16, activation="relu"), Dropout(0.2), Dense(16, 2)], seed=0, dtype="float64"
    )
    model.fit(X, y, epochs=2, batch_size=32, seed=0)
    assert [c[1] for c in calls] == list(range(20)) * 2
    assert all(c[2] == 0 for c in calls)
    first, second = {c[0] for c in calls[:20]}, {c[0] for c in calls[20:]}
    assert len(first) == len(second) == 1 and first != second
    rng = np.random.default_rng(0)
    rng.permutation(640)
    assert first == {int(rng.integers(0, 2**63 - 1, size=1)[0])}


def test_plan_is_dropped_when_fit_stops_early() -> None:
    X = np.random.default_rng(0).standard_normal((64, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    layer = Dropout(0.5)
    model = Sequential([Dense(4, 8), layer, Dense(8, 2)], seed=0, dtype="float64")
    model.fit(X, y, epochs=1, batch_size=16, seed=0)
    assert layer._plan is None and layer._chunk is None
