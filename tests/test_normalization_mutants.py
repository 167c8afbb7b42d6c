"""BatchNorm and LayerNorm against float64 NumPy references (no PyTorch needed), and the
synchronised BatchNorm of a data-parallel fit run in-process over a communicator whose ranks
are threads: each rank's output, running statistics and gradients must be those of one
process on the whole batch."""

from __future__ import annotations

import numpy as np
import pytest
from thread_ranks import RankGroup, run_ranks

import xpnet
from xpnet.distributed import Communicator
from xpnet.layers import BatchNorm, LayerNorm


def _x(shape, seed=0, scale=3.0, shift=1.0):
    return np.random.default_rng(seed).normal(size=shape) * scale + shift


def _built(layer, backend, dtype="float64", weights=None):
    model = xpnet.Sequential([layer], dtype=dtype, backend=backend)
    if weights is not None:
        model.set_weights(weights)
    model.forward(backend.asarray(np.zeros((2, layer.num_features)), dtype=model.dtype))
    return model


def _bn_reference(x, w, b, eps):
    mean, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mean) / np.sqrt(var + eps)
    return xhat * w + b, xhat, mean, var


def test_batchnorm_training_and_running_statistics_match_a_numpy_reference(backend):
    w, b = np.array([1.0, 2.0, -0.5]), np.array([0.1, 0.0, -1.0])
    bn = BatchNorm(3, eps=1e-2, momentum=0.3)
    _built(bn, backend, weights=[w, b])
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(3):
        x = _x((6, 3), seed=step) + step
        y = xpnet.to_numpy(bn.forward(backend.asarray(x), training=True))
        want, _, mean, var = _bn_reference(x, w, b, 1e-2)
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        rm = 0.7 * rm + 0.3 * mean
        rv = 0.7 * rv + 0.3 * var * 6 / 5
        np.testing.assert_allclose(xpnet.to_numpy(bn.running_mean), rm, rtol=1e-12)
        np.testing.assert_allclose(xpnet.to_numpy(bn.running_var), rv, rtol=1e-12)
    x = _x((4, 3), seed=9)
    got = xpnet.to_numpy(bn.forward(backend.asarray(x)))
    np.testing.assert_allclose(got, (x - rm) / np.sqrt(rv + 1e-2) * w + b, rtol=1e-12)


def test_default_eps_and_momentum(backend):
    # A variance of the order of eps: 1e-5 shows in the result.
    x = _x((5, 2), scale=3e-3)
    bn, ln = BatchNorm(2), LayerNorm(2)
    for layer in (bn, ln):
        _built(layer, backend)
    assert bn.eps == 1e-5 and ln.eps == 1e-5 and bn.momentum == 0.1
    y = xpnet.to_numpy(bn.forward(backend.asarray(x), training=True))
    np.testing.assert_allclose(y, _bn_reference(x, 1.0, 0.0, 1e-5)[0], rtol=1e-10)
    np.testing.assert_allclose(xpnet.to_numpy(bn.running_mean), 0.1 * x.mean(axis=0))
    m, v = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    y = xpnet.to_numpy(ln.forward(backend.asarray(x), training=True))
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-5), rtol=1e-10)


@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_float32_layers_keep_float32_everywhere(backend, kind):
    layer = kind(3)
    _built(layer, backend, dtype="float32")
    for p in layer.parameters():
        assert p.data.dtype == backend.xp.float32
        assert backend_of_array(p.data) is backend
    for buf in layer.buffers().values():
        assert buf.dtype == backend.xp.float32
    x = backend.asarray(_x((5, 3)), dtype=backend.xp.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == backend.xp.float32
    assert layer.backward(y).dtype == backend.xp.float32
    for p in layer.parameters():
        assert p.grad.dtype == backend.xp.float32


def backend_of_array(a):
    return xpnet.backend.backend_of(a)


@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_parameter_gradients_match_a_numpy_reference_and_land_in_the_flat_buffer(backend, kind):
    layer = kind(3, eps=1e-3)
    w, b = np.array([0.5, -1.0, 2.0]), np.array([0.2, 0.3, -0.1])
    model = _built(layer, backend, weights=[w, b])
    x, g = _x((5, 3)), _x((5, 3), seed=4, shift=0.0)
    layer.forward(backend.asarray(x), training=True)
    layer.backward(backend.asarray(g), need_input_grad=False)
    axis = 0 if kind is BatchNorm else 1
    m, v = x.mean(axis=axis, keepdims=True), x.var(axis=axis, keepdims=True)
    xhat = (x - m) / np.sqrt(v + 1e-3)
    np.testing.assert_allclose(xpnet.to_numpy(layer.weight.grad), (g * xhat).sum(0), rtol=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(layer.bias.grad), g.sum(0), rtol=1e-12)
    # The gradients are written into the model's one flat gradient buffer, in place.
    assert layer.weight.buffer is not None and layer.weight.buffer is model.parameters()[1].buffer
    flat = xpnet.to_numpy(layer.weight.buffer.grad)
    np.testing.assert_allclose(flat, np.concatenate([(g * xhat).sum(0), g.sum(0)]), rtol=1e-12)
    # The default computes the input gradient.
    assert layer.backward(backend.asarray(g)) is not None


@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_errors_before_build_and_before_a_training_forward(backend, kind):
    layer = kind(3)
    with pytest.raises(RuntimeError, match=f"this {kind.__name__} layer has no weights yet"):
        layer.forward(backend.asarray(np.zeros((2, 3))))
    layer.build(backend, backend.xp.float64, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="needs the normalised input of a forward"):
        layer.backward(backend.asarray(np.zeros((2, 3))))
    layer.forward(backend.asarray(_x((4, 3))), training=True)
    layer.forward(backend.asarray(_x((4, 3))))  # inference forgets the training input
    with pytest.raises(RuntimeError, match="needs the normalised input of a forward"):
        layer.backward(backend.asarray(np.zeros((4, 3))))


@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_argument_errors_name_the_layer(kind):
    name = kind.__name__
    with pytest.raises(ValueError, match=f"^xpnet: {name} num_features must be"):
        kind(0)
    with pytest.raises(ValueError, match=f"^xpnet: {name} eps must be"):
        kind(3, eps=0.0)
    if kind is BatchNorm:
        with pytest.raises(ValueError, match=r"^xpnet: BatchNorm momentum must be"):
            BatchNorm(3, momentum=1.5)


def test_no_buffers_before_build():
    assert BatchNorm(3).buffers() == {}
    assert BatchNorm(3).parameters() == [] == LayerNorm(3).parameters()


@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_a_layer_built_alone_on_a_second_device_keeps_device_and_dtype(kind):
    # Built directly (no model, whose flat buffer would recast the parameters), in float32 on
    # array_api_strict's second device: every array the layer makes must follow both.
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    backend = xpnet.backend.Backend("array_api_strict", xps, device)
    layer = kind(3)
    layer.build(backend, xps.float32, np.random.default_rng(0))
    for arr in [p.data for p in layer.parameters()] + list(layer.buffers().values()):
        assert arr.dtype == xps.float32
        assert arr.device == device
    x = xps.asarray(_x((4, 3)), dtype=xps.float32, device=device)
    for training in (True, False):
        y = layer.forward(x, training=training)
        assert y.dtype == xps.float32 and y.device == device
    layer.forward(x, training=True)
    dx = layer.backward(y)
    assert dx.dtype == xps.float32 and dx.device == device


@pytest.mark.parametrize("kind", [BatchNorm, LayerNorm])
def test_an_array_of_another_backend_is_a_type_error(kind):
    pytest.importorskip("array_api_strict")
    layer = kind(3)
    numpy_backend = xpnet.backend.resolve_backend("numpy")
    layer.build(numpy_backend, np.float64, np.random.default_rng(0))
    assert layer.backend is numpy_backend
    strict = xpnet.backend.resolve_backend("array_api_strict").asarray(_x((4, 3)))
    with pytest.raises(TypeError, match="arrays from different backends"):
        layer.forward(strict, training=True)


def test_running_statistics_follow_a_move_to_another_backend():
    # Named here rather than taken from the backend fixtures: the mutation run selects NumPy
    # alone, and this needs two backends.
    pytest.importorskip("array_api_strict")
    numpy_backend = xpnet.backend.resolve_backend("numpy")
    other_backend = xpnet.backend.resolve_backend("array_api_strict")
    bn = BatchNorm(3, momentum=0.5)
    model = _built(bn, numpy_backend)
    x = _x((6, 3))
    bn.forward(x, training=True)
    rm, rv = np.array(bn.running_mean), np.array(bn.running_var)
    model.to(other_backend)
    x2 = _x((6, 3), seed=1)
    y = bn.forward(other_backend.asarray(x2))
    assert xpnet.backend.backend_of(y) is other_backend
    np.testing.assert_allclose(xpnet.to_numpy(y), (x2 - rm) / np.sqrt(rv + 1e-5), rtol=1e-12)
    bn.forward(other_backend.asarray(x2), training=True)
    assert xpnet.backend.backend_of(bn.running_mean) is other_backend
    assert xpnet.backend.backend_of(bn.running_var) is other_backend
    np.testing.assert_allclose(
        xpnet.to_numpy(bn.running_mean), 0.5 * rm + 0.5 * x2.mean(0), rtol=1e-12
    )
    np.testing.assert_allclose(
        xpnet.to_numpy(bn.running_var), 0.5 * rv + 0.5 * x2.var(0) * 6 / 5, rtol=1e-12
    )


# --------------------------------------------------------------------------- in-process ranks
class ThreadCommunicator(Communicator):
    """A communicator whose ranks are threads of this process: the collectives BatchNorm
    uses (``allreduce`` of a device buffer, ``reduce_metrics`` of host numbers) really sum
    the ranks' values, in rank order, so every rank gets the same numbers."""

    def __init__(self, group, rank):
        super().__init__(None)
        self.group, self.rank, self.size = group, rank, group.size
        self.allreduce_calls = 0

    def _sum(self, value, add):
        parts = self.group.gather(self.rank, value)
        total = parts[0]
        for other in parts[1:]:
            total = add(total, other)
        return total

    def allreduce(self, buf):
        self.allreduce_calls += 1
        xp = xpnet.backend.namespace_of(buf)
        total = self._sum(xp.asarray(buf, copy=True), lambda a, b: a + b)
        buf[...] = total
        return buf

    def reduce_metrics(self, values):
        mine = np.array([float(v) for v in values], dtype=np.float64)
        return self._sum(mine, np.add)


def _run_ranks(size, job):
    group = RankGroup(size)
    return run_ranks([ThreadCommunicator(group, r) for r in range(size)], job, group.barrier)


W, B = np.array([1.5, -0.5, 2.0]), np.array([0.25, -1.0, 0.0])
LOCAL = _x((3, 3), seed=8)


@pytest.mark.parametrize("rows", [[4, 6], [1, 0, 4, 5], [1, 1], [3, 2, 2]], ids=str)
def test_synchronised_batchnorm_equals_one_process_on_the_global_batch(backend, rows):
    total = sum(rows)
    # Ranks with different means, so combining the parts matters.
    X = _x((total, 3)) + np.repeat(np.arange(total)[:, None] * 0.7, 3, axis=1)
    G = _x((total, 3), seed=3, shift=0.5)
    starts = np.concatenate([[0], np.cumsum(rows)])

    def reference():
        bn = BatchNorm(3, eps=1e-3, momentum=0.25)
        _built(bn, backend, weights=[W, B])
        out = []
        for step in range(2):
            y = bn.forward(backend.asarray(X + step), training=True)
            dx = bn.backward(backend.asarray(G))
            out.append((xpnet.to_numpy(y), xpnet.to_numpy(dx)))
        return out, xpnet.to_numpy(bn.running_mean), xpnet.to_numpy(bn.running_var)

    def rank_job(comm):
        bn = BatchNorm(3, eps=1e-3, momentum=0.25)
        _built(bn, backend, weights=[W, B])
        bn.set_communicator(comm)
        lo, hi = starts[comm.rank], starts[comm.rank + 1]
        out = []
        for step in range(2):
            y = bn.forward(backend.asarray(X[lo:hi] + step), training=True)
            dx = bn.backward(backend.asarray(G[lo:hi]))
            grads = [np.array(xpnet.to_numpy(p.grad)) for p in bn.parameters()]
            out.append((np.array(xpnet.to_numpy(y)), np.array(xpnet.to_numpy(dx)), grads))
        calls = comm.allreduce_calls
        # Back to this process alone: the local arithmetic, no collective.
        bn.set_communicator(None)
        bn.forward(backend.asarray(LOCAL), training=True)
        bn.backward(backend.asarray(LOCAL))
        assert comm.allreduce_calls == calls == 4
        return out, xpnet.to_numpy(bn.running_mean), xpnet.to_numpy(bn.running_var)

    want, want_rm, want_rv = reference()
    results, errors = _run_ranks(len(rows), rank_job)
    for exc in errors:
        if exc is not None:
            raise exc
    for rank, (out, rm, rv) in enumerate(results):
        lo, hi = starts[rank], starts[rank + 1]
        for step, (y, dx, (dw, db)) in enumerate(out):
            np.testing.assert_allclose(y, want[step][0][lo:hi], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(dx, want[step][1][lo:hi], rtol=1e-9, atol=1e-12)
            assert y.shape == dx.shape == (hi - lo, 3)
            # The parameter gradients stay each rank's own sums (the gradient all-reduce
            # adds them up later).
            xhat = (want[step][0][lo:hi] - B) / W
            np.testing.assert_allclose(db, G[lo:hi].sum(0), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(dw, (G[lo:hi] * xhat).sum(0), rtol=1e-9, atol=1e-12)
        # Every rank's running statistics are the global batch's, then one local step.
        local = LOCAL
        np.testing.assert_allclose(
            rm, 0.75 * want_rm + 0.25 * local.mean(0), rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            rv, 0.75 * want_rv + 0.25 * local.var(0) * 3 / 2, rtol=1e-10, atol=1e-12
        )


def test_synchronised_batchnorm_counts_the_rows_of_every_rank(backend):
    def rank_job(comm):
        bn = BatchNorm(3)
        _built(bn, backend)
        bn.set_communicator(comm)
        rows = 1 if comm.rank == 0 else 0
        bn.forward(backend.asarray(_x((rows, 3))), training=True)

    _, errors = _run_ranks(2, rank_job)
    for exc in errors:
        assert isinstance(exc, ValueError)
        assert "needs more than one row per training batch" in str(exc)
        assert "the global batch of the 2 ranks has 1 row(s)" in str(exc)


def test_a_backward_over_ranks_after_a_local_forward_is_refused(backend):
    # A communicator handed over between forward and backward: the global sums would be
    # divided by this process's rows (or a previous synchronised batch's).
    def rank_job(comm):
        bn = BatchNorm(3)
        _built(bn, backend)
        bn.forward(backend.asarray(_x((4, 3), seed=comm.rank)), training=True)
        bn.backward(backend.asarray(np.ones((4, 3))))  # alone: fine
        bn.forward(backend.asarray(_x((4, 3), seed=comm.rank + 2)), training=True)
        before = [np.array(xpnet.to_numpy(p.grad)) for p in bn.parameters()]
        bn.set_communicator(comm)
        with pytest.raises(RuntimeError, match="needs a training forward synchronised"):
            bn.backward(backend.asarray(np.ones((4, 3))))
        for p, was in zip(bn.parameters(), before, strict=True):
            np.testing.assert_array_equal(xpnet.to_numpy(p.grad), was)  # nothing lost
        bn.forward(backend.asarray(_x((4, 3), seed=comm.rank)), training=True)
        bn.backward(backend.asarray(np.ones((4, 3))))  # synchronised now: fine
        bn.set_communicator(None)
        bn.forward(backend.asarray(_x((4, 3))), training=True)
        bn.set_communicator(comm)
        with pytest.raises(RuntimeError, match="needs a training forward synchronised"):
            bn.backward(backend.asarray(np.ones((4, 3))))

    _, errors = _run_ranks(2, rank_job)
    for exc in errors:
        if exc is not None:
            raise exc


def test_a_size_one_communicator_leaves_the_arithmetic_alone(backend):
    x, g = _x((5, 3)), _x((5, 3), seed=2)
    plain, alone = BatchNorm(3), BatchNorm(3)
    for bn in (plain, alone):
        _built(bn, backend, weights=[W, B])
    alone.set_communicator(Communicator())
    for bn in (plain, alone):
        bn.forward(backend.asarray(x), training=True)
    np.testing.assert_array_equal(
        xpnet.to_numpy(alone.backward(backend.asarray(g))),
        xpnet.to_numpy(plain.backward(backend.asarray(g))),
    )
    np.testing.assert_array_equal(
        xpnet.to_numpy(alone.running_var), xpnet.to_numpy(plain.running_var)
    )
    with pytest.raises(ValueError, match=r"got input of shape \(1, 3\) \(drop") as info:
        alone.forward(backend.asarray(x[:1]), training=True)
    assert "ranks" not in str(info.value)


def test_synchronised_batchnorm_keeps_float32_and_the_device():
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    backend = xpnet.backend.Backend("array_api_strict", xps, device)
    X = _x((5, 3))

    def rank_job(comm):
        bn = BatchNorm(3)
        bn.build(backend, xps.float32, np.random.default_rng(0))
        bn.set_communicator(comm)
        lo, hi = [(0, 3), (3, 3), (3, 5)][comm.rank]  # rank 1's part is empty
        x = xps.asarray(X[lo:hi], dtype=xps.float32, device=device)
        y = bn.forward(x, training=True)
        dx = bn.backward(xps.ones_like(y))
        for a in (y, dx, bn.running_mean, bn.running_var):
            assert a.dtype == xps.float32 and a.device == device
        return np.asarray(xpnet.to_numpy(y))

    results, errors = _run_ranks(3, rank_job)
    for exc in errors:
        if exc is not None:
            raise exc
    assert results[1].shape == (0, 3)
    want = _bn_reference(X, 1.0, 0.0, 1e-5)[0]
    np.testing.assert_allclose(np.concatenate(results), want, rtol=1e-4, atol=1e-5)
