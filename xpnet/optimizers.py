"""Optimizers, following PyTorch's formulations and defaults.

Each ``step(params)`` applies one update from ``p.grad`` to ``p.data`` in place. State
(moments, momentum buffers) lives on the parameters' backend and is created on the first
step. Scalar factors such as Adam's bias corrections are computed on the host as Python
floats, so a step never waits on the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .backend import backend_of, namespace_of, to_numpy
from .clipping import check_clip_norm, clip_grad_norm
from .kernels import get_kernels
from .parameter import Parameter, ParameterBuffer
from .schedules import LRSchedule
from .validation import check_non_negative, check_number, check_positive

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "GradientHook",
    "L2Penalty",
    "Optimizer",
    "RMSProp",
    "WeightDecay",
    "get_optimizer",
]


def _positive(name: str, value: Any, owner: str) -> float:
    return check_positive(f"{owner} {name}", value)


def _in_unit(name: str, value: Any, owner: str) -> float:
    return check_number(f"{owner} {name}", value, low=0.0, high=1.0, high_open=True)


def _non_negative(name: str, value: Any, owner: str) -> float:
    return check_non_negative(f"{owner} {name}", value)


class Optimizer:
    """Base class. Subclasses implement :meth:`_update` for one parameter.

    Every optimizer takes ``lr`` and an optional ``schedule``
    (:class:`xpnet.schedules.LRSchedule`): before each update the rate becomes
    ``lr * schedule.factor(updates made so far)``.

    Every optimizer also takes ``hooks``: :class:`GradientHook` objects (see
    :meth:`add_hook`) called, in order, on the gradients before each update, and
    ``clip_norm``: the gradients are first clipped to that global L2 norm, as
    ``torch.nn.utils.clip_grad_norm_`` does, on the device (see :mod:`xpnet.clipping`).
    """

    name = "optimizer"
    #: Names of the per-parameter state arrays, in checkpoint order.
    state_names: tuple[str, ...] = ()

    def __init__(
        self,
        lr: float,
        schedule: LRSchedule | None = None,
        hooks: Iterable[GradientHook] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        #: The largest global L2 norm of the gradients of an update (None: no clipping).
        self.clip_norm = check_clip_norm(clip_norm, type(self).__name__)
        #: The rate given at construction; :attr:`lr` is the rate of the current update.
        self.base_lr = _positive("lr", lr, type(self).__name__)
        self.lr = self.base_lr
        if schedule is not None and not isinstance(schedule, LRSchedule):
            raise ValueError(
                f"xpnet: schedule must be an xpnet.schedules.LRSchedule, got {schedule!r}"
            )
        self.schedule = schedule
        #: Updates made so far (``step`` calls); a schedule is a function of it.
        self.steps_done = 0
        self._state: dict[int, tuple[Parameter, dict[str, Any]]] = {}
        self._flat: _FlatState | None = None
        #: Gradient hooks, called in order before every update (see :meth:`add_hook`).
        self.hooks: list[GradientHook] = []
        #: Rows of the batch whose gradient the next update applies, when the training loop
        #: says so (``fit`` does); hooks that scale with the batch read it.
        self.batch_rows: int | None = None
        for hook in hooks or ():
            self.add_hook(hook)

    def add_hook(self, hook: GradientHook) -> None:
        """Append a gradient hook: ``hook(optimizer, params, buffer)`` runs before each update.

        ``buffer`` is the :class:`~xpnet.parameter.ParameterBuffer` of ``params`` when they
        are exactly its parameters (then ``buffer.grad`` is the flat gradient the update
        reads), else None (then the hook works on each ``p.grad``). Hooks are not part of
        :meth:`hyperparameters`, so checkpoints do not record them.
        """
        if not isinstance(hook, GradientHook):
            raise TypeError(
                f"xpnet: optimizer hooks must be xpnet.optimizers.GradientHook instances, "
                f"got {type(hook).__name__}"
            )
        self.hooks.append(hook)

    def step(self, params: Iterable[Parameter]) -> None:
        """Update each parameter in place from its ``grad``.

        When ``params`` are exactly the parameters of one :class:`ParameterBuffer` (as a
        model's are), all of them are updated by one call over the flat arrays; the update
        is element-wise, so the numbers are the same as parameter by parameter.
        """
        if not isinstance(params, (list, tuple)):
            params = list(params)
        if self.schedule is not None:
            self.lr = self.base_lr * self.schedule.factor(self.steps_done)
        self.steps_done += 1
        if self.hooks or self.clip_norm is not None:
            buf = params[0].buffer if params else None
            held = buf if buf is not None and buf.holds(params) else None
            # Clipping first: torch's clip_grad_norm_ precedes the step and its weight decay.
            if self.clip_norm is not None:
                clip_grad_norm(params, held, self.clip_norm)
            for hook in self.hooks:
                hook(self, params, held)
        flat = self._flat_state(params)
        if flat is not None:
            flat.step(self)
            return
        # Per-parameter steps can leave the parameters at different step counts or replace
        # state arrays, so the flat state is rebuilt (from the per-parameter state) next time.
        self._flat = None
        for p in params:
            if p.grad is None:
                continue
            entry = self._state.get(id(p))
            if entry is None or entry[0] is not p:
                entry = (p, {"step": 0})
                self._state[id(p)] = entry
            state = entry[1]
            state["step"] += 1
            self._update(p, p.grad, state, namespace_of(p.data, p.grad))

    def _flat_state(self, params: Sequence[Parameter]) -> _FlatState | None:
        buf = params[0].buffer if params else None
        if buf is None or not buf.holds(params):
            return None
        if self._flat is not None and self._flat.buffer is buf:
            return self._flat
        entries = []
        for p in params:
            entry = self._state.get(id(p))
            if entry is None or entry[0] is not p:
                entry = self._state[id(p)] = (p, {"step": 0})
            entries.append(entry[1])
        # One update for all needs one step count (the bias corrections) and the same kinds
        # of state everywhere; otherwise (parameters added to a trained model, say) they stay
        # per-parameter.
        if len({s["step"] for s in entries}) != 1 or len({frozenset(s) for s in entries}) != 1:
            return None
        self._flat = _FlatState(buf, entries)
        return self._flat

    def zero_grad(self, params: Iterable[Parameter]) -> None:
        """Forget the gradients (``backward`` overwrites them anyway; this is for hand loops)."""
        for p in params:
            p.grad = None

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable)."""
        return self._with_clip({"lr": self.base_lr})

    def _with_clip(self, hp: dict[str, Any]) -> dict[str, Any]:
        # Recorded only when set, so the records of unclipped optimizers stay as they were.
        if self.clip_norm is not None:
            hp["clip_norm"] = self.clip_norm
        return hp

    def state_dict(self, params: Sequence[Parameter]) -> dict[str, Any]:
        """Host copy of the state, one entry per parameter in ``params`` order."""
        out = []
        for p in params:
            entry = self._state.get(id(p))
            if entry is None or entry[0] is not p:
                out.append({"step": 0})
                continue
            out.append({k: (v if k == "step" else to_numpy(v).copy()) for k, v in entry[1].items()})
        return {"name": self.name, "hyperparameters": self.hyperparameters(), "state": out}

    def load_state_dict(self, state: dict[str, Any], params: Sequence[Parameter]) -> None:
        """Restore what :meth:`state_dict` returned, onto ``params``' backend."""
        entries = state["state"]
        if len(entries) != len(params):
            raise ValueError(
                f"xpnet: optimizer state has {len(entries)} entries but the model has "
                f"{len(params)} parameters"
            )
        self._state = {}
        self._flat = None  # rebuilt from (a copy of) the loaded arrays on the next step
        # The schedule position: every parameter steps together in fit, so the largest count
        # is the number of updates made.
        self.steps_done = max((int(e["step"]) for e in entries), default=0)
        for p, entry in zip(params, entries, strict=True):
            restored: dict[str, Any] = {"step": int(entry["step"])}
            for k, v in entry.items():
                if k == "step":
                    continue
                if tuple(np.shape(v)) != p.shape:
                    raise ValueError(
                        f"xpnet: optimizer state {k!r} has shape {np.shape(v)}, "
                        f"parameter {p.name!r} has {p.shape}"
                    )
                restored[k] = backend_of(p.data).asarray(np.array(v), dtype=p.data.dtype)
            self._state[id(p)] = (p, restored)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        if self.schedule is not None:
            args += f", schedule={self.schedule!r}"
        return f"{type(self).__name__}({args})"


class _FlatState:
    """An optimizer's state for all parameters of one :class:`ParameterBuffer`, flat.

    Each parameter's own state dict holds views of the flat state arrays (and its own step
    count, kept equal), so :meth:`Optimizer.state_dict`, checkpoints and a later fall-back to
    per-parameter steps see exactly what the flat updates wrote.
    """

    def __init__(self, buffer: ParameterBuffer, states: list[dict[str, Any]]) -> None:
        self.buffer = buffer
        self.states = states
        # A stand-in parameter over the whole buffer, for the optimizers' ``_update``.
        self.param = Parameter(buffer.data, "flat")
        self.state: dict[str, Any] = {"step": states[0]["step"]}
        xp = namespace_of(buffer.data)
        for k in states[0]:
            if k != "step":
                flat = xp.empty_like(buffer.data)
                for view, s in zip(buffer.views(flat), states, strict=True):
                    view[...] = s[k]
                self.state[k] = flat
        self._spread()

    def _spread(self) -> None:
        self._arrays = {k: v for k, v in self.state.items() if k != "step"}
        for k, flat in self._arrays.items():
            for view, s in zip(self.buffer.views(flat), self.states, strict=True):
                s[k] = view

    def step(self, opt: Optimizer) -> None:
        self.state["step"] += 1
        for s in self.states:
            s["step"] += 1
        data, grad = self.buffer.data, self.buffer.grad
        opt._update(self.param, grad, self.state, namespace_of(data, grad))
        # State arrays made on the first update (Adam's moments, SGD's momentum buffer) are
        # new objects: hand out the parameters' views of them.
        if any(self._arrays.get(k) is not v for k, v in self.state.items() if k != "step"):
            self._spread()


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    PyTorch's formulation: ``g += weight_decay * p``; ``v = momentum * v + (1 - dampening) * g``
    (``v = g`` on the first step); ``g = g + momentum * v`` with Nesterov, else ``g = v``;
    ``p -= lr * g``.
    """

    name = "sgd"
    state_names = ("momentum_buffer",)

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        schedule: LRSchedule | None = None,
        hooks: Iterable[GradientHook] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, schedule, hooks, clip_norm)
        self.momentum = _in_unit("momentum", momentum, "SGD")
        self.weight_decay = _non_negative("weight_decay", weight_decay, "SGD")
        self.dampening = _in_unit("dampening", dampening, "SGD")
        if nesterov and (self.momentum == 0.0 or self.dampening != 0.0):
            raise ValueError("xpnet: SGD nesterov=True needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if not self.momentum:
            p.data -= self.lr * g
            return
        buf = state.get("momentum_buffer")
        if buf is None:
            # PyTorch starts the buffer at the first gradient, undamped.
            buf = state["momentum_buffer"] = xp.asarray(g, copy=True)
            p.data -= self.lr * (g + self.momentum * buf if self.nesterov else buf)
            return
        get_kernels(xp).sgd_momentum_update(
            p.data,
            g,
            buf,
            lr=self.lr,
            momentum=self.momentum,
            dampening=self.dampening,
            nesterov=self.nesterov,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return self._with_clip(
            {
                "lr": self.base_lr,
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "weight_decay": self.weight_decay,
                "dampening": self.dampening,
            }
        )


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's formulation and defaults.

    ``g += weight_decay * p`` (L2); ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        schedule: LRSchedule | None = None,
        hooks: Iterable[GradientHook] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, schedule, hooks, clip_norm)
        owner = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"xpnet: {owner} betas must be a pair of numbers, got {betas!r}")
        self.betas = (_in_unit("betas[0]", betas[0], owner), _in_unit("betas[1]", betas[1], owner))
        self.eps = _positive("eps", eps, owner)
        self.weight_decay = _non_negative("weight_decay", weight_decay, owner)

    def _decay(self, p: Parameter, g: Any) -> Any:
        return g + self.weight_decay * p.data if self.weight_decay else g

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        g = self._decay(p, g)
        b1, b2 = self.betas
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        t = state["step"]
        get_kernels(xp).adam_update(
            p.data,
            g,
            state["exp_avg"],
            state["exp_avg_sq"],
            beta1=b1,
            beta2=b2,
            step_size=self.lr / (1.0 - b1**t),
            root_bc2=math.sqrt(1.0 - b2**t),
            eps=self.eps,
            step=t,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return self._with_clip(
            {
                "lr": self.base_lr,
                "betas": list(self.betas),
                "eps": self.eps,
                "weight_decay": self.weight_decay,
            }
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * weight_decay``
    before the Adam step, instead of adding ``weight_decay * p`` to the gradient."""

    name = "adamw"

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        schedule: LRSchedule | None = None,
        hooks: Iterable[GradientHook] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, schedule, hooks, clip_norm)

    def _decay(self, p: Parameter, g: Any) -> Any:
        if self.weight_decay:
            p.data *= 1.0 - self.lr * self.weight_decay
        return g


class RMSProp(Optimizer):
    """RMSProp, PyTorch's formulation and defaults.

    ``v = alpha v + (1 - alpha) g^2``; ``d = sqrt(v) + eps`` (centered: ``sqrt(v - mean_g^2)``);
    with momentum ``buf = momentum buf + g / d`` and ``p -= lr buf``, else ``p -= lr g / d``.
    """

    name = "rmsprop"
    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        schedule: LRSchedule | None = None,
        hooks: Iterable[GradientHook] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, schedule, hooks, clip_norm)
        self.alpha = _in_unit("alpha", alpha, "RMSProp")
        self.eps = _positive("eps", eps, "RMSProp")
        self.weight_decay = _non_negative("weight_decay", weight_decay, "RMSProp")
        self.momentum = _in_unit("momentum", momentum, "RMSProp")
        self.centered = bool(centered)

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if "square_avg" not in state:
            state["square_avg"] = xp.zeros_like(p.data)
            if self.centered:
                state["grad_avg"] = xp.zeros_like(p.data)
            if self.momentum:
                state["momentum_buffer"] = xp.zeros_like(p.data)
        get_kernels(xp).rmsprop_update(
            p.data,
            g,
            state["square_avg"],
            state["grad_avg"] if self.centered else None,
            state["momentum_buffer"] if self.momentum else None,
            lr=self.lr,
            alpha=self.alpha,
            eps=self.eps,
            momentum=self.momentum,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return self._with_clip(
            {
                "lr": self.base_lr,
                "alpha": self.alpha,
                "eps": self.eps,
                "weight_decay": self.weight_decay,
                "momentum": self.momentum,
                "centered": self.centered,
            }
        )


class GradientHook:
    """Something an optimizer calls on the gradients before each update (Chainer's
    ``optimizer_hooks``): ``hook(optimizer, params, buffer)`` changes the gradients in place.

    ``buffer`` is the parameters' :class:`~xpnet.parameter.ParameterBuffer` when the update
    goes over its flat arrays (one operation on ``buffer.grad`` then serves every parameter),
    else None (work on each ``p.grad``).
    """

    def __call__(
        self, optimizer: Optimizer, params: Sequence[Parameter], buffer: ParameterBuffer | None
    ) -> None:
        raise NotImplementedError


def _is_weight(p: Parameter) -> bool:
    # Weight matrices have two or more axes; biases (and scales) are vectors.
    return len(p.shape) >= 2


class WeightDecay(GradientHook):
    """Add ``rate * w`` to each weight's gradient: the gradient of ``rate / 2 * ||w||^2``.

    Parameters
    ----------
    rate : float
        The coefficient (>= 0).
    weights_only : bool, default True
        Decay only weight matrices (parameters of two or more axes), never biases.
    """

    def __init__(self, rate: float, weights_only: bool = True) -> None:
        self.rate = _non_negative("rate", rate, type(self).__name__)
        self.weights_only = bool(weights_only)

    def coefficient(self, optimizer: Optimizer) -> float:
        """The factor of ``w`` added to the gradient in the coming update."""
        return self.rate

    def __call__(
        self, optimizer: Optimizer, params: Sequence[Parameter], buffer: ParameterBuffer | None
    ) -> None:
        coef = self.coefficient(optimizer)
        if coef == 0.0:
            return
        if buffer is not None and not self.weights_only:
            get_kernels(namespace_of(buffer.data)).scaled_add(buffer.grad, buffer.data, coef)
            return
        # With a flat buffer the parameters' arrays are views of it: one pass over the decayed
        # segments reads half the memory a 0/1 mask over the whole buffer would.
        for p in self._decayed(params):
            get_kernels(namespace_of(p.data)).scaled_add(p.grad, p.data, coef)

    def _decayed(self, params: Sequence[Parameter]) -> list[Parameter]:
        """The parameters whose gradient this hook adds to (those with a gradient; only the
        weight matrices when ``weights_only``)."""
        return [
            p for p in params if p.grad is not None and (_is_weight(p) or not self.weights_only)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rate!r}, weights_only={self.weights_only!r})"


class L2Penalty(WeightDecay):
    """scikit-learn's L2 term: ``alpha * w / n_batch`` added to each weight's gradient.

    It is the gradient of ``alpha * ||w||^2 / (2 n_batch)`` added to a batch's mean loss,
    with ``n_batch`` the rows of the batch (the optimizer's ``batch_rows``, which ``fit``
    sets before each update; the last batch of an epoch may be smaller).
    """

    def coefficient(self, optimizer: Optimizer) -> float:
        rows = optimizer.batch_rows
        if rows is None:
            raise ValueError(
                "xpnet: L2Penalty needs the batch size: set optimizer.batch_rows before "
                "step() (fit does)"
            )
        return self.rate / rows


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSProp,
}


def get_optimizer(optimizer: str | Optimizer | None, **kwargs: Any) -> Optimizer:
    """An optimizer from a name (with keyword hyperparameters), an instance, or ``None`` (Adam)."""
    if optimizer is None:
        return Adam(**kwargs)
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()](**kwargs)
    raise ValueError(
        f"xpnet: unknown optimizer {optimizer!r}; valid optimizers are: "
        f"{', '.join(OPTIMIZERS)} or an Optimizer instance"
    )
