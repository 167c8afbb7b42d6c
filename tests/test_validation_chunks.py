"""check_X tests finiteness in chunks of rows: the same errors and counts, a small peak."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from xpnet import validation
from xpnet.validation import check_X


@pytest.mark.parametrize("order", ["C", "F"])
def test_bad_values_are_counted_across_chunk_boundaries(monkeypatch, order):
    monkeypatch.setattr(validation, "_FINITE_CHUNK", 10)  # 3 rows of 3 columns a chunk
    X = np.zeros((10, 3), np.float32, order=order)
    X[2, 2], X[3, 0], X[9, 2] = np.nan, np.inf, -np.inf  # the rows either side of a cut
    with pytest.raises(ValueError, match=r"^xpnet: X contains 3 NaN or infinite values$"):
        check_X(X)
    X[:] = 0.0
    assert check_X(X) is X  # returned as given, no copy


def test_one_column_wider_than_a_chunk_is_still_checked(monkeypatch):
    monkeypatch.setattr(validation, "_FINITE_CHUNK", 4)
    X = np.ones((3, 9))
    X[1, 8] = np.nan
    with pytest.raises(ValueError, match="contains 1 NaN"):
        check_X(X)


def test_the_check_allocates_no_array_as_large_as_X():
    X = np.random.default_rng(0).random((4000, 784), dtype=np.float32)  # 12.5 MB
    tracemalloc.start()
    try:
        check_X(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One chunk's bool array (256 KiB), not X.size bytes (3 MB) as np.isfinite(X) was.
    assert peak < 2 * validation._FINITE_CHUNK, peak
