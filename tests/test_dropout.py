"""Counter-based dropout masks (xpnet.random): bits, statistics, device and the training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet import Sequential
from xpnet.backend import Backend, to_numpy
from xpnet.layers import Dense, Dropout
from xpnet.random import (
    hash_bits,
    hash_bits_reference,
    keep_mask,
    keep_threshold,
    key_words,
    mix32,
    mix32_int,
)

# Statistical checks use 5 standard errors: a false alarm about once in 1.7 million runs, and
# the inputs are fixed, so a pass is reproducible.
SIGMAS = 5.0


def _bits(backend: Backend, shape, seed, step, row_offset=0) -> np.ndarray:
    out = hash_bits(backend.xp, shape, seed, step, row_offset, device=backend.device)
    return to_numpy(out).astype(np.uint32)


def _mask(backend: Backend, shape, p, seed, step, row_offset=0) -> np.ndarray:
    x = backend.xp.zeros(shape, dtype=backend.xp.float32, device=backend.device)
    return to_numpy(keep_mask(x, p, seed, step, row_offset))


def _within_binomial(count: int, n: int, prob: float) -> bool:
    return abs(count - n * prob) <= SIGMAS * math.sqrt(n * prob * (1 - prob))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


# --------------------------------------------------------------------------- the hash
def test_mix32_arrays_equal_the_integer_reference(backend):
    values = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF, 123456789]
    x = backend.xp.asarray(values, dtype=backend.xp.uint32)
    got = to_numpy(mix32(x)).tolist()
    assert got == [mix32_int(v) for v in values]
    assert to_numpy(x).tolist() == values  # the input is left alone


@pytest.mark.parametrize(
    ("seed", "step", "row_offset"),
    [(0, 0, 0), (12345, 7, 0), (2**63 - 2, 2**32 - 1, 1000), (2**64 - 1, 3, 2**32 - 4)],
)
def test_hash_bits_equal_the_pure_python_reference(backend, seed, step, row_offset):
    got = _bits(backend, (4, 6), seed, step, row_offset)
    assert got.dtype == np.uint32
    expected = [
        [hash_bits_reference(seed, step, row_offset + r, c) for c in range(6)] for r in range(4)
    ]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.uint32))


def test_masks_are_the_same_bits_on_every_backend(other_backend):
    reference = xpnet.backend._resolve("numpy")
    for seed, step, offset in [(1, 0, 0), (2**62 + 5, 99, 256), (77, 2**31, 3)]:
        np.testing.assert_array_equal(
            _bits(other_backend, (33, 70), seed, step, offset),
            _bits(reference, (33, 70), seed, step, offset),
        )
    # And the layer's output, through set_random_key and through its own stream.
    outs = []
    for b in (reference, other_backend):
        layer = Dropout(0.3)
        layer.rng = np.random.default_rng(42)
        ones = b.asarray(np.ones((64, 50)), dtype="float32")
        layer.set_random_key(2**40 + 3, 5, row_offset=128)
        keyed = to_numpy(layer.forward(ones, training=True))
        own = [to_numpy(layer.forward(ones, training=True)) for _ in range(2)]
        outs.append([keyed, *own])
    for a, d in zip(outs[1], outs[0], strict=True):
        np.testing.assert_array_equal(a, d)


def test_key_words_reject_out_of_range_keys():
    with pytest.raises(ValueError, match=r"seed must be in \[0, 18446744073709551616\), got -1"):
        key_words(-1, 0)
    with pytest.raises(ValueError, match="seed must be in"):
        key_words(2**64, 0)
    with pytest.raises(ValueError, match=r"step must be in \[0, 4294967296\), got 4294967296"):
        key_words(0, 2**32)
    with pytest.raises(TypeError, match="seed must be an integer, got float"):
        key_words(1.5, 0)
    with pytest.raises(TypeError, match="step must be an integer, got bool"):
        key_words(1, True)
    assert key_words(np.int64(5), np.uint32(2)) == key_words(5, 2)


def test_hash_bits_refuses_rows_past_2_to_the_32(backend):
    with pytest.raises(ValueError, match="global rows below 2\\*\\*32"):
        hash_bits(backend.xp, (8, 2), 0, 0, row_offset=2**32 - 4, device=backend.device)


def test_keep_threshold_is_an_integer_cut():
    assert keep_threshold(0.0) == 0
    assert keep_threshold(0.5) == 2**31
    assert keep_threshold(0.25) == 2**30
    assert keep_threshold(1 - 2**-40) == 2**32 - 1  # never a cut nothing can reach
    for p in (0.1, 0.2, 0.3):
        assert abs(keep_threshold(p) / 2**32 - p) <= 2**-33
    for bad in (1.0, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match=r"dropout rate must be a number in \[0, 1\)"):
            keep_threshold(bad)


# --------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_keep_rate_is_within_binomial_bounds(p):
    numpy = xpnet.backend._resolve("numpy")
    keep = _mask(numpy, (500, 400), p, seed=2024, step=3)
    prob = 1 - keep_threshold(p) / 2**32
    assert _within_binomial(int(keep.sum()), keep.size, prob)
    # Every row and every column is near the rate too (no stuck rows or columns).
    for counts, n in ((keep.sum(axis=1), keep.shape[1]), (keep.sum(axis=0), keep.shape[0])):
        spread = SIGMAS * math.sqrt(n * prob * (1 - prob)) + 1
        assert np.all(np.abs(counts - n * prob) <= spread)


def test_every_hash_bit_is_fair():
    numpy = xpnet.backend._resolve("numpy")
    bits = _bits(numpy, (256, 512), seed=9, step=1)
    n = bits.size
    for k in range(32):
        ones = int(np.count_nonzero((bits >> np.uint32(k)) & np.uint32(1)))
        assert _within_binomial(ones, n, 0.5), f"bit {k}: {ones} of {n}"


def test_masks_are_independent_across_steps_rows_columns_and_seeds():
    numpy = xpnet.backend._resolve("numpy")
    p, shape = 0.5, (400, 300)
    base = _mask(numpy, shape, p, seed=11, step=0)
    bound = SIGMAS / math.sqrt(base.size)
    others = {
        "next step": _mask(numpy, shape, p, seed=11, step=1),
        "step 2**31": _mask(numpy, shape, p, seed=11, step=2**31),
        "next seed": _mask(numpy, shape, p, seed=12, step=0),
        "seed + 2**32": _mask(numpy, shape, p, seed=11 + 2**32, step=0),
        "rows shifted by one": _mask(numpy, shape, p, seed=11, step=0, row_offset=1),
    }
    for what, other in others.items():
        assert abs(_correlation(base, other)) <= bound, what
        assert not np.array_equal(base, other), what
    # Neighbours inside one mask: each unit against the next column and the next row.
    assert abs(_correlation(base[:, :-1], base[:, 1:])) <= SIGMAS / math.sqrt(base[:, 1:].size)
    assert abs(_correlation(base[:-1], base[1:])) <= SIGMAS / math.sqrt(base[1:].size)
    # Pairs of units agree as often as independent coin flips would (2x2 contingency).
    both = int(np.count_nonzero(base & others["next step"]))
    assert _within_binomial(both, base.size, 0.25)


def test_row_offset_gives_exactly_the_rows_of_the_full_batch(backend):
    # What a data-parallel rank needs: its rows of the global batch, computed alone.
    full = _mask(backend, (24, 10), 0.4, seed=5, step=17)
    parts = [
        _mask(backend, (rows, 10), 0.4, seed=5, step=17, row_offset=start)
        for start, rows in ((0, 7), (7, 9), (16, 8))
    ]
    np.testing.assert_array_equal(np.concatenate(parts), full)
    # The same through the layer.
    x = backend.asarray(np.ones((24, 10)), dtype="float64")
    layer = Dropout(0.4)
    layer.set_random_key(5, 17)
    whole = to_numpy(layer.forward(x, training=True))
    layer.set_random_key(5, 17, row_offset=16)
    tail = to_numpy(layer.forward(x[16:, ...], training=True))
    np.testing.assert_array_equal(tail, whole[16:])
    np.testing.assert_array_equal(whole != 0, full)


# --------------------------------------------------------------------------- the layer
def test_mask_is_computed_on_the_input_device_without_numpy():
    # array-api-strict refuses NumPy arrays in its operations and arrays of two of its
    # devices in one operation, so a mask built on the host or on the default device fails.
    strict = pytest.importorskip("array_api_strict")
    device = strict.Device("device1")
    x = strict.ones((16, 12), dtype=strict.float32, device=device)
    layer = Dropout(0.25)
    layer.set_random_key(3, 4)
    out = layer.forward(x, training=True)
    assert out.device == device and layer._mask.device == device
    grad = layer.backward(strict.ones((16, 12), dtype=strict.float32, device=device))
    assert grad.device == device
    layer.rng = np.random.default_rng(0)  # the keyless stream stays on the device too
    assert layer.forward(x, training=True).device == device


def test_fit_makes_no_transfer_and_no_host_draw_per_batch(monkeypatch):
    transfers: list[tuple[int, ...]] = []
    real_asarray = Backend.asarray

    def counting(self, a, dtype=None):
        transfers.append(tuple(getattr(a, "shape", ())))
        return real_asarray(self, a, dtype)

    masks: list[tuple[int, ...]] = []
    # Dropout's masks come from the backend's kernels (compiled or not): watch that call.
    k = xpnet.backend.resolve_backend("numpy").kernels
    real_dropout = k.dropout

    def watching(x, p, seed, step, row_offset=0):
        y, mask = real_dropout(x, p, seed, step, row_offset)
        assert type(mask) is type(x) and mask.device == x.device
        masks.append((seed, step))
        return y, mask

    monkeypatch.setattr(Backend, "asarray", counting)
    monkeypatch.setattr(k, "dropout", watching)
    X = np.random.default_rng(0).standard_normal((256, 8))
    y = (X[:, 0] > 0).astype(np.int64)
    counts = []
    for batch in (64, 8):  # 4 and 32 batches an epoch
        transfers.clear()
        masks.clear()
        model = Sequential(
            [Dense(8, 16, activation="relu"), Dropout(0.2), Dense(16, 2)], seed=0, dtype="float64"
        )
        model.parameters()  # draws the initial weights from the model's generator
        before = model._rng.bit_generator.state
        model.fit(X, y, epochs=2, batch_size=batch, seed=3)
        assert model._rng.bit_generator.state == before  # fit's own generator keyed the masks
        counts.append(len(transfers))
        n_batches = 256 // batch
        # One mask per batch, keyed by the epoch's seed and the step.
        assert [s for _, s in masks] == [*range(n_batches), *range(n_batches)]
        assert len({seed for seed, _ in masks}) == 2
    assert counts[0] == counts[1]


def test_fit_keys_equal_one_seed_per_layer_and_epoch_then_the_step():
    X = np.random.default_rng(1).standard_normal((40, 6))
    y = (X[:, 1] > 0).astype(np.int64)

    def model() -> Sequential:
        return Sequential(
            [Dense(6, 8, activation="relu"), Dropout(0.3), Dense(8, 8), Dropout(0.1), Dense(8, 2)],
            seed=2,
            dtype="float64",
        )

    by_fit = model()
    by_fit.fit(X, y, epochs=1, batch_size=10, shuffle=False, seed=8)

    # The same loop by hand with the documented keys.
    from xpnet.losses import SoftmaxCrossEntropy
    from xpnet.optimizers import Adam

    by_hand, loss, opt = model(), SoftmaxCrossEntropy(), Adam()
    b = by_hand.backend
    seeds = np.random.default_rng(8).integers(0, 2**63 - 1, size=2)
    drops = [layer for layer in by_hand.layers if isinstance(layer, Dropout)]
    for step in range(4):
        for layer, seed in zip(drops, seeds, strict=True):
            layer.set_random_key(int(seed), step)
        xb = b.asarray(X[step * 10 : step * 10 + 10], dtype="float64")
        loss.forward(by_hand.forward(xb, training=True), b.asarray(y[step * 10 : step * 10 + 10]))
        by_hand.backward(loss.backward())
        opt.step(by_hand.parameters())
    for a, d in zip(by_fit.get_weights(), by_hand.get_weights(), strict=True):
        np.testing.assert_array_equal(a, d)


def test_a_key_fixes_one_forward_then_the_layer_uses_its_own_stream(backend):
    x = backend.asarray(np.ones((20, 30)), dtype="float32")
    layer = Dropout(0.5)
    layer.rng = np.random.default_rng(4)
    layer.set_random_key(99, 2)
    keyed = to_numpy(layer.forward(x, training=True))
    np.testing.assert_array_equal(keyed != 0, _mask(backend, (20, 30), 0.5, 99, 2))
    # Without a key: one seed drawn from rng, then the calls count as steps 0, 1, ...
    own_seed = int(np.random.default_rng(4).integers(0, 2**63 - 1))
    for step in range(3):
        out = to_numpy(layer.forward(x, training=True))
        np.testing.assert_array_equal(out != 0, _mask(backend, (20, 30), 0.5, own_seed, step))
    # A new generator restarts the stream.
    layer.rng = np.random.default_rng(4)
    again = to_numpy(layer.forward(x, training=True))
    np.testing.assert_array_equal(again != 0, _mask(backend, (20, 30), 0.5, own_seed, 0))
    # Inference neither uses nor needs a key.
    assert layer.forward(x) is x


def test_dropout_keeps_the_shape_of_1d_and_3d_inputs(backend):
    layer = Dropout(0.5)
    for shape in [(9,), (4, 3, 5)]:
        layer.set_random_key(1, 0)
        out = to_numpy(layer.forward(backend.asarray(np.ones(shape)), training=True))
        assert out.shape == shape
        flat = _mask(backend, (shape[0], math.prod(shape[1:])), 0.5, 1, 0)
        np.testing.assert_array_equal((out != 0).reshape(flat.shape), flat)


def test_set_random_key_rejects_bad_keys_and_keeps_the_old_one():
    layer = Dropout(0.5)
    layer.set_random_key(1, 2)
    with pytest.raises(ValueError, match="seed must be in"):
        layer.set_random_key(-3, 0)
    with pytest.raises(ValueError, match="row_offset must be >= 0, got -1"):
        layer.set_random_key(1, 0, row_offset=-1)
    with pytest.raises(TypeError, match="row_offset must be an integer, got float"):
        layer.set_random_key(1, 0, row_offset=2.0)
    assert layer._key == (1, 2, 0)
