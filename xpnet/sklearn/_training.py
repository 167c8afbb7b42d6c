"""scikit-learn's optimisers and stopping rules, as xpnet optimizers, a hook and callbacks.

* :class:`SklearnSGD` and :class:`SklearnAdam` update as scikit-learn's ``SGDOptimizer`` and
  ``AdamOptimizer`` do (velocity ``v = momentum v - lr g``; Adam's epsilon added to the
  uncorrected ``sqrt(v)``), and expose ``learning_rate`` as scikit-learn's optimizers do.
* :class:`SampleL2` is scikit-learn's ``alpha * W / sum(w)`` on each weight gradient.
* :class:`SklearnStopping` records the epoch and applies ``tol``, ``n_iter_no_change``,
  ``early_stopping`` and the learning-rate schedules after each epoch.
* :class:`KeepGoing` replaces ``fit``'s divergence guard: scikit-learn trains on through
  non-finite values and the estimator reports them once, after training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..backend import namespace_of, to_numpy
from ..callbacks import EarlyStopping, ModelState, TerminateOnNaN
from ..kernels import get_kernels
from ..optimizers import OPTIMIZERS, Adam, GradientHook, L2Penalty, Optimizer
from ..parameter import Parameter, ParameterBuffer

__all__ = [
    "KeepGoing",
    "SampleL2",
    "SklearnAdam",
    "SklearnSGD",
    "SklearnStopping",
    "optimizer_class",
]


class _FusedL2:
    """The scikit-learn optimizers take :class:`SampleL2`'s term inside their update over a
    flat buffer: one pass reads each weight once for its penalty, its squares and its step,
    where the hook would add the term to the gradient in a pass of its own first."""

    _l2: tuple[SampleL2, Any, list[tuple[int, int]]] | None = None

    def fuse_l2(
        self, penalty: SampleL2, params: Sequence[Parameter], coef: Any, segments: Any
    ) -> bool:
        """Take ``penalty``'s term (``coef`` times the weights on ``segments`` of the flat
        buffer) into this step's update; False (nothing taken) when the step will not go
        over the flat buffer or the update or the kernels have no fused form."""
        if not (self._fuses() and get_kernels(namespace_of(params[0].data)).fused_l2):
            return False
        if self._flat_state(params) is None:  # type: ignore[attr-defined]
            return False
        self._l2 = (penalty, coef, segments)
        return True

    def _fuses(self) -> bool:
        return True

    def _take_l2(self) -> tuple[SampleL2, Any, list[tuple[int, int]]] | None:
        # Consumed by the one update of the step it was taken for.
        l2, self._l2 = self._l2, None
        return l2


class SklearnSGD(_FusedL2, Optimizer):
    """scikit-learn's SGD: ``v = momentum v - lr g``; ``p += momentum v - lr g`` (Nesterov)
    or ``p += v``; ``lr_schedule`` "constant", "invscaling" or "adaptive" (applied by
    :class:`SklearnStopping` at the end of each epoch)."""

    name = "sklearn_sgd"
    state_names = ("velocity",)

    def __init__(
        self,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        lr_schedule: str = "constant",
        power_t: float = 0.5,
        learning_rate: float | None = None,
        hooks: Iterable[GradientHook] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, None, hooks, clip_norm)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.lr_schedule = str(lr_schedule)
        self.power_t = float(power_t)
        if learning_rate is not None:
            self.lr = float(learning_rate)

    @property
    def learning_rate(self) -> float:
        """The current rate, scikit-learn's ``_optimizer.learning_rate``."""
        return float(self.lr)

    def iteration_ends(self, time_step: int) -> None:
        if self.lr_schedule == "invscaling":
            self.lr = float(self.base_lr) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.lr <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.lr /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.lr:f}")
        return False

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        if not self.momentum:
            p.data -= self.lr * g
            return
        v = state.get("velocity")
        if v is None:
            v = state["velocity"] = xp.zeros_like(p.data)
        l2 = self._take_l2()
        if l2 is not None:
            penalty, coef, segments = l2
            squares = get_kernels(xp).l2_velocity_sgd_update(
                p.data, g, v, segments, coef=coef, lr=self.lr, momentum=self.momentum,
                nesterov=self.nesterov,
            )  # fmt: skip
            penalty.add_squares(squares)
            return
        get_kernels(xp).velocity_sgd_update(
            p.data, g, v, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov
        )

    def _fuses(self) -> bool:
        return bool(self.momentum)  # plain SGD's update is one NumPy expression

    def hyperparameters(self) -> dict[str, Any]:
        return self._with_clip(
            {
                "lr": self.base_lr,
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "lr_schedule": self.lr_schedule,
                "power_t": self.power_t,
                "learning_rate": self.lr,
            }
        )


class SklearnAdam(_FusedL2, Adam):
    """Adam with scikit-learn's epsilon: ``p -= lr_t m / (sqrt(v) + eps)`` with
    ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`` (xpnet's Adam adds eps to the corrected root)."""

    name = "sklearn_adam"

    @property
    def learning_rate(self) -> float:
        t = max(self.steps_done, 1)
        b1, b2 = self.betas
        return float(self.base_lr) * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)

    def iteration_ends(self, time_step: int) -> None:
        """Adam keeps its rate (scikit-learn's schedules are SGD's)."""

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        if verbose:
            print(msg + " Stopping.")
        return True

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        b1, b2 = self.betas
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        t = state["step"]
        root_bc2 = math.sqrt(1.0 - b2**t)
        # eps / root_bc2 against the corrected root is eps against the raw one.
        kw = dict(
            beta1=b1,
            beta2=b2,
            step_size=self.lr / (1.0 - b1**t),
            root_bc2=root_bc2,
            eps=self.eps / root_bc2,
            step=t,
        )
        m, v, l2 = state["exp_avg"], state["exp_avg_sq"], self._take_l2()
        if l2 is not None:
            penalty, coef, segments = l2
            penalty.add_squares(
                get_kernels(xp).l2_adam_update(p.data, g, m, v, segments, coef=coef, **kw)
            )
            return
        get_kernels(xp).adam_update(p.data, g, m, v, **kw)


_OWN: dict[str, type[Optimizer]] = {"sklearn_sgd": SklearnSGD, "sklearn_adam": SklearnAdam}


def optimizer_class(name: str) -> type[Optimizer]:
    """The optimizer class a pickled state names (the estimators' own, or xpnet's)."""
    return _OWN.get(name) or OPTIMIZERS[name]


class SampleL2(L2Penalty):
    """scikit-learn's L2 term with sample weights: ``alpha * W / sum(w)`` on each weight
    gradient, ``sum(w)`` being the batch's (``n_batch`` without weights), which the loss
    left on the device; so the hook reads nothing back.

    It also adds up, on the device, each batch's penalty ``||W||^2 rows / sum(w)`` at the
    weights the batch's gradient was taken at: scikit-learn's epoch loss carries the L2 term
    of each batch before its update, weighted by the batch's rows (:meth:`epoch_penalty`).
    """

    def __init__(self, rate: float, loss: Any) -> None:
        super().__init__(rate)
        self.loss = loss
        self._epoch_sum: Any = 0.0
        self._segment_cache: tuple[ParameterBuffer, list[Any]] | None = None

    def __call__(
        self, optimizer: Optimizer, params: Sequence[Parameter], buffer: ParameterBuffer | None
    ) -> None:
        if self.rate == 0.0:
            return
        inv = self.loss.inverse_weight_sum
        coef = self.rate * inv
        if (
            buffer is not None
            and isinstance(optimizer, _FusedL2)
            and optimizer.fuse_l2(self, params, coef, self._segments(params, buffer))
        ):
            return
        squares: Any = 0.0
        # The weights, views of the flat buffer when there is one: one pass adds the
        # penalty's gradient, one dot product (no temporary) gives its squares.
        for p in self._decayed(params):
            xp = namespace_of(p.data)
            flat = xp.reshape(p.data, (-1,))
            squares = squares + xp.vecdot(flat, flat)
            get_kernels(xp).scaled_add(p.grad, p.data, coef)
        self.add_squares(squares)

    def add_squares(self, squares: Any) -> None:
        """Count this batch's ``||W||^2`` (taken at the weights its gradient was taken at)
        into the epoch's penalty, weighted as scikit-learn weights it."""
        self._epoch_sum = self._epoch_sum + squares * (
            self.loss.inverse_weight_sum * self.loss.batch_rows
        )

    def _segments(self, params: Sequence[Parameter], buffer: ParameterBuffer) -> list[Any]:
        """The ``(start, stop)`` of each decayed parameter in ``buffer`` (which holds
        ``params``), computed once per buffer."""
        cached = self._segment_cache  # pragma: no mutate
        if cached is None or cached[0] is not buffer:
            decayed = {id(p) for p in self._decayed(params)}
            pairs = zip(buffer.params, buffer.slices, strict=True)
            segs = [s for p, s in pairs if id(p) in decayed]
            cached = self._segment_cache = (buffer, segs)
        return cached[1]

    def epoch_penalty(self, n: int) -> float:
        """The L2 part of scikit-learn's epoch loss over ``n`` training rows, read back once;
        starts the next epoch's sum."""
        total, self._epoch_sum = self._epoch_sum, 0.0
        return 0.5 * self.rate * float(total) / n


class KeepGoing(TerminateOnNaN):
    """``fit``'s guard, told to let non-finite values through (scikit-learn's behaviour)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        return

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        return

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        return

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        return


class SklearnStopping(EarlyStopping):
    """scikit-learn's end-of-epoch bookkeeping as a callback on :meth:`Sequential.fit`.

    It counts ``n_iter_`` and ``t_``, records ``loss_curve_`` (the epoch loss plus the L2
    term), then the validation score (``early_stopping``; the best epoch's state is kept and
    put back when training ends) or the training loss, counting epochs without an
    improvement of ``tol``; more than ``n_iter_no_change`` of them stop training, or with
    ``learning_rate="adaptive"`` divide the rate by 5 first.
    """

    def __init__(
        self,
        estimator: Any,
        n: int,
        penalty: SampleL2 | None,
        validation: tuple[Any, Any, Any] | None,
    ) -> None:
        # EarlyStopping's own settings (monitor, patience, restore_best_weights) are left at
        # their defaults: this class replaces the methods that read them.
        super().__init__()
        self.estimator = estimator
        self.n = n
        self.penalty = penalty
        self.validation = validation
        self.converged = False  # pragma: no mutate

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)  # pragma: no mutate
        self.converged = False
        if self.validation is not None:
            # scikit-learn restores the initial weights when no epoch beats the best score.
            self.best_state = ModelState(self.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        est = self.estimator
        est.n_iter_ += 1
        est.t_ += self.n
        value = float((logs or {})["loss"])
        if self.penalty is not None:
            value += self.penalty.epoch_penalty(self.n)
        est.loss_ = value
        est.loss_curve_.append(value)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {value:.8f}")
        if self.validation is not None:
            score = est._validation_score(*self.validation)
            if est.verbose:
                print(f"Validation score: {score:f}")
            if est._update_validation(score):
                self.best_epoch = epoch  # pragma: no mutate
                assert self.best_state is not None
                self.best_state.update()
        else:
            est._update_loss_progress(value)
        opt = self.model.optimizer
        if hasattr(opt, "iteration_ends"):
            opt.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.validation is not None else "Training loss"
            msg = (
                f"{what} did not improve more than tol={est.tol:f} for "
                f"{est.n_iter_no_change} consecutive epochs."
            )
            stops = (
                opt.trigger_stopping(msg, est.verbose) if hasattr(opt, "trigger_stopping") else True
            )
            if stops:
                self.converged = True
                self.stopped_epoch = epoch  # pragma: no mutate
                self.model.stop_training = True
            else:
                est._no_improvement_count = 0

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # scikit-learn keeps the best validation epoch's weights however training ended.
        if self.best_state is not None:
            self.best_state.restore()


def host_scores(model: Any, Xd: Any, batch: int = 1024) -> np.ndarray:
    """The network's raw outputs on device rows ``Xd``, read back once."""
    xp = namespace_of(Xd)
    n = int(Xd.shape[0])
    outs = [
        model.forward(Xd[i : min(i + batch, n), ...], training=False) for i in range(0, n, batch)
    ]
    return np.asarray(to_numpy(outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)))
