"""The training loop: batches, forward, loss, backward, step, metrics, and the hook calls.

Everything else a run does (the divergence guard, checkpoints, early stopping, the progress
bar, the history) is a callback. A batch takes one way through :func:`train`, and the epoch's
loss, metric sums and the finiteness of the weights come back to the host in one read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import namespace_of, to_numpy
from ..callbacks.base import Callback
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
) -> History:
    """Train ``model`` (its ``optimizer`` and ``loss`` set) on device arrays; see ``fit``."""
    opt, loss_fn = model.optimizer, model.loss
    xp, n = namespace_of(Xd), int(Xd.shape[0])
    steps = -(-n // batch_size)
    params = model.parameters()
    stochastic = [layer for layer in model.layers if layer.stochastic]
    info: dict[str, Any] = {"epochs": epochs, "steps": steps, "batch_size": batch_size}
    info.update(samples=n, shuffle=shuffle, verbose=verbose, initial_epoch=0, rng=rng)
    hooks = _Hooks(callbacks, model, info)
    model.history, model.stop_training = history, False
    try:
        hooks.on_train_begin(None)
        for epoch in range(int(info["initial_epoch"]), epochs):
            t0 = time.perf_counter()
            hooks.on_epoch_begin(epoch, None)
            order = model.backend.asarray(rng.permutation(n) if shuffle else np.arange(n))
            # One seed per stochastic layer and epoch, after the shuffle: a resumed run draws
            # the same ones from the checkpointed generator.
            seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=len(stochastic))]
            sums: list[Any] = []
            for step in range(steps):
                idx = order[step * batch_size : min((step + 1) * batch_size, n)]
                rows = int(idx.shape[0])
                hooks.on_train_batch_begin(step, {"batch": step, "size": rows})
                for layer, seed in zip(stochastic, seeds, strict=True):
                    layer.set_random_key(seed, step, row_offset=0)
                yb = xp.take(yd, idx, axis=0)
                out = model.forward(xp.take(Xd, idx, axis=0), training=True)
                value = loss_fn.forward(out, yb)
                model.backward(loss_fn.backward())
                opt.batch_rows = rows
                opt.step(params)
                batch = [value * rows, *loss_fn.metric_sums(out, yb)]
                sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
                hooks.on_train_batch_end(step, {"batch": step, "size": rows, "loss": value})
            logs = _epoch_values(loss_fn, yd.ndim, sums, params, n)
            if val is not None:
                scores = evaluate_arrays(model, val[0], val[1], loss_fn, 1024)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            logs["seconds"] = time.perf_counter() - t0
            logs["lr"] = float(opt.lr)
            hooks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    except KeyboardInterrupt:
        history.interrupted = True
    except DivergenceError:
        hooks.on_train_end(None)
        raise
    hooks.on_train_end(None)
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
    loss_fn: Loss, target_ndim: int, sums: list[Any], params: list[Parameter], n: int
) -> dict[str, float]:
    names = ("loss", *loss_fn.metric_names(target_ndim))
    flag = _all_finite(params)
    values = _read([*sums, *flag])  # the one read of the epoch
    logs = {k: t / n for k, t in zip(names, values[: len(names)], strict=True)}
    if flag and not values[-1]:
        # Weights that are not finite make the epoch's loss undefined: report it as NaN, so
        # that the divergence guard (and any callback watching the loss) sees it.
        logs["loss"] = float("nan")
    return logs


def evaluate_arrays(model: Any, Xd: Any, yd: Any, loss_fn: Loss, batch_size: int) -> dict:
    """Mean loss and the loss's metrics on device arrays, read back in one transfer."""
    xp = namespace_of(Xd)
    n = int(Xd.shape[0])
    outs = [
        model.forward(Xd[i : min(i + batch_size, n), ...], training=False)
        for i in range(0, n, batch_size)
    ]
    out = outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
    names = ("loss", *loss_fn.metric_names(yd.ndim))
    values = _read([loss_fn.forward(out, yd), *loss_fn.metric_sums(out, yd)])
    return {k: (v if k == "loss" else v / n) for k, v in zip(names, values, strict=True)}
