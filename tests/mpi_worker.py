"""Run by tests/test_distributed_mpi.py under ``mpiexec -n N``: one data-parallel scenario.

``python tests/mpi_worker.py SCENARIO OUT_DIR [extra]``; each rank writes what the test
compares to ``OUT_DIR/rank<r>.npz`` (a test worker: in the library only rank 0 writes).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's xpnet

import numpy as np

from xpnet import DivergenceError, Sequential, distributed
from xpnet.callbacks import Callback, CSVLogger, ModelCheckpoint
from xpnet.distributed.shared_memory import SharedMemoryAllreducer, _room_in_dev_shm
from xpnet.layers import BatchNorm, Dense, Dropout, ReLU


def problem(n: int = 101) -> tuple[np.ndarray, ...]:
    """A small 3-class problem: 101 rows make a last batch of 1 row at batch size 50."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, 12))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y, X[:37] * 0.5, y[:37]


def make_model(seed: int) -> Sequential:
    return Sequential(
        [Dense(12, 16), ReLU(), Dropout(0.3), Dense(16, 8), ReLU(), Dropout(0.2), Dense(8, 3)],
        dtype="float64",
        seed=seed,
    )


def make_bn_model(seed: int) -> Sequential:
    """BatchNorm as the first layer (no input gradient), and before and after a dropout.

    Each BatchNorm follows a ReLU, not a Dense: a bias right before a BatchNorm has a gradient
    of exactly zero in exact arithmetic, so it holds only rounding noise, nothing to compare.
    """
    return Sequential(
        [
            BatchNorm(12, momentum=0.5),
            Dense(12, 16),
            ReLU(),
            BatchNorm(16),
            Dropout(0.3),
            Dense(16, 8),
            ReLU(),
            BatchNorm(8, momentum=0.3),
            Dense(8, 3),
        ],
        dtype="float64",
        seed=seed,
    )


# 102 rows at a global batch of 25: parts of 13/12 (2 ranks) and 9/8/8 (3 ranks), and a last
# batch of 2 rows that leaves rank 0 of 3 empty and gives each of 2 ranks a single row.
BN_ROWS, BN_BATCH = 102, 25


def fit_bn(model: Sequential, comm: object, rows: int = BN_ROWS, **kw: object) -> object:
    X, y, Xv, yv = problem(rows)
    X = X * 3.0 + 1e3  # a mean far from 0 against the spread: a test of the variance's sums
    Xv = Xv * 3.0 + 1e3
    return model.fit(
        X,
        y,
        batch_size=BN_BATCH,
        optimizer="adam",
        validation_data=(Xv, yv),
        communicator=comm,
        **kw,
    )


def bn_buffers(model: Sequential) -> dict[str, np.ndarray]:
    return {
        f"b{i}_{name}": np.asarray(a)
        for i, layer in enumerate(model.layers)
        for name, a in layer.buffers().items()
    }


def fit(model: Sequential, comm: object, **kw: object) -> object:
    X, y, Xv, yv = problem()
    return model.fit(
        X, y, batch_size=50, optimizer="adam", validation_data=(Xv, yv), communicator=comm, **kw
    )


def save(out: Path, rank: int, model: Sequential, history: object, **extra: object) -> None:
    h = history.history  # type: ignore[attr-defined]
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"h_{k}": np.asarray(v) for k, v in h.items() if k != "seconds"})
    np.savez(out / f"rank{rank}.npz", **arrays, **extra)


SHARED_CALLS = 0  # the shared-memory all-reduces this process made, counted below
_shared_allreduce = SharedMemoryAllreducer.allreduce


def _counted_allreduce(self: SharedMemoryAllreducer) -> np.ndarray:
    global SHARED_CALLS
    SHARED_CALLS += 1
    return _shared_allreduce(self)


SharedMemoryAllreducer.allreduce = _counted_allreduce  # type: ignore[method-assign]


def shared_memory_state(comm: object, model: Sequential) -> dict[str, object]:
    """How many shared-memory all-reduces ran, whether /dev/shm had the room for them, and
    whether the model's gradients left the window after the fit."""
    cached = comm._shared  # type: ignore[attr-defined]
    window = cached[1] if cached else None
    grad = model.parameters()[0].buffer.grad
    return {
        "shared_calls": SHARED_CALLS,
        "dev_shm_room": _room_in_dev_shm(2 * grad.nbytes * comm.size),  # type: ignore[attr-defined]
        "grad_left_window": window is None or not np.shares_memory(grad, window.buffer),
        "window_free_again": window is None or not window.in_use,
    }


def shared_memory_sums(comm: object, calls: int = 10) -> dict[str, np.ndarray]:
    """The shared-memory sum against MPI_Allreduce's, for sizes that leave chunks uneven or
    empty and both float dtypes; the calls follow each other with nothing in between (no
    other collective), each overwriting the buffer at once, as a training step does."""
    result: dict[str, np.ndarray] = {}
    rank = comm.rank  # type: ignore[attr-defined]
    for dtype in ("float32", "float64"):
        for size in (1, 7, 1000):
            values = [
                np.random.default_rng(100 * rank + c).normal(size=size).astype(dtype)
                for c in range(calls)
            ]
            possible = comm.shared_memory_possible(size, dtype)  # type: ignore[attr-defined]
            shared = comm.shared_memory_allreducer(size, dtype) if possible else None  # type: ignore[attr-defined]
            result[f"available_{dtype}_{size}"] = np.asarray(shared is not None)
            if shared is None:
                continue
            totals = []
            for v in values:
                shared.buffer[...] = v
                totals.append(shared.allreduce().copy())
            for c, (v, total) in enumerate(zip(values, totals, strict=True)):
                result[f"mpi_{dtype}_{size}_{c}"] = comm.allreduce(v.copy())  # type: ignore[attr-defined]
                result[f"shm_{dtype}_{size}_{c}"] = total
    return result


class _RaiseAtTrainEnd(Callback):
    def on_train_end(self, logs: object = None) -> None:
        raise RuntimeError("injected failure in on_train_end on rank 0")


def _rebind_last_gradient(model: Sequential) -> None:
    """Make the last Dense layer hand back a gradient outside the flat buffer every step."""
    layer = model.layers[-1]
    backward = layer.backward

    def rebinding(grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        out = backward(grad, need_input_grad)
        layer.W.grad = layer.W.grad.copy()
        return out

    layer.backward = rebinding  # type: ignore[method-assign]


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    comm = distributed.init()
    with distributed.abort_on_error(comm):
        if scenario == "info":
            np.savez(out / f"rank{comm.rank}.npz", info=[comm.rank, comm.size, comm.local_rank])
        elif scenario == "fit":
            # Each rank built from its own seed: the broadcast from rank 0 must win.
            model = make_model(100 + comm.rank)
            history = fit(model, comm, epochs=3)
            save(out, comm.rank, model, history, **shared_memory_state(comm, model))
        elif scenario == "checkpoint":
            # Writes (rank 0) or resumes a checkpoint in OUT_DIR/ckpt up to argv[3] epochs.
            epochs = int(sys.argv[3])
            model = make_model(100)
            ckpt = out / "ckpt"
            history = fit(model, comm, epochs=epochs, seed=3, checkpoint=ckpt, resume=ckpt.exists())
            save(out, comm.rank, model, history)
        elif scenario == "bn":
            model = make_bn_model(100 + comm.rank)
            save(out, comm.rank, model, fit_bn(model, comm, epochs=3), **bn_buffers(model))
        elif scenario == "bn_checkpoint":
            epochs = int(sys.argv[3])
            model = make_bn_model(100)
            ckpt = out / "ckpt"
            history = fit_bn(
                model, comm, epochs=epochs, seed=3, checkpoint=ckpt, resume=ckpt.exists()
            )
            save(out, comm.rank, model, history, **bn_buffers(model))
        elif scenario == "bn_one_row":
            # 101 rows at 25: the last global batch has one row (rank 1's; rank 0's is empty).
            fit_bn(make_bn_model(100), comm, rows=101, epochs=1)
        elif scenario == "callbacks":
            # Per-rank file names, so a rank that wrote would leave its own file behind.
            r = comm.rank
            cbs = [CSVLogger(out / f"log{r}.csv"), ModelCheckpoint(out / f"m{r}-{{epoch}}.npz")]
            model = make_model(100)
            save(out, r, model, fit(model, comm, epochs=2, verbose=2, callbacks=cbs))
        elif scenario == "nan":
            # Row 30 is in rank 1's part of the first batch (rows 25-49 of 50): only rank 1's
            # loss is infinite, and the guard must still stop both ranks at the same step.
            X, _, _, _ = problem()
            y = np.zeros((X.shape[0], 3))
            y[30] = 1e300  # finite, but its squared error is not
            try:
                make_model(100).fit(
                    X,
                    y,
                    batch_size=50,
                    shuffle=False,
                    check_every=1,
                    loss="mse",
                    communicator=comm,
                )
                stopped = "no"
            except DivergenceError as exc:
                stopped = str(exc)
            # The fit that diverged gave its window back: the next one takes it again.
            model = make_model(100)
            fit(model, comm, epochs=1)
            state = shared_memory_state(comm, model)
            np.savez(out / f"rank{comm.rank}.npz", stopped=stopped, **state)
        elif scenario == "fail":
            model = make_model(100)
            if comm.rank == 1:
                raise RuntimeError("injected failure on rank 1")
            fit(model, comm, epochs=1000)  # rank 0 would wait in the first all-reduce forever
        elif scenario == "mismatch":
            X, y, _, _ = problem(101 + comm.rank)  # rank 1 has one row more
            make_model(100).fit(X, y, batch_size=50, communicator=comm)
        elif scenario == "rebind":
            # Rank 1's last layer rebinds its weight gradient outside the window every step.
            model = make_model(100)
            if comm.rank == 1:
                _rebind_last_gradient(model)
            history = fit(model, comm, epochs=3)
            save(out, comm.rank, model, history, **shared_memory_state(comm, model))
        elif scenario == "refit":
            # Fits of another model size in between: the old window is freed, a new one made.
            first = make_model(100)
            fit(first, comm, epochs=1)
            window = comm._shared[1]
            calls = [SHARED_CALLS]
            wide = Sequential([Dense(12, 40), ReLU(), Dense(40, 3)], dtype="float64", seed=1)
            fit(wide, comm, epochs=1)
            calls.append(SHARED_CALLS)
            model = make_model(100)
            history = fit(model, comm, epochs=3)
            calls.append(SHARED_CALLS)
            freed = window is not None and window.views == []
            state = shared_memory_state(comm, model)
            save(out, comm.rank, model, history, calls=calls, first_freed=freed, **state)
        elif scenario == "train_end_fails":
            cbs = [_RaiseAtTrainEnd()] if comm.rank == 0 else []
            fit(make_model(100), comm, epochs=1, callbacks=cbs)
            fit(make_model(100), comm, epochs=1)  # would hang if rank 0 went on alone
        elif scenario == "train_end_fails_after_divergence":
            # Both ranks diverge at the same step; rank 0's on_train_end then raises.
            X, _, _, _ = problem()
            y = np.zeros((X.shape[0], 3))
            y[30] = 1e300
            cbs = [_RaiseAtTrainEnd()] if comm.rank == 0 else []
            with contextlib.suppress(DivergenceError):
                make_model(100).fit(
                    X, y, batch_size=50, check_every=1, loss="mse", communicator=comm, callbacks=cbs
                )
            fit(make_model(100), comm, epochs=1)  # would hang if rank 0 went on alone
        elif scenario == "shared":
            np.savez(out / f"rank{comm.rank}.npz", **shared_memory_sums(comm))
        elif scenario == "allreduce":
            buf = np.arange(5, dtype=np.float64) * (comm.rank + 1)
            comm.allreduce(buf)
            b = np.full(3, float(comm.rank))
            comm.broadcast(b)
            m = comm.reduce_metrics([1.0, comm.rank])
            data = comm.broadcast_bytes(b"rank0" if comm.rank == 0 else b"")
            np.savez(out / f"rank{comm.rank}.npz", buf=buf, b=b, m=m, data=list(data))
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
