"""scikit-learn's MLP losses, as xpnet :class:`~xpnet.losses.Loss` objects on the output logits.

Each takes the last layer's linear output ``z`` and applies scikit-learn's output activation
inside the loss (softmax, logistic, identity, exp), so that the gradient is the canonical
``(activation(z) - y) / n`` scikit-learn back-propagates. With ``weighted=True`` the targets
carry the sample weights as their last column (they travel through the training loop's
shuffle and batching with their rows) and the batch loss is ``sum(w * loss) / sum(w)``.

These are private to the estimators. The logistic loss is xpnet's public
:class:`~xpnet.losses.BinaryCrossEntropy` (its formula and its sigmoid), with what
scikit-learn's semantics add: the sum over the outputs and the sample weights.
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace_of
from ..kernels import get_kernels
from ..losses import BinaryCrossEntropy, Loss, _one_hot

__all__ = ["LOSS_KINDS", "HalfSquaredError", "LogisticLoss", "PoissonLoss", "SoftmaxLogLoss"]


class _SklearnLoss(Loss):
    """Splits weighted targets and keeps the batch's normaliser for the L2 hook."""

    #: scikit-learn's name for the activation applied to the logits.
    out_activation = "identity"

    def __init__(self, weighted: bool = False) -> None:
        self.weighted = bool(weighted)
        #: ``1 / sum(w)`` of the last batch (``1 / n`` unweighted): the factor of
        #: scikit-learn's L2 gradient ``alpha * W / sum(w)``.
        self.inverse_weight_sum: Any = 1.0  # pragma: no mutate
        #: Rows of the last batch (scikit-learn weights each batch's L2 term by them).
        self.batch_rows = 0  # pragma: no mutate
        self._delta: Any = None

    def _split(self, output: Any, target: Any) -> tuple[Any, Any, Any]:
        """``(xp, targets, per-row scale)``: the scale is ``w / sum(w)`` or ``1 / n``."""
        xp = namespace_of(output, target)
        n = int(output.shape[0])
        self.batch_rows = n
        if not self.weighted:
            self.inverse_weight_sum = 1.0 / n
            return xp, target, 1.0 / n
        w = xp.astype(target[:, -1], output.dtype)
        inv = 1.0 / xp.sum(w)
        self.inverse_weight_sum = inv
        return xp, target[:, :-1], xp.reshape(w * inv, (-1, 1))

    def _finish(self, xp: Any, per_element: Any, scale: Any) -> Any:
        return xp.sum(per_element * scale)

    def backward(self) -> Any:
        return self._delta

    def __repr__(self) -> str:
        smoothing = getattr(self, "label_smoothing", 0.0)
        extra = f", label_smoothing={smoothing!r}" if smoothing else ""
        return f"{type(self).__name__}(weighted={self.weighted!r}{extra})"


class SoftmaxLogLoss(_SklearnLoss):
    """Softmax and the multinomial log loss; targets are class indices (n,).

    ``label_smoothing`` ``s`` trains against ``(1 - s) onehot + s / C``, as
    :class:`~xpnet.losses.SoftmaxCrossEntropy` does.
    """

    name = "sklearn_log_loss"
    out_activation = "softmax"

    def __init__(self, weighted: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(weighted)
        self.label_smoothing = float(label_smoothing)

    def target_dtype(self, model_dtype: str, target_ndim: int = 1) -> str:
        return model_dtype if self.weighted else "int64"

    def forward(self, output: Any, target: Any) -> Any:
        xp, labels, scale = self._split(output, target)
        if self.weighted:
            labels = xp.astype(labels[:, 0], xp.int64)
        c = int(output.shape[1])
        onehot = _one_hot(xp, labels, c, output.dtype)
        if self.label_smoothing:
            s = self.label_smoothing
            onehot = (1.0 - s) * onehot + s / c
        log_probs, probs = get_kernels(xp).log_softmax_with_probs(output)
        self._delta = (probs - onehot) * scale
        return -self._finish(xp, onehot * log_probs, scale)


class LogisticLoss(_SklearnLoss, BinaryCrossEntropy):
    """A logistic unit per output and the binary log loss, summed over the outputs; targets
    are 0/1 indicators (n, outputs): scikit-learn's binary and multi-label case.

    The per-element loss and the sigmoid are :class:`~xpnet.losses.BinaryCrossEntropy`'s;
    scikit-learn sums over the ``k`` outputs where that loss averages, so the unweighted loss
    and gradient are ``k`` times its. With sample weights the gradient is the public
    loss's ``sigmoid(z) - y`` weighted per row, and the value weights the element losses.
    ``label_smoothing`` ``s`` trains each output against ``(1 - s) y + s / 2``.
    """

    name = "sklearn_binary_log_loss"
    out_activation = "logistic"
    # The targets may carry the weights as a last column: the public loss's target checks
    # and accuracy metric do not apply to them, and the estimators score on their own.
    multi_label = Loss.multi_label
    check_targets = Loss.check_targets
    metric_names = Loss.metric_names
    metric_sums = Loss.metric_sums

    def __init__(self, weighted: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(weighted)
        self.label_smoothing = float(label_smoothing)

    def forward(self, output: Any, target: Any) -> Any:
        xp, t, scale = self._split(output, target)
        k = int(output.shape[1])
        if self.label_smoothing:
            # Each output is a two-class problem: ``(1 - s) y + s / 2``, the softmax rule
            # with C = 2.
            s = self.label_smoothing
            t = (1.0 - s) * xp.astype(t, output.dtype) + 0.5 * s
        if not self.weighted:
            value = BinaryCrossEntropy.forward(self, output, t) * k
            self._delta = BinaryCrossEntropy.backward(self) * k
            return value
        # The public loss returns only the mean over all elements, and row weights need the
        # per-element losses: this is the one place the element formula is restated.
        BinaryCrossEntropy.forward(self, output, t)
        z, y = output, self._target
        per_element = xp.maximum(z, 0.0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
        self._delta = (self._probs - y) * scale
        return self._finish(xp, per_element, scale)


class HalfSquaredError(_SklearnLoss):
    """scikit-learn's ``squared_error``: half the squared error, summed over the outputs."""

    name = "sklearn_squared_error"
    out_activation = "identity"

    def forward(self, output: Any, target: Any) -> Any:
        xp, t, scale = self._split(output, target)
        diff = output - xp.astype(t, output.dtype)
        self._delta = diff * scale
        return 0.5 * self._finish(xp, diff * diff, scale)


class PoissonLoss(_SklearnLoss):
    """scikit-learn's ``poisson``: half the Poisson deviance with the log link, prediction
    ``exp(z)``; the loss is ``y log(y / exp(z)) - y + exp(z)``, as scikit-learn reports it."""

    name = "sklearn_poisson"
    out_activation = "exp"

    def forward(self, output: Any, target: Any) -> Any:
        xp, t, scale = self._split(output, target)
        t = xp.astype(t, output.dtype)
        mu = xp.exp(output)
        ylogy = t * xp.log(xp.where(t > 0, t, xp.ones_like(t)))
        self._delta = (mu - t) * scale
        return self._finish(xp, ylogy - t * output - t + mu, scale)


LOSS_KINDS: dict[str, type[_SklearnLoss]] = {
    "softmax": SoftmaxLogLoss,
    "logistic": LogisticLoss,
    "identity": HalfSquaredError,
    "exp": PoissonLoss,
}
