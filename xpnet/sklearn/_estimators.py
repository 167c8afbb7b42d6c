"""The two estimators: :class:`MLPClassifier` and :class:`MLPRegressor`."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from ..validation import check_choice
from ._base import _BaseMLP
from ._helpers import output_activation, with_weights

__all__ = ["MLPClassifier", "MLPRegressor"]

_PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "identity", "leaky_relu", "gelu", "silu"}, \
default "relu"
        Activation after each hidden layer (``"sigmoid"`` is accepted for ``"logistic"``);
        ``"gelu"`` and ``"silu"`` are xpnet's, beyond scikit-learn's four.
    solver : {"adam", "sgd", "lbfgs", "adamw", "rmsprop"}, default "adam"
        ``"adam"`` and ``"sgd"`` update as scikit-learn's do; ``"lbfgs"`` is SciPy's
        L-BFGS-B on the full batch; ``"adamw"`` and ``"rmsprop"`` are xpnet's optimizers.
    learning_rate_init : float, default 1e-3
        Initial learning rate of the stochastic solvers.
    batch_size : int or "auto", default "auto"
        Samples per update; ``"auto"`` is ``min(200, n_samples)``.
    max_iter : int, default 200
        Maximum epochs (stochastic solvers) or iterations (L-BFGS).
    alpha : float, default 1e-4
        L2 penalty: ``alpha * W / sum(w)`` on each weight gradient, as scikit-learn does.
    random_state : int, RandomState instance or None, default None
        Seeds the initial weights (scikit-learn's draws), the shuffles and the split.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` (stratified for single-label classification) and
        stop when its score has not improved by ``tol`` for ``n_iter_no_change`` epochs;
        the best epoch's weights are kept.
    validation_fraction : float, default 0.1
        Share of the training data held out with ``early_stopping``.
    n_iter_no_change : int or numpy.inf, default 10
        Epochs without an improvement of ``tol`` before stopping (or, with
        ``learning_rate="adaptive"``, dividing the rate by 5).
    tol : float, default 1e-4
        Improvement that counts as progress; L-BFGS's gradient tolerance.
    verbose : bool, default False
        Print the loss after each epoch.
    warm_start : bool, default False
        Continue from the previous fit's weights.
    backend : {"numpy", "cupy", "array_api_strict"}, default "numpy"
        Where the network trains.
    dtype : {"float32", "float64"} or None, default None
        The network's floating type; None follows ``X`` (float32 stays float32, anything
        else is float64), as scikit-learn does.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        SGD's schedule: ``invscaling`` is ``learning_rate_init / (t_ + 1) ** power_t``.
    power_t : float, default 0.5
        Exponent of ``invscaling``.
    shuffle : bool, default True
        Shuffle the samples each epoch.
    momentum : float, default 0.9
        SGD's momentum.
    nesterovs_momentum : bool, default True
        Nesterov's momentum for SGD.
    beta_1, beta_2 : float, default 0.9, 0.999
        Adam's moment decays.
    epsilon : float, default 1e-8
        Adam's epsilon, added to the uncorrected ``sqrt(v)`` as scikit-learn does.
    max_fun : int, default 15000
        L-BFGS's limit on loss evaluations.
    norm : {"none", "batch", "layer"}, default "none"
        A BatchNorm or LayerNorm after each hidden Dense, before its activation, as
        :func:`xpnet.recipe.build_model` places them. ``coefs_`` and ``intercepts_`` stay the
        Dense weights. ``"batch"`` is refused with ``solver="lbfgs"`` (each function
        evaluation would move the running statistics).
    clip_norm : float or None, default None
        Clip the gradients to this global L2 norm before each update of a stochastic solver
        (the optimizer's ``clip_norm``); L-BFGS ignores it, as it ignores ``momentum``.
"""

_ATTRIBUTES = """
    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Host copies of the weights and biases, layer by layer (settable).
    n_layers_, n_outputs_ : int
        Layers including input and output; output units.
    out_activation_ : str
        ``"softmax"``, ``"logistic"``, ``"identity"`` or ``"exp"``.
    model_ : xpnet.Sequential
        The trained network (its last layer is linear; the output activation is applied
        by the estimator).
    loss_ : float
        The last epoch's loss (L-BFGS: the final loss), with the L2 term.
    loss_curve_ : list of float
        Loss after each epoch (stochastic solvers).
    best_loss_, validation_scores_, best_validation_score_
        As scikit-learn's.
    n_iter_ : int
        Epochs (iterations) run by the last ``fit`` call.
    t_ : int
        Training samples seen.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        """A multi-layer perceptron classifier trained by xpnet, with scikit-learn's interface.

    Softmax outputs for more than two classes, one logistic output for two (or one) classes,
    a logistic output per label for multi-label indicator ``y``.
    """
        + _PARAMETERS
        + """    label_smoothing : float in [0, 1), default 0.0
        The softmax output (more than two classes) trains against
        ``(1 - s) onehot + s / n_classes``, as :class:`xpnet.losses.SoftmaxCrossEntropy`
        does; a logistic output (binary, or each label of multi-label ``y``) is a two-class
        problem and trains against ``(1 - s) y + s / 2``.
"""
        + _ATTRIBUTES
        + """    classes_ : ndarray
        The class labels.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from xpnet.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=500,
    ...                     random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """
    )

    _is_classifier = True
    classes_: np.ndarray
    _label_binarizer: LabelBinarizer

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        solver: str = "adam",
        learning_rate_init: float = 1e-3,
        batch_size: int | str = "auto",
        max_iter: int = 200,
        alpha: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | float = 10,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        backend: str = "numpy",
        dtype: str | None = None,
        learning_rate: str = "constant",
        power_t: float = 0.5,
        shuffle: bool = True,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        max_fun: int = 15000,
        norm: str = "none",
        clip_norm: float | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            learning_rate_init=learning_rate_init,
            batch_size=batch_size,
            max_iter=max_iter,
            alpha=alpha,
            random_state=random_state,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            backend=backend,
            dtype=dtype,
            learning_rate=learning_rate,
            power_t=power_t,
            shuffle=shuffle,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            max_fun=max_fun,
            norm=norm,
            clip_norm=clip_norm,
        )
        self.label_smoothing = label_smoothing

    def _encode_targets(
        self, y: np.ndarray, incremental: bool, classes: Any
    ) -> tuple[np.ndarray, str]:
        check_classification_targets(y)
        have = hasattr(self, "classes_") and hasattr(self, "_label_binarizer")
        lb: LabelBinarizer
        if incremental and classes is not None:
            wanted = unique_labels(classes)
            if have and not np.array_equal(wanted, self.classes_):
                raise ValueError(
                    f"xpnet: `classes={classes!r}` is not the same as on last call to "
                    f"partial_fit, was: {self.classes_!r}"
                )
        if incremental and not have:
            if classes is None:
                raise ValueError("xpnet: classes must be passed on the first call to partial_fit")
            lb = LabelBinarizer()
            lb.fit(y if type_of_target(y).startswith("multilabel") else classes)
        elif not have or (not self.warm_start and not incremental):
            lb = LabelBinarizer().fit(y)
        else:
            lb = self._label_binarizer
            seen = unique_labels(y)
            if self.warm_start and not incremental and set(seen) != set(lb.classes_):
                raise ValueError(
                    "xpnet: warm_start can only be used where `y` has the same classes as in "
                    f"the previous call to fit. Previously got {lb.classes_}, `y` has {seen}"
                )
        if incremental:
            extra = np.setdiff1d(unique_labels(y), lb.classes_)
            if len(extra):
                raise ValueError(
                    f"xpnet: `y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{lb.classes_}. 'y' has {unique_labels(y)}."
                )
        Y = lb.transform(y)
        self._label_binarizer = lb
        self.classes_ = lb.classes_
        return Y, ("softmax" if lb.y_type_ == "multiclass" else "logistic")

    def _loss_targets(self, Y: np.ndarray, sw: np.ndarray | None) -> np.ndarray:
        if self.out_activation_ == "softmax":
            return with_weights(np.argmax(Y, axis=1).astype(np.int64), sw)
        return with_weights(np.asarray(Y, dtype=np.float64), sw)

    def _stratify(self, Y: np.ndarray) -> np.ndarray | None:
        if self._label_binarizer.y_type_.startswith("multilabel"):
            return None  # scikit-learn does not stratify multi-label targets
        if Y.shape[1] == 1:
            return Y.astype(bool)  # as scikit-learn stratifies the binary case
        return self.classes_[np.argmax(Y, axis=1)]

    def _split_error(self, exc: ValueError) -> ValueError:
        if "least populated" in str(exc) and len(self.classes_) == 2:
            # The binary target is one indicator column: name the label it stands for.
            return ValueError(f"{exc} ('True' is the label {self.classes_[1:].tolist()[0]!r})")
        return exc

    def _validation_truth(self, Y_val: np.ndarray) -> Any:
        return self._label_binarizer.inverse_transform(Y_val)

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        if self.out_activation_ == "softmax":
            return self.classes_[np.argmax(raw, axis=1)]
        p = output_activation("logistic", raw)
        return self._label_binarizer.inverse_transform(p.ravel() if p.shape[1] == 1 else p)

    def _score_outputs(self, raw: np.ndarray, y: Any, sw: np.ndarray | None) -> float:
        return float(accuracy_score(y, self._decode(raw), sample_weight=sw))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features; dense or SciPy sparse) and labels ``y``
        (n_samples,) or a multi-label indicator matrix; ``sample_weight`` weights each
        sample's loss. Emits ConvergenceWarning when ``max_iter`` ran out.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """Train one epoch over ``(X, y)``, continuing from the current weights.

        ``classes`` (all labels that will ever appear) is required on the first call.
        Not available with ``solver="lbfgs"``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order
        (multi-label: each label's probability)."""
        check_is_fitted(self)
        p = output_activation(self.out_activation_, self._raw(X))
        if p.shape[1] == 1:
            p = p.ravel()
            return np.vstack([1 - p, p]).T
        return p

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (or label indicators for multi-label ``y``)."""
        check_is_fitted(self)
        return self._decode(self._raw(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` (subset accuracy for multi-label)."""
        return float(super().score(X, y, sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        """A multi-layer perceptron regressor trained by xpnet, with scikit-learn's interface.

    ``loss="squared_error"`` (half the squared error, identity output) or ``"poisson"``
    (half the Poisson deviance, exponential output). :meth:`predict` returns (n_samples,)
    for one output, else (n_samples, n_outputs).
    """
        + _PARAMETERS
        + """    loss : {"squared_error", "poisson"}, default "squared_error"
        The loss minimised.
"""
        + _ATTRIBUTES
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.sklearn import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=200,
    ...                    random_state=0).fit(X, y)
    >>> reg.predict(X[:4]).shape
    (4,)
    >>> reg.score(X, y) > 0.95
    True
    """
    )

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        solver: str = "adam",
        learning_rate_init: float = 1e-3,
        batch_size: int | str = "auto",
        max_iter: int = 200,
        alpha: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | float = 10,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        backend: str = "numpy",
        dtype: str | None = None,
        learning_rate: str = "constant",
        power_t: float = 0.5,
        shuffle: bool = True,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        max_fun: int = 15000,
        norm: str = "none",
        clip_norm: float | None = None,
        loss: str = "squared_error",
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            learning_rate_init=learning_rate_init,
            batch_size=batch_size,
            max_iter=max_iter,
            alpha=alpha,
            random_state=random_state,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            backend=backend,
            dtype=dtype,
            learning_rate=learning_rate,
            power_t=power_t,
            shuffle=shuffle,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            max_fun=max_fun,
            norm=norm,
            clip_norm=clip_norm,
        )
        self.loss = loss

    def _encode_targets(
        self, y: np.ndarray, incremental: bool, classes: Any
    ) -> tuple[np.ndarray, str]:
        check_choice("loss", self.loss, ("squared_error", "poisson"))
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if self.loss == "poisson":
            if (Y < 0).any():
                raise ValueError(
                    f"xpnet: loss='poisson' needs non-negative targets, got a minimum of "
                    f"{float(Y.min())}"
                )
            return Y, "exp"
        return Y, "identity"

    def _score_outputs(self, raw: np.ndarray, y: Any, sw: np.ndarray | None) -> float:
        pred = output_activation(self.out_activation_, raw)
        return float(r2_score(y, pred, sample_weight=sw))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features; dense or SciPy sparse) and targets ``y``
        (n_samples[, n_outputs]); ``sample_weight`` weights each sample's loss.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train one epoch over ``(X, y)``, continuing from the current weights.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets: (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        out = output_activation(self.out_activation_, self._raw(X))
        return out[:, 0] if out.shape[1] == 1 else out

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R² of :meth:`predict` on ``X`` against ``y``."""
        return float(super().score(X, y, sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags
