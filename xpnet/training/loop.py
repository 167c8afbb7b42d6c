"""The training loop: batches, forward, loss, backward, step, metrics, and the hook calls.

Everything else a run does (the divergence guard, checkpoints, early stopping, the progress
bar, the history) is a callback. A batch takes one way through :func:`train`, and the epoch's
loss, metric sums and the finiteness of the weights come back to the host in one read.

Data parallelism (``communicator=``) is the same way through: each rank takes its contiguous
part of every global batch, and :class:`~xpnet.distributed.DataParallel` weights its loss
gradient, all-reduces the flat gradient buffer once per step and sums the epoch's host
numbers; alone (no communicator, or a size-1 one) those calls change nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import namespace_of, to_numpy
from ..callbacks.base import Callback
from ..distributed.communicator import Communicator
from ..distributed.data_parallel import DataParallel, split_rows
from ..distributed.faults import report_and_abort
from ..errors import DivergenceError
from ..history import History
from ..losses import Loss
from ..parameter import Parameter

__all__ = ["evaluate_arrays", "train"]


class _Hooks:
    """Calls one hook on every callback, in order."""

    def __init__(self, callbacks: Sequence[Callback], model: Any, params: dict[str, Any]):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook: str) -> Any:
        methods = [getattr(cb, hook) for cb in self.callbacks]

        def call(*args: Any) -> None:
            for method in methods:
                method(*args)

        setattr(self, hook, call)  # looked up once per run, not once per batch
        return call


def train(
    model: Any,
    Xd: Any,
    yd: Any,
    val: tuple[Any, Any] | None,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    rng: np.random.Generator,
    callbacks: Sequence[Callback],
    history: History,
    verbose: int = 0,
    communicator: Communicator | None = None,
) -> History:
    """Train ``model`` (its ``optimizer`` and ``loss`` set) on device arrays; see ``fit``."""
    dp = DataParallel(communicator)
    opt, loss_fn = model.optimizer, model.loss
    xp, n = namespace_of(Xd), int(Xd.shape[0])
    steps = -(-n // batch_size)
    params = model.parameters()
    stochastic = [layer for layer in model.layers if layer.stochastic]
    info: dict[str, Any] = {"epochs": epochs, "steps": steps, "batch_size": batch_size}
    info.update(samples=n, shuffle=shuffle, verbose=verbose, initial_epoch=0, rng=rng)
    info["communicator"] = dp.comm  # callbacks: only the root rank prints and writes
    hooks = _Hooks(callbacks, model, info)
    model.history, model.stop_training = history, False

    def run_epochs() -> None:
        """on_train_begin, the set-up of the ranks, then the epochs."""
        hooks.on_train_begin(None)
        start = int(info["initial_epoch"])  # a resume may have advanced it
        dp.start(
            model,
            rng,
            Xd,
            yd,
            batch_size=batch_size,
            epochs=epochs,
            start_epoch=start,
            shuffle=shuffle,
        )
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            hooks.on_epoch_begin(epoch, None)
            order = model.backend.asarray(rng.permutation(n) if shuffle else np.arange(n))
            # One seed per stochastic layer and epoch, after the shuffle: a resumed run draws
            # the same ones from the checkpointed generator.
            seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=len(stochastic))]
            sums: list[Any] = []  # pragma: no mutate
            for step in range(steps):
                idx = order[step * batch_size : min((step + 1) * batch_size, n)]
                total = int(idx.shape[0])
                lo, hi = dp.part(total)  # this rank's contiguous part of the global batch
                idx, rows = idx[lo:hi], hi - lo
                sizes = {"batch": step, "size": total, "rank_size": rows}
                hooks.on_train_batch_begin(step, sizes)
                for layer, seed in zip(stochastic, seeds, strict=True):
                    layer.set_random_key(seed, step, row_offset=lo)
                yb = xp.take(yd, idx, axis=0)
                out = model.forward(xp.take(Xd, idx, axis=0), training=True)
                value, grad = dp.loss_and_grad(loss_fn, out, yb, total)
                model.backward(grad)
                dp.allreduce_gradients(params)
                opt.batch_rows = total
                opt.step(params)
                batch = [value * rows, *loss_fn.metric_sums(out, yb)]
                sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
                hooks.on_train_batch_end(step, {**sizes, "loss": value})
            logs = _epoch_values(loss_fn, yd.ndim, sums, params, n, dp)
            if val is not None:
                scores = _validate(model, val[0], val[1], loss_fn, dp)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            logs["seconds"] = time.perf_counter() - t0
            logs["lr"] = float(opt.lr)
            hooks.on_epoch_end(epoch, logs)
            if model.stop_training:
                return

    try:
        try:
            run_epochs()
        except KeyboardInterrupt:
            history.interrupted = True
        except DivergenceError:
            # Decided on the global loss, so every rank raises it at the same step.
            hooks.on_train_end(None)
            raise
        hooks.on_train_end(None)
    except DivergenceError:
        raise
    except Exception as exc:
        # Also what on_train_end raises, on any path: one rank going on alone would leave
        # the others waiting in their next collective.
        if dp.size > 1:
            report_and_abort(dp.comm, exc, 1)
        raise
    finally:
        # However the fit ended: the gradients leave the shared window and the layers the
        # communicator, on every rank alike.
        dp.finish()
    return history


def _all_finite(params: list[Parameter]) -> list[Any]:
    """A 0-d flag (in a list; empty for a model without parameters): all weights finite."""
    if not params:
        return []
    buf = params[0].buffer
    arrays = [buf.data] if buf is not None and buf.holds(params) else [p.data for p in params]
    xp = namespace_of(*arrays)
    flags = [xp.all(xp.isfinite(a)) for a in arrays]
    return [flags[0] if len(flags) == 1 else xp.all(xp.stack(flags))]


def _read(values: list[Any]) -> list[float]:
    """The host values of 0-d device arrays, in one transfer."""
    xp = namespace_of(*values)
    return [float(v) for v in to_numpy(xp.stack([xp.astype(v, xp.float64) for v in values]))]


def _epoch_values(
    loss_fn: Loss,
    target_ndim: int,
    sums: list[Any],
    params: list[Parameter],
    n: int,
    dp: DataParallel,
) -> dict[str, float]:
    names = ("loss", *loss_fn.metric_names(target_ndim))
    flag = _all_finite(params)
    values = _read([*sums, *flag])  # the one read of the epoch
    # The ranks' weights are identical, so the flag is too; the sums are over each rank's rows.
    totals = dp.reduce(values[: len(names)])
    logs = {k: t / n for k, t in zip(names, totals, strict=True)}
    if flag and not values[-1]:
        # Weights that are not finite make the epoch's loss undefined: report it as NaN, so
        # that the divergence guard (and any callback watching the loss) sees it.
        logs["loss"] = float("nan")
    return logs


def evaluate_arrays(model: Any, Xd: Any, yd: Any, loss_fn: Loss, batch_size: int) -> dict:
    """Mean loss and the loss's metrics on device arrays, read back in one transfer."""
    n = int(Xd.shape[0])
    names = ("loss", *loss_fn.metric_names(yd.ndim))
    values = _evaluation_values(model, Xd, yd, loss_fn, batch_size)
    return {k: (v if k == "loss" else v / n) for k, v in zip(names, values, strict=True)}


def _evaluation_values(model: Any, Xd: Any, yd: Any, loss_fn: Loss, batch_size: int) -> list:
    """The mean loss and the metric sums on device arrays, read back in one transfer."""
    xp = namespace_of(Xd)
    n = int(Xd.shape[0])
    outs = [
        model.forward(Xd[i : min(i + batch_size, n), ...], training=False)
        for i in range(0, n, batch_size)
    ]
    out = outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
    return _read([loss_fn.forward(out, yd), *loss_fn.metric_sums(out, yd)])


def _validate(model: Any, Xd: Any, yd: Any, loss_fn: Loss, dp: DataParallel) -> dict:
    """The validation scores of the whole set; on N ranks each evaluates one contiguous
    part, and the parts' sums are added up, so every rank gets the single-process scores."""
    if dp.size == 1:
        return evaluate_arrays(model, Xd, yd, loss_fn, 1024)
    n = int(Xd.shape[0])
    names = ("loss", *loss_fn.metric_names(yd.ndim))
    lo, hi = split_rows(n, dp.size, dp.rank)
    local = [0.0] * len(names)
    if hi > lo:
        local = _evaluation_values(model, Xd[lo:hi, ...], yd[lo:hi, ...], loss_fn, 1024)
        local[0] *= hi - lo  # the part's mean loss, as a sum
    totals = dp.reduce(local)
    return {k: v / n for k, v in zip(names, totals, strict=True)}
