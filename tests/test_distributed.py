"""Data parallelism in one process: the size-1 communicator, the row split, the launcher
detection, and the per-rank pieces of a data-parallel fit checked against a plain fit.

The multi-rank runs (``mpiexec -n 2``) are in test_distributed_mpi.py.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import xpnet
from xpnet import Sequential, distributed
from xpnet.distributed import Communicator, DataParallel, launcher_world_size, split_rows
from xpnet.distributed.shared_memory import SharedMemoryAllreducer, shared_memory_wanted
from xpnet.layers import BatchNorm, Dense, Dropout, ReLU


def _data(n=101, d=12, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y


def _model(seed=100, dtype="float64"):
    return Sequential(
        [Dense(12, 16), ReLU(), Dropout(0.3), Dense(16, 8), ReLU(), Dropout(0.2), Dense(8, 3)],
        dtype=dtype,
        seed=seed,
    )


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 50, 513])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_split_rows_tiles_the_batch_contiguously(rows, size):
    parts = [split_rows(rows, size, r) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"PMI_SIZE": "4", "PMI_RANK": "1"}, 4),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),
        ({"SLURM_STEP_NUM_TASKS": "16"}, 16),
        ({"PMIX_RANK": "0"}, 0),
        # A batch script inside a Slurm allocation runs alone: SLURM_NTASKS is not a launch.
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, None),
    ],
)
def test_launcher_world_size_reads_the_launchers_environment(env, expected):
    assert launcher_world_size(env) == expected


def test_size_one_communicator_collectives_are_identities(backend):
    comm = Communicator(None)
    assert (comm.rank, comm.size, comm.local_rank, comm.is_root) == (0, 1, 0, True)
    xp = backend.xp
    buf = xp.asarray([1.0, 2.0, 3.0])
    assert comm.allreduce(buf) is buf
    assert comm.broadcast(buf) is buf
    np.testing.assert_array_equal(xpnet.to_numpy(buf), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(comm.reduce_metrics([1, 2.5]), [1.0, 2.5])
    assert comm.broadcast_bytes(b"abc") == b"abc"
    assert comm.agree([1, 2, 3])
    assert "size=1" in repr(comm)


def test_init_alone_is_a_size_one_world():
    comm = distributed.init()
    assert comm.size == 1 and comm.rank == 0
    assert distributed.init() is comm  # one per process


def test_fit_rejects_a_communicator_of_another_type():
    X, y = _data()
    with pytest.raises(TypeError, match=r"xpnet\.distributed\.Communicator"):
        _model().fit(X, y, communicator=object())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_size_one_data_parallel_fit_is_bit_identical_to_plain_fit(backend, dtype):
    # Every data-parallel piece runs (split, weighted loss, all-reduce, metric and validation
    # reduction) with a weight of exactly 1, so nothing may change a bit.
    X, y = _data()
    kw = dict(epochs=3, batch_size=50, validation_data=(X[:37], y[:37]), seed=5)
    plain = _model(dtype=dtype)
    h1 = plain.fit(X, y, **kw)
    par = _model(dtype=dtype)
    h2 = par.fit(X, y, communicator=Communicator(None), **kw)
    for a, b in zip(plain.get_weights(), par.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert h1.history[key] == h2.history[key]


def test_an_empty_part_gives_a_zero_loss_and_zero_gradients(backend):
    # The rank whose part of a 1-row last batch is empty still runs forward (dropout on) and
    # backward, so it takes part in every collective.
    model = _model().to(backend.name)
    X, _ = _data()
    dp = DataParallel(Communicator(None))
    Xd = backend.asarray(X[:0], dtype="float64")
    yd = backend.asarray(np.zeros(0, dtype=np.int64))
    for layer in model.layers:
        if layer.stochastic:
            layer.set_random_key(1, 0, row_offset=1)
    out = model.forward(Xd, training=True)
    value, grad = dp.loss_and_grad(xpnet.losses.SoftmaxCrossEntropy(), out, yd, total=1)
    assert float(value) == 0.0 and tuple(grad.shape) == (0, 3)
    model.backward(grad)
    assert all(not np.any(xpnet.to_numpy(p.grad)) for p in model.parameters())


def test_a_part_gradient_is_weighted_by_its_share_of_the_global_batch(backend):
    # Rows 0-29 of a 50-row batch: the part's mean-loss gradient times 30/50, so the sum over
    # the parts (the all-reduce) is the gradient of the global batch's mean loss.
    X, y = _data()
    loss = xpnet.losses.SoftmaxCrossEntropy()
    out = backend.asarray(X[:50, :3], dtype="float64")
    yd = backend.asarray(y[:50])
    dp = DataParallel(None)
    whole = xpnet.to_numpy(dp.loss_and_grad(loss, out, yd, total=50)[1])
    parts = [
        xpnet.to_numpy(dp.loss_and_grad(loss, out[a:b, ...], yd[a:b], total=50)[1])
        for a, b in ((0, 30), (30, 50))
    ]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-14)


def test_batch_logs_give_the_rank_rows_and_callbacks_the_communicator():
    X, y = _data()
    seen = []

    class Probe(xpnet.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append((self.params["communicator"].size, self.is_root))

        def on_train_batch_end(self, batch, logs=None):
            seen.append((logs["size"], logs["rank_size"]))

    _model().fit(X, y, epochs=1, batch_size=50, callbacks=[Probe()])
    assert seen == [(1, True), (50, 50), (50, 50), (1, 1)]


class _GlobalBatchProbe(xpnet.layers.Layer):
    """An identity layer that asks for the communicator, as a synchronised BatchNorm will."""

    kind = "GlobalBatchProbe"

    def __init__(self):
        self.comm = None
        self.seen_in_training = []

    def set_communicator(self, comm):
        self.comm = comm

    def forward(self, x, training=False):
        if training:
            self.seen_in_training.append(self.comm)
        return x

    def backward(self, grad, need_input_grad=True):
        return grad


def test_layers_that_ask_get_the_communicator_for_the_fit_only():
    X, y = _data()
    probe = _GlobalBatchProbe()
    model = Sequential([Dense(12, 8), probe, Dense(8, 3)], dtype="float64", seed=0)
    comm = Communicator(None)
    model.fit(X, y, epochs=1, batch_size=50, communicator=comm)
    assert probe.seen_in_training == [comm] * 3
    assert probe.comm is None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batchnorm_with_a_size_one_communicator_is_bit_identical(backend, dtype):
    # The synchronised path is for size > 1 only; alone the layer keeps today's arithmetic.
    X, y = _data(n=102)

    def model():
        layers = [BatchNorm(12), Dense(12, 16), ReLU(), BatchNorm(16), Dropout(0.3), Dense(16, 3)]
        return Sequential(layers, dtype=dtype, seed=3)

    kw = dict(epochs=2, batch_size=25, validation_data=(X[:37], y[:37]), seed=5)
    plain, par = model(), model()
    h1 = plain.fit(X, y, **kw)
    h2 = par.fit(X, y, communicator=Communicator(None), **kw)
    for a, b in zip(plain.get_weights(), par.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for la, lb in zip(plain.layers, par.layers, strict=True):
        for name, buf in la.buffers().items():
            np.testing.assert_array_equal(np.asarray(buf), np.asarray(lb.buffers()[name]))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert h1.history[key] == h2.history[key]
    assert all(getattr(layer, "_comm", None) is None for layer in par.layers)


def test_batchnorm_takes_the_communicator_for_the_fit_only():
    X, y = _data()
    bn = BatchNorm(8)
    model = Sequential([Dense(12, 8), ReLU(), bn, Dense(8, 3)], dtype="float64", seed=0)
    seen = []
    original = bn.set_communicator

    def record(comm):
        seen.append(comm)
        original(comm)

    bn.set_communicator = record  # type: ignore[method-assign]
    comm = Communicator(None)
    model.fit(X[:100], y[:100], epochs=1, batch_size=50, communicator=comm)
    assert seen == [comm, None]


def test_cli_distributed_alone_trains_as_one_rank(tmp_path):
    pytest.importorskip("sklearn")
    from xpnet.cli import main

    out = tmp_path / "run.json"
    args = ["train", "--distributed", "--dataset", "digits", "--epochs", "1", "--hidden", "8"]
    assert main([*args, "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["world_size"] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("1", True), ("true", True), (" ON ", True), ("0", False), ("off", False)],
)
def test_shared_memory_allreduce_switch(value, expected):
    env = {} if value is None else {"XPNET_SHARED_MEMORY_ALLREDUCE": value}
    assert shared_memory_wanted(env) is expected


def test_shared_memory_allreduce_switch_rejects_other_values():
    with pytest.raises(ValueError, match=r"XPNET_SHARED_MEMORY_ALLREDUCE must be 0 or 1.*'2'"):
        shared_memory_wanted({"XPNET_SHARED_MEMORY_ALLREDUCE": "2"})


def test_a_size_one_communicator_has_no_shared_memory_path():
    assert not Communicator(None).shared_memory_possible(10, np.float32)


@pytest.mark.parametrize(
    ("size", "dtype", "expected"),
    [
        (1, np.float32, True),
        (10, np.float64, True),
        (0, np.float32, False),
        (10, np.float16, False),
        (10, np.int64, False),
    ],
)
def test_the_shared_memory_path_takes_float32_and_float64_buffers(size, dtype, expected):
    assert SharedMemoryAllreducer.supports(size, dtype) is expected


def test_a_shared_window_of_another_dtype_is_refused_before_any_collective():
    with pytest.raises(ValueError, match="float32 or float64 element, got 4 of float16"):
        SharedMemoryAllreducer.create(None, 4, np.float16)


def test_a_gradient_buffer_moves_into_given_memory_with_its_views():
    model = Sequential([Dense(3, 2), ReLU(), Dense(2, 1)], seed=0)
    params = model.parameters()
    buf = params[0].buffer
    buf.grad[...] = np.arange(buf.grad.shape[0], dtype=buf.grad.dtype)
    before = [np.array(p.grad) for p in params]
    target = np.empty_like(buf.grad)
    buf.move_grad(target)
    assert buf.grad is target and buf.holds(params)
    for p, old in zip(params, before, strict=True):
        assert np.shares_memory(p.grad, target)
        np.testing.assert_array_equal(p.grad, old)
    params[0].grad[...] = 7.0  # the views write into the new memory
    assert target[0] == 7.0


def test_a_gradient_rebound_away_from_the_buffer_stays_where_it_is():
    model = Sequential([Dense(3, 2), Dense(2, 1)], seed=0)
    params = model.parameters()
    own = np.ones(params[1].shape, dtype=params[1].data.dtype)
    params[1].grad = own
    params[0].buffer.move_grad(np.empty_like(params[0].buffer.grad))
    assert params[1].grad is own and not params[0].buffer.holds(params)


def test_a_gradient_buffer_refuses_memory_of_another_shape_or_dtype():
    buf = Sequential([Dense(3, 2)], seed=0).parameters()[0].buffer
    n = buf.grad.shape[0]
    with pytest.raises(
        ValueError, match=rf"shape \({n},\) and dtype float32 cannot move .*\({n + 1},\)"
    ):
        buf.move_grad(np.empty(n + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="dtype float64"):
        buf.move_grad(np.empty(n, dtype=np.float64))
