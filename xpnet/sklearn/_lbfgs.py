"""``solver="lbfgs"``: SciPy's L-BFGS-B over the network's flat parameter buffer.

SciPy drives the iterations on the host; each evaluation writes the proposed parameters into
the model's :class:`~xpnet.parameter.ParameterBuffer`, runs xpnet's forward and backward on
the whole (device) training set and reads the loss and the flat gradient back in one
transfer: one read per evaluation, which L-BFGS needs.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from ..backend import namespace_of, to_numpy

__all__ = ["LbfgsObjective", "fit_lbfgs"]


class LbfgsObjective:
    """Loss and gradient of scikit-learn's objective (mean loss plus ``alpha ||W||^2 /
    (2 sum(w))``) as a function of the flat parameter vector, in the buffer's order."""

    def __init__(self, model: Any, loss: Any, Xd: Any, yd: Any, alpha: float) -> None:
        self.model, self.loss, self.Xd, self.yd = model, loss, Xd, yd
        self.alpha = float(alpha)
        self.params = params = model.parameters()
        self.buffer = params[0].buffer
        assert self.buffer is not None
        d = self.buffer.data
        self.xp = namespace_of(d)
        xp = self.xp
        parts = [
            (xp.ones if len(p.shape) >= 2 else xp.zeros)((p.size,), dtype=d.dtype, device=d.device)
            for p in params
        ]
        self.mask = xp.concat(parts)
        self.calls = 0

    def flat(self) -> Any:
        """The parameters as one device vector, in the buffer's order."""
        if self.buffer.holds(self.params):
            return self.buffer.data
        return self.xp.concat([self.xp.reshape(p.data, (-1,)) for p in self.params])

    def set_flat(self, theta: Any) -> None:
        """Write a host vector (the buffer's order) into the parameters."""
        arr = self.model.backend.asarray(theta, dtype=self.model.dtype)
        if self.buffer.holds(self.params):
            self.buffer.data[...] = arr
            return
        for p, (a, b) in zip(self.params, self.buffer.slices, strict=True):
            p.data[...] = self.xp.reshape(arr[a:b], p.shape)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        xp, buf = self.xp, self.buffer
        self.calls += 1
        self.set_flat(theta)
        out = self.model.forward(self.Xd, training=True)
        value = self.loss.forward(out, self.yd)
        self.model.backward(self.loss.backward())
        held = buf.holds(self.params)
        grad = buf.grad if held else xp.concat([xp.reshape(p.grad, (-1,)) for p in self.params])
        if self.alpha:
            data = buf.data if held else self.flat()
            w = self.mask * data
            inv = self.loss.inverse_weight_sum
            value = value + 0.5 * self.alpha * xp.sum(w * w) * inv
            grad = grad + (self.alpha * inv) * w
        packed = xp.concat([xp.reshape(xp.astype(value, grad.dtype), (1,)), grad])
        host = np.asarray(to_numpy(packed), dtype=np.float64)  # the one read per evaluation
        return float(host[0]), host[1:]

    def sklearn_packed(
        self, packed: np.ndarray, coef_grads: list[Any], intercept_grads: list[Any]
    ) -> tuple[float, np.ndarray]:
        """The objective in scikit-learn's packing (all weights raveled, then all biases) of
        a network of Dense layers only; the gradients also go into ``coef_grads`` and
        ``intercept_grads``, layer by layer."""
        slices = self.buffer.slices
        order = [i for i in range(0, len(slices), 2)] + [i for i in range(1, len(slices), 2)]
        perm = np.concatenate([np.arange(*slices[i]) for i in order])
        theta = np.empty_like(np.asarray(packed, dtype=np.float64))
        theta[perm] = packed
        value, grad = self(theta)
        for k in range(len(self.params) // 2):
            a, b = slices[2 * k]
            coef_grads[k] = grad[a:b].reshape(self.params[2 * k].shape)
            a, b = slices[2 * k + 1]
            intercept_grads[k] = grad[a:b]
        return value, grad[perm]


def fit_lbfgs(objective: LbfgsObjective, *, max_iter: int, max_fun: int, tol: float) -> Any:
    """Minimise with L-BFGS-B from the model's current weights; leave the result in the
    model. Returns SciPy's result; warns (ConvergenceWarning) when it did not converge."""
    theta0 = np.asarray(to_numpy(objective.flat()), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        res = scipy.optimize.minimize(
            objective,
            theta0,
            method="L-BFGS-B",
            jac=True,
            options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol},
        )
    objective.set_flat(res.x)
    if res.status != 0:
        message = res.message.decode() if isinstance(res.message, bytes) else str(res.message)
        warnings.warn(
            f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}):\n"
            f"{message}\n\nIncrease the number of iterations to improve the convergence "
            f"(max_iter={max_iter}).",
            ConvergenceWarning,
            stacklevel=4,
        )
    return res
