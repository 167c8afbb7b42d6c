"""The N-rank paths of the training loop and the divergence guard, in one process.

Two ranks run ``fit`` in two threads; their collectives go through :class:`_ThreadComm`, a
:class:`~xpnet.distributed.Communicator` whose sums are made over the threads instead of
over MPI (rank order, float64 for the metrics, as MPI's). The rest is xpnet's own code: the
row split, the weighted gradients, the validation parts and the global batch loss. The
multi-process runs (``mpiexec``) are in test_distributed_mpi.py, which mutation testing
leaves out (it runs subprocesses); these reach the same lines in process.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from thread_ranks import RankGroup, run_ranks

import xpnet
from xpnet import DivergenceError
from xpnet.callbacks import TerminateOnNaN
from xpnet.distributed import Communicator
from xpnet.layers import Dense
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.optimizers import SGD


class _ThreadComm(Communicator):
    def __init__(self, group: RankGroup, rank: int) -> None:
        super().__init__(None)
        self.group, self.rank, self.size, self.local_rank = group, rank, group.size, rank

    def allreduce(self, buf: Any) -> Any:
        parts = self.group.gather(self.rank, np.array(buf, copy=True))
        buf[...] = sum(parts[1:], parts[0])
        return buf

    def broadcast(self, buf: Any, root: int = 0) -> Any:
        buf[...] = self.group.gather(self.rank, np.array(buf, copy=True))[root]
        return buf

    def broadcast_bytes(self, data: bytes, root: int = 0) -> bytes:
        return self.group.gather(self.rank, data)[root]

    def reduce_metrics(self, values: Any) -> np.ndarray:
        host = np.array([float(v) for v in values], dtype=np.float64)
        parts = self.group.gather(self.rank, host)
        return sum(parts[1:], parts[0])

    def agree(self, values: Any) -> bool:
        parts = self.group.gather(self.rank, np.asarray(values, dtype=np.int64))
        return all(np.array_equal(parts[0], p) for p in parts)

    def barrier(self) -> None:
        self.group.barrier.wait()

    def abort(self, code: int = 1) -> None:
        # The threads share one process: end this rank's fit, not the process.
        raise RuntimeError(f"rank {self.rank} aborted with status {code}")


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).normal(size=(n, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def _model() -> xpnet.Sequential:
    return xpnet.Sequential([Dense(3, 4), Dense(4, 2)], dtype="float64", seed=3)


def _ranks(size: int, run) -> list[Any]:
    """``run(comm)`` on each of ``size`` ranks at once; each rank's result or exception."""
    group = RankGroup(size)
    comms = [_ThreadComm(group, r) for r in range(size)]
    results, errors = run_ranks(comms, run, group.barrier)
    return [res if err is None else err for res, err in zip(results, errors, strict=True)]


@pytest.mark.parametrize(("size", "n_val"), [(2, 7), (3, 2)])
def test_ranks_validate_their_parts_and_get_the_whole_sets_scores(size, n_val):
    """With 3 ranks and 2 validation rows one rank's part is empty: it adds nothing."""
    X, y = _data(24, 0)
    val = _data(n_val, 1)
    kw = dict(epochs=3, batch_size=6, optimizer="sgd", validation_data=val, verbose=0)
    alone = _model()
    want = alone.fit(X, y, **kw).history

    def run(comm):
        return _model().fit(X, y, communicator=comm, **kw).history

    for got in _ranks(size, run):
        assert not isinstance(got, BaseException), got
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=0, err_msg=key)


class _RankLoss(SoftmaxCrossEntropy):
    """Cross-entropy whose batch value on ``rank`` at forward call ``at`` (1-based) is
    replaced by ``value`` (the gradient is the true one)."""

    def __init__(self, comm: Communicator, values: dict[tuple[int, int], float]) -> None:
        super().__init__()
        self.comm, self.values, self.calls = comm, values, 0

    def forward(self, out, target):
        self.calls += 1
        v = super().forward(out, target)
        key = (self.comm.rank, self.calls)
        return v * 0.0 + self.values[key] if key in self.values else v


def _fit_ranks(values, n: int, batch_size: int):
    X, y = _data(n, 0)

    def run(comm):
        model = _model()
        return model.fit(
            X,
            y,
            epochs=1,
            batch_size=batch_size,
            optimizer=SGD(lr=0.1),
            loss=_RankLoss(comm, values),
            verbose=0,
            communicator=comm,
            callbacks=[TerminateOnNaN(check_every=1)],
        )

    return _ranks(2, run)


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step():
    results = _fit_ranks({(1, 2): math.nan}, n=12, batch_size=4)
    for r in results:
        assert isinstance(r, DivergenceError), r
        assert "at epoch 1, step 2;" in str(r)


def test_the_global_batch_loss_is_the_row_weighted_mean_of_the_parts():
    # Two rows on each rank: (5e307 * 2 + 0 * 2) / 4 is finite; the parts' sum scaled up
    # instead of down, or any part weighted by more than its rows, overflows.
    results = _fit_ranks({(0, 1): 5e307, (1, 1): 0.0}, n=4, batch_size=4)
    for r in results:
        assert not isinstance(r, BaseException), r
        assert r.history["loss"] == [5e307 * 2 / 4]


def test_a_part_whose_loss_sum_overflows_is_divergence_at_that_step():
    # Rank 0's two rows at 1e308 sum to inf (as the epoch's loss sum would): the batch check
    # stops at step 1, not only the epoch's check after step 2.
    results = _fit_ranks({(0, 1): 1e308, (1, 1): 0.0}, n=8, batch_size=4)
    for r in results:
        assert isinstance(r, DivergenceError), r
        assert "at epoch 1, step 1;" in str(r)


def test_dropout_on_two_ranks_draws_the_masks_of_one_process():
    """Each rank's rows get the mask rows of their place in the global batch (row_offset):
    the weights end as one process's, not with rank 1 reusing rank 0's mask rows."""
    X, y = _data(16, 0)

    def make() -> xpnet.Sequential:
        return xpnet.Sequential(
            [Dense(3, 8), xpnet.layers.Dropout(0.5), Dense(8, 2)], dtype="float64", seed=3
        )

    kw = dict(epochs=2, batch_size=8, optimizer="sgd", seed=5, verbose=0)
    alone = make()
    alone.fit(X, y, **kw)

    def run(comm):
        model = make()
        model.fit(X, y, communicator=comm, **kw)
        return model.get_weights()

    for got in _ranks(2, run):
        assert not isinstance(got, BaseException), got
        for g, w in zip(got, alone.get_weights(), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


class _Failing(SoftmaxCrossEntropy):
    def forward(self, out, target):
        raise ArithmeticError("planted failure")


def test_an_error_on_every_rank_aborts_the_job_with_status_1(capsys):
    X, y = _data(8, 0)

    def run(comm):
        return _model().fit(X, y, epochs=1, batch_size=4, loss=_Failing(), communicator=comm)

    results = _ranks(2, run)
    for rank, r in enumerate(results):
        assert isinstance(r, RuntimeError), r
        assert str(r) == f"rank {rank} aborted with status 1"
    err = capsys.readouterr().err
    for rank in range(2):
        assert f"xpnet.distributed: rank {rank} of 2 failed; aborting the job" in err
    assert err.count("ArithmeticError: planted failure") == 2
