"""Losses: each returns the batch mean from ``forward`` and its gradient from ``backward``.

``forward`` returns a 0-d array on the model's backend, not a Python float, so a training
loop can accumulate it on the device and read it once per epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import namespace_of
from .kernels import get_kernels
from .validation import check_number

__all__ = [
    "LOSSES",
    "BinaryCrossEntropy",
    "Loss",
    "MeanSquaredError",
    "SoftmaxCrossEntropy",
    "get_loss",
]


class Loss:
    """Base class: ``forward(output, target)`` -> mean loss; ``backward()`` -> d(loss)/d(output).

    A loss also tells a training loop what its targets are and which metrics go with it, so
    the loop needs no knowledge of particular losses: :meth:`target_dtype`,
    :attr:`categorical`, :meth:`metric_names` and :meth:`metric_sums`.
    """

    name = "loss"
    #: True when the targets are class labels ``0 .. n_outputs - 1`` (checked against the
    #: model's output width before training).
    categorical = False
    #: True when each output is an independent yes/no (multi-label): ``predict_proba`` then
    #: gives sigmoid probabilities and ``predict`` 0/1 per output instead of a class index.
    multi_label = False

    def check_targets(self, y: Any, n_outputs: int | None) -> Any:
        """Validate targets where user data enters (``fit``, ``evaluate``), after the generic
        checks; return them. The base class accepts anything the generic checks passed."""
        return y

    def target_dtype(self, model_dtype: str, target_ndim: int = 1) -> str:
        """The dtype targets of ``target_ndim`` dimensions take on the model's backend."""
        return model_dtype

    def metric_names(self, target_ndim: int = 1) -> tuple[str, ...]:
        """Names of the metrics recorded beside the loss (in :meth:`metric_sums` order)."""
        return ()

    def metric_sums(self, output: Any, target: Any) -> list[Any]:
        """Per-batch sums, one 0-d device array per metric; a loop adds them up over an epoch
        and divides by the rows seen, reading them back once (never per batch)."""
        return []

    def forward(self, output: Any, target: Any) -> Any:
        raise NotImplementedError

    def backward(self) -> Any:
        raise NotImplementedError

    def __call__(self, output: Any, target: Any) -> Any:
        return self.forward(output, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _one_hot(xp: Any, labels: Any, n_classes: int, dtype: Any) -> Any:
    classes = xp.arange(n_classes, dtype=labels.dtype, device=labels.device)
    # None-indexing, not expand_dims: the same arrays without two calls' overhead per step.
    return xp.astype(labels[:, None] == classes[None, :], dtype)


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused for stability.

    With logits ``z`` (n, C) and integer labels ``y`` (n,):
    ``loss = mean_i(logsumexp(z_i) - z_i[y_i])``, computed with the row maximum subtracted
    so no ``exp`` overflows, and ``d loss / d z = (softmax(z) - onehot(y)) / n``.
    ``target`` may also be an (n, C) array of class probabilities (e.g. one-hot).

    Parameters
    ----------
    label_smoothing : float, default 0.0
        In [0, 1): the target distribution becomes ``(1 - s) t + s / C`` (``t`` the one-hot
        labels or the given probabilities), as in
        ``torch.nn.functional.cross_entropy(label_smoothing=s)``.
    """

    name = "softmax_cross_entropy"
    categorical = True
    # A class default too, for subclasses whose __init__ does not call this one.
    label_smoothing = 0.0

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = check_number(
            "SoftmaxCrossEntropy label_smoothing",
            label_smoothing,
            low=0.0,
            high=1.0,
            high_open=True,
        )

    def target_dtype(self, model_dtype: str, target_ndim: int = 1) -> str:
        return "int64" if target_ndim == 1 else model_dtype

    def metric_names(self, target_ndim: int = 1) -> tuple[str, ...]:
        return ("accuracy",) if target_ndim == 1 else ()

    def metric_sums(self, output: Any, target: Any) -> list[Any]:
        if target.ndim != 1:
            return []
        xp = namespace_of(output, target)
        return [xp.sum(xp.astype(xp.argmax(output, axis=1) == target, xp.int64))]

    def forward(self, output: Any, target: Any) -> Any:
        xp = namespace_of(output, target)
        if output.ndim != 2:
            raise ValueError(
                f"xpnet: SoftmaxCrossEntropy expected logits of shape (n, classes), "
                f"got {tuple(output.shape)}"
            )
        n, c = output.shape
        if target.shape[0] != n:
            raise ValueError(
                f"xpnet: SoftmaxCrossEntropy got {n} rows of logits but {target.shape[0]} targets"
            )
        if target.ndim == 1:
            if xp.isdtype(target.dtype, "real floating"):
                raise ValueError(
                    "xpnet: SoftmaxCrossEntropy expected integer class labels, got floats; "
                    "pass labels as integers or targets as an (n, classes) array"
                )
            target = _one_hot(xp, target, c, output.dtype)
        elif target.shape != output.shape:
            raise ValueError(
                f"xpnet: SoftmaxCrossEntropy targets must be labels (n,) or probabilities "
                f"{tuple(output.shape)}, got {tuple(target.shape)}"
            )
        else:
            target = xp.astype(target, output.dtype)
        if self.label_smoothing:
            s = self.label_smoothing
            target = (1.0 - s) * target + s / c
        log_probs, self._probs = get_kernels(xp).log_softmax_with_probs(output)
        self._target = target
        self._n = n
        return -xp.sum(target * log_probs) / n

    def backward(self) -> Any:
        return (self._probs - self._target) * (1.0 / self._n)

    @property
    def probabilities(self) -> Any:
        """Softmax of the last logits seen by :meth:`forward`."""
        return self._probs

    def __repr__(self) -> str:
        if self.label_smoothing:
            return f"SoftmaxCrossEntropy(label_smoothing={self.label_smoothing!r})"
        return "SoftmaxCrossEntropy()"


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits, ``torch.nn.functional.binary_cross_entropy_with_logits``.

    With logits ``z`` and targets ``y`` in [0, 1] of the same shape (n, k) (a 1-D target for a
    model with one output is taken as one column), the loss is the mean over all elements of
    ``max(z, 0) - z y + log(1 + exp(-|z|))``, which equals
    ``-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))`` and never overflows; the gradient is
    ``(sigmoid(z) - y) / (n k)``.

    It serves binary and multi-label classification: each of the ``k`` outputs is its own
    yes/no. The recorded ``accuracy`` is element-wise: the share of (row, output) pairs where
    the prediction (probability > 0.5, i.e. ``z > 0``) equals the target (``y > 0.5``).
    ``Sequential.predict_proba`` gives ``sigmoid(z)`` and ``predict`` the 0/1 decisions.
    Targets outside [0, 1], not finite, or of another shape than the outputs are refused
    where the data enters ``fit`` and ``evaluate``.
    """

    name = "binary_cross_entropy"
    multi_label = True

    def metric_names(self, target_ndim: int = 1) -> tuple[str, ...]:
        return ("accuracy",)

    def check_targets(self, y: Any, n_outputs: int | None) -> Any:
        shape = tuple(y.shape)
        ok = (len(shape) == 2 and (n_outputs is None or shape[1] == n_outputs)) or (
            len(shape) == 1 and n_outputs in (None, 1)
        )
        if not ok:
            want = (
                "(n_samples,) or (n_samples, 1)" if n_outputs == 1 else f"(n_samples, {n_outputs})"
            )
            raise ValueError(
                f"xpnet: BinaryCrossEntropy targets must have the outputs' shape {want}, got "
                f"{shape}"
            )
        if isinstance(y, np.ndarray):
            if y.dtype.kind not in "biuf":
                raise ValueError(
                    f"xpnet: BinaryCrossEntropy targets must be numeric, got {y.dtype}"
                )
            lo = float(np.min(y)) if y.size else 0.0
            hi = float(np.max(y)) if y.size else 0.0
        else:
            # A device array: two read-backs per call, never per batch.
            xp = namespace_of(y)
            lo = float(xp.min(y)) if y.size else 0.0
            hi = float(xp.max(y)) if y.size else 0.0
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"xpnet: BinaryCrossEntropy targets must lie in [0, 1], got values from {lo:g} "
                f"to {hi:g}"
            )
        return y

    def _targets(self, xp: Any, output: Any, target: Any) -> Any:
        if target.ndim == 1 and output.ndim == 2 and output.shape[1] == 1:
            target = xp.reshape(target, (-1, 1))
        if tuple(target.shape) != tuple(output.shape):
            raise ValueError(
                f"xpnet: BinaryCrossEntropy expected targets of the logits' shape "
                f"{tuple(output.shape)}, got {tuple(target.shape)}"
            )
        return xp.astype(target, output.dtype)

    def metric_sums(self, output: Any, target: Any) -> list[Any]:
        xp = namespace_of(output, target)
        target = self._targets(xp, output, target)
        hits = xp.astype((output > 0) == (target > 0.5), output.dtype)
        # Per-row shares of correct outputs, summed: divided by the rows the loop saw, that
        # is the element-wise accuracy.
        return [xp.sum(hits) / output.shape[1]]

    def forward(self, output: Any, target: Any) -> Any:
        xp = namespace_of(output, target)
        target = self._targets(xp, output, target)
        k = get_kernels(xp)
        self._probs = k.sigmoid(output)
        self._target = target
        self._size = 1
        for d in output.shape:
            self._size *= int(d)
        losses = xp.maximum(output, 0.0) - output * target + xp.log1p(xp.exp(-xp.abs(output)))
        return xp.sum(losses) / self._size

    def backward(self) -> Any:
        return (self._probs - self._target) * (1.0 / self._size)


class MeanSquaredError(Loss):
    """Mean over all elements of ``(output - target)^2``; gradient ``2 (output - target) / size``.

    A 1-D target is treated as one column, matching a model with one output.
    """

    name = "mean_squared_error"

    def forward(self, output: Any, target: Any) -> Any:
        xp = namespace_of(output, target)
        if target.ndim == 1 and output.ndim == 2 and output.shape[1] == 1:
            target = xp.reshape(target, (-1, 1))
        if tuple(target.shape) != tuple(output.shape):
            raise ValueError(
                f"xpnet: MeanSquaredError expected targets of shape {tuple(output.shape)}, "
                f"got {tuple(target.shape)}"
            )
        self._diff = output - xp.astype(target, output.dtype)
        self._size = 1
        for d in output.shape:
            self._size *= int(d)
        return xp.sum(self._diff * self._diff) / self._size

    def backward(self) -> Any:
        return self._diff * (2.0 / self._size)


LOSSES: dict[str, type[Loss]] = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
}


def get_loss(loss: str | Loss | None) -> Loss:
    """A loss instance from a name, an instance, or ``None`` (softmax cross-entropy)."""
    if loss is None:
        return SoftmaxCrossEntropy()
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]()
    raise ValueError(
        f"xpnet: unknown loss {loss!r}; valid losses are: {', '.join(sorted(LOSSES))} "
        "or a Loss instance"
    )
