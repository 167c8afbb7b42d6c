"""scikit-learn estimators backed by xpnet: :class:`MLPClassifier` and :class:`MLPRegressor`.

They follow the interface of :class:`sklearn.neural_network.MLPClassifier` and
:class:`~sklearn.neural_network.MLPRegressor` (hyperparameter names, ``loss_curve_``,
``n_iter_``, ``best_loss_``, early stopping, ``partial_fit``, ``ConvergenceWarning``), so they
drop into pipelines, grid searches and ``clone``, while the network underneath is an
:class:`xpnet.Sequential` that can train on NumPy or, with ``backend="cupy"``, on a GPU.

This is the only xpnet module that imports scikit-learn; install it with
``pip install "xpnet[sklearn]"``.

Differences from scikit-learn's MLP
-----------------------------------
* The L2 penalty ``alpha`` is applied as scikit-learn applies it: each weight matrix's
  gradient gains ``alpha * W / n_batch`` (biases are not penalised), which is the gradient of
  ``alpha * ||W||^2 / (2 n_batch)`` added to the batch loss: an
  :class:`xpnet.optimizers.L2Penalty` hook on the optimizer while the estimator trains. It is
  *not* the optimizer's ``weight_decay``.
* Training is one :meth:`xpnet.Sequential.fit` call; the stopping rules (``tol``,
  ``n_iter_no_change``, ``early_stopping``) are a callback on it.
* A classifier always has one softmax output per class (scikit-learn uses one logistic unit
  for two classes); the predictions and probabilities are the same function.
* The regressor minimises xpnet's :class:`~xpnet.losses.MeanSquaredError`, the mean of the
  squared errors, where scikit-learn minimises half of it; ``loss_curve_`` reports xpnet's.
* ``solver`` takes ``"adam"``, ``"sgd"`` (momentum 0.9 with Nesterov, scikit-learn's
  defaults), ``"adamw"`` and ``"rmsprop"``; there is no ``"lbfgs"``.
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .backend import BACKEND_NAMES, namespace_of, to_numpy
from .callbacks import EarlyStopping, ModelState
from .io.arrays import buffer_arrays, restore_buffers
from .layers import Dense
from .layers.activations import normalize_activation
from .losses import Loss, MeanSquaredError, SoftmaxCrossEntropy
from .model import Sequential
from .optimizers import OPTIMIZERS, SGD, Adam, AdamW, L2Penalty, Optimizer, RMSProp
from .validation import (
    check_choice,
    check_non_negative,
    check_number,
    check_positive,
    check_positive_int,
)

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names, mapped to xpnet's (None: a linear layer).
_SKLEARN_ACTIVATIONS: dict[str, str | None] = {
    "identity": None,
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
}
_HIDDEN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu", "sigmoid")
_SOLVERS = ("adam", "sgd", "adamw", "rmsprop")
_PREDICT_BATCH = 1024


# --------------------------------------------------------------------------- training helpers
class _SklearnStopping(EarlyStopping):
    """scikit-learn's stopping rules as a callback on :meth:`Sequential.fit`.

    After each epoch it records ``loss_curve_`` (the epoch's loss plus the L2 term), then
    either the validation score (``early_stopping``: ``validation_scores_``,
    ``best_validation_score_``, the best epoch's state kept and put back when training ends)
    or the training loss (``best_loss_``), counting epochs without an improvement of ``tol``;
    more than ``n_iter_no_change`` of them stop training.
    """

    def __init__(
        self,
        estimator: _BaseMLP,
        n: int,
        n_batches: int,
        validation: tuple[np.ndarray, np.ndarray] | None,
        incremental: bool,
    ) -> None:
        super().__init__(monitor="loss", restore_best_weights=validation is not None)
        self.estimator = estimator
        self.n, self.n_batches = n, n_batches
        self.validation = validation
        self.incremental = incremental
        self.converged = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.converged = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        est = self.estimator
        est.n_iter_ += 1
        est.t_ += self.n
        value = float((logs or {})["loss"]) + est._penalty(self.n_batches, self.n)
        est.loss_curve_.append(value)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {value:.8f}")
        if self.validation is not None:
            if est._update_validation(est._validation_score(*self.validation)):
                self.best_epoch = epoch
                if self.best_state is None:
                    self.best_state = ModelState(self.model)
                else:
                    self.best_state.update()
        else:
            est._update_loss_progress(value)
        if self.incremental or est._no_improvement_count <= est.n_iter_no_change:
            return
        if est.verbose:
            what = "Validation score" if self.validation is not None else "Training loss"
            print(
                f"{what} did not improve more than tol={est.tol} for "
                f"{est.n_iter_no_change} consecutive epochs. Stopping."
            )
        self.converged = True
        self.stopped_epoch = epoch
        self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # scikit-learn keeps the best validation epoch's weights however training ended.
        if self.best_state is not None:
            self.best_state.restore()


def _make_optimizer(solver: str, lr: float) -> Optimizer:
    if solver == "sgd":
        return SGD(lr=lr, momentum=0.9, nesterov=True)
    if solver == "adamw":
        return AdamW(lr=lr)
    if solver == "rmsprop":
        return RMSProp(lr=lr)
    return Adam(lr=lr)


def _raw_output(model: Sequential, X: np.ndarray) -> np.ndarray:
    """The network's outputs for ``X`` (host in, host out), in batches."""
    Xd = model.backend.asarray(X, dtype=model.dtype)
    xp = namespace_of(Xd)
    n = int(Xd.shape[0])
    outs = [
        model.forward(Xd[i : min(i + _PREDICT_BATCH, n), ...], training=False)
        for i in range(0, n, _PREDICT_BATCH)
    ]
    out = outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
    return np.asarray(to_numpy(out), dtype=np.float64)


def _model_to_plain(model: Sequential) -> dict[str, Any]:
    """Everything needed to rebuild ``model``, as plain Python and NumPy values."""
    params = model.parameters()
    opt = model.optimizer
    return {
        "config": model.get_config(),
        "seed": model.seed,
        "backend": model.backend.name,
        "weights": model.get_weights(),
        "buffers": buffer_arrays(model),
        "optimizer": None if opt is None else opt.state_dict(params),
    }


def _model_from_plain(plain: dict[str, Any]) -> Sequential:
    config = plain.get("config")
    if config is None:  # pickled by xpnet 0.1.0, before Sequential.get_config
        layers = [{"kind": kind, "config": conf} for kind, conf in plain["layers"]]
        config = {"dtype": plain["dtype"], "layers": layers}
    model = Sequential.from_config(config, backend=plain["backend"], seed=plain["seed"])
    model.set_weights(plain["weights"])
    restore_buffers(model, plain.get("buffers", {}))
    opt_state = plain["optimizer"]
    if opt_state is not None:
        opt = OPTIMIZERS[opt_state["name"]](**opt_state["hyperparameters"])
        opt.load_state_dict(opt_state, model.parameters())
        model.optimizer = opt
    return model


# --------------------------------------------------------------------------- the estimators
class _BaseMLP(BaseEstimator):
    """Shared hyperparameters and training loop of the two estimators."""

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        solver: Literal["adam", "sgd", "adamw", "rmsprop"] = "adam",
        learning_rate_init: float = 1e-3,
        batch_size: int | Literal["auto"] = "auto",
        max_iter: int = 200,
        alpha: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        backend: str = "numpy",
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.alpha = alpha
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.backend = backend
        self.dtype = dtype

    # ---- hooks the subclasses fill in
    def _plain_loss(self) -> Loss:
        raise NotImplementedError

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    # ---- validation of hyperparameters (in fit, never in __init__: scikit-learn's rule)
    def _hidden_sizes(self) -> list[int]:
        given: Any = self.hidden_layer_sizes
        if isinstance(given, numbers.Integral) and not isinstance(given, bool):
            given = (int(given),)
        try:
            sizes = list(given)
        except TypeError:
            sizes = [None]
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(
                "xpnet: hidden_layer_sizes must be a positive integer or a sequence of positive "
                f"integers, got {self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in sizes]

    def _check_hyperparameters(self) -> None:
        # Checks only: scikit-learn estimators keep their parameters exactly as given.
        self._hidden_sizes()
        check_choice("activation", self.activation, _HIDDEN_ACTIVATIONS)
        check_choice("solver", self.solver, _SOLVERS)
        check_positive("learning_rate_init", self.learning_rate_init)
        check_non_negative("alpha", self.alpha)
        check_non_negative("tol", self.tol)
        check_number(
            "validation_fraction",
            self.validation_fraction,
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        )
        check_positive_int("max_iter", self.max_iter)
        check_positive_int("n_iter_no_change", self.n_iter_no_change)
        if self.batch_size != "auto":
            check_positive_int("batch_size", self.batch_size)
        check_choice("backend", self.backend, BACKEND_NAMES)
        check_choice("dtype", self.dtype, ("float32", "float64"))

    def _batch_size_for(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(
                f"xpnet: batch_size={self.batch_size} is larger than the {n} training samples; "
                f"using {n}",
                UserWarning,
                stacklevel=5,
            )
            return n
        return int(self.batch_size)

    def _seed(self) -> int | None:
        if self.random_state is None or isinstance(self.random_state, numbers.Integral):
            return None if self.random_state is None else int(self.random_state)
        # A RandomState instance: draw the model's seed from it, as scikit-learn does.
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _new_model(self, n_features: int, n_outputs: int, seed: int | None) -> Sequential:
        act_name = _SKLEARN_ACTIVATIONS.get(self.activation, self.activation)
        act = normalize_activation(act_name)
        widths = [n_features, *self._hidden_sizes()]
        layers = [Dense(a, b, activation=act) for a, b in itertools.pairwise(widths)]
        layers.append(Dense(widths[-1], n_outputs))
        return Sequential(layers, dtype=self.dtype, seed=seed, backend=self.backend)

    # ---- the training loop
    def _initialize(self, n_features: int, n_outputs: int) -> None:
        seed = self._seed()
        self._split_seed = seed
        self.model_ = self._new_model(n_features, n_outputs, seed)
        self.model_.optimizer = _make_optimizer(self.solver, float(self.learning_rate_init))
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _train(self, X: np.ndarray, y: np.ndarray, *, incremental: bool) -> None:
        """Run epochs on encoded targets ``y`` (class indices or real values) through
        :meth:`Sequential.fit`, with scikit-learn's stopping rules and L2 term as a callback
        and an optimizer hook."""
        validation = None
        if self.early_stopping and not incremental:
            stratify = y if isinstance(self, ClassifierMixin) else None
            X, X_val, y, y_val = train_test_split(
                X,
                y,
                random_state=self._split_seed,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
            validation = (X_val, y_val)
        model = self.model_
        n = int(X.shape[0])
        batch_size = self._batch_size_for(n)
        if model.optimizer is None:
            model.optimizer = _make_optimizer(self.solver, float(self.learning_rate_init))
        opt = model.optimizer
        hook = L2Penalty(float(self.alpha)) if self.alpha > 0 else None
        rules = _SklearnStopping(self, n, -(-n // batch_size), validation, incremental)
        if hook is not None:
            opt.add_hook(hook)
        try:
            history = model.fit(
                X,
                y,
                epochs=1 if incremental else int(self.max_iter),
                batch_size=batch_size,
                optimizer=opt,
                loss=self._plain_loss(),
                callbacks=[rules],
            )
        finally:
            # Leave a plain optimizer behind, for save() and later fits.
            if hook is not None:
                opt.hooks.remove(hook)
        if not (incremental or rules.converged or history.interrupted):
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _penalty(self, n_batches: int, n: int) -> float:
        """scikit-learn's epoch loss includes ``alpha ||W||^2 / (2 n_batch)`` per batch."""
        if self.alpha == 0:
            return 0.0
        weights = [p.data for p in self.model_.parameters() if p.name == "W"]
        xp = namespace_of(*weights)
        total = sum((xp.sum(w * w) for w in weights), xp.zeros((), dtype=weights[0].dtype))
        return 0.5 * float(self.alpha) * float(total) * n_batches / n

    def _update_loss_progress(self, value: float) -> None:
        assert self.best_loss_ is not None
        if value > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        self.best_loss_ = min(self.best_loss_, value)

    def _update_validation(self, score: float) -> bool:
        """Record a validation score; return True when it is the best so far."""
        assert self.validation_scores_ is not None and self.best_validation_score_ is not None
        self.validation_scores_.append(score)
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            return True
        return False

    def _host_weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        weights = self.model_.get_weights()
        return weights[0::2], weights[1::2]

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Host copies of the weight matrices, layer by layer (shape (in, out))."""
        check_is_fitted(self, "model_")
        return self._host_weights()[0]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Host copies of the bias vectors, layer by layer."""
        check_is_fitted(self, "model_")
        return self._host_weights()[1]

    # ---- pickling goes through plain arrays and configs, never through xpnet objects
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            state["_model_plain"] = _model_to_plain(model)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        plain = state.pop("_model_plain", None)
        super().__setstate__(state)
        if plain is not None:
            self.model_ = _model_from_plain(plain)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by xpnet, with scikit-learn's interface.

    The network is ``Dense -> activation`` for each entry of ``hidden_layer_sizes``, then a
    linear ``Dense`` with one output per class, trained with
    :class:`~xpnet.losses.SoftmaxCrossEntropy` by :meth:`xpnet.Sequential.fit`; a callback
    applies ``tol``, ``n_iter_no_change`` and ``early_stopping`` after each epoch, as
    :class:`sklearn.neural_network.MLPClassifier` does.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "identity", "leaky_relu"}, default "relu"
        Activation after each hidden layer (``"sigmoid"`` is accepted for ``"logistic"``).
    solver : {"adam", "sgd", "adamw", "rmsprop"}, default "adam"
        The xpnet optimizer; ``"sgd"`` uses momentum 0.9 with Nesterov, as scikit-learn does.
    learning_rate_init : float, default 1e-3
        The optimizer's learning rate (constant).
    batch_size : int or "auto", default "auto"
        Samples per update; ``"auto"`` is ``min(200, n_samples)``.
    max_iter : int, default 200
        Maximum number of epochs for :meth:`fit`.
    alpha : float, default 1e-4
        L2 penalty, applied as scikit-learn does: ``alpha * W / n_batch`` is added to each
        weight matrix's gradient (biases are not penalised).
    random_state : int, RandomState instance or None, default None
        Seed of the network's initial weights, the shuffles and the validation split.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data (stratified) and stop when its
        accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs; the weights of
        the best epoch are kept.
    validation_fraction : float, default 0.1
        Share of the training data held out when ``early_stopping`` is on.
    n_iter_no_change : int, default 10
        Epochs without an improvement of at least ``tol`` before training stops.
    tol : float, default 1e-4
        Improvement of the training loss (or validation score) that counts as progress.
    verbose : bool, default False
        Print the loss after each epoch.
    warm_start : bool, default False
        Continue from the previous fit's weights instead of starting afresh.
    backend : {"numpy", "cupy", "array_api_strict"}, default "numpy"
        Where the network is trained.
    dtype : {"float32", "float64"}, default "float32"
        Floating type of the network.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted; column ``j`` of :meth:`predict_proba` is ``classes_[j]``.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` had string column names.
    model_ : xpnet.Sequential
        The trained network (save it with ``model_.save``).
    loss_curve_ : list of float
        Training loss (including the L2 term) after each epoch.
    best_loss_ : float or None
        Lowest training loss seen; ``None`` with early stopping.
    validation_scores_ : list of float or None
        Held-out accuracy after each epoch with early stopping, else ``None``.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.

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

    def _plain_loss(self) -> Loss:
        return SoftmaxCrossEntropy()

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.model_.predict(X) == y))

    def _encode(self, y: np.ndarray) -> np.ndarray:
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"xpnet: y contains labels {unknown.tolist()} that are not among the classes "
                f"{self.classes_.tolist()} of the first fit/partial_fit call"
            )
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _fit(self, X: Any, y: Any, *, incremental: bool, classes: Any = None) -> MLPClassifier:
        self._check_hyperparameters()
        continuing = hasattr(self, "model_") and (incremental or self.warm_start)
        X, y = validate_data(
            self, X, y, reset=not continuing, dtype=(np.float64, np.float32), multi_output=False
        )
        check_classification_targets(y)
        if not continuing:
            labels = np.unique(y if classes is None else np.asarray(classes))
            if labels.size < 2:
                raise ValueError(
                    "xpnet: MLPClassifier needs at least 2 classes to train, got 1 class "
                    f"({labels.tolist()})"
                )
            if classes is not None and np.setdiff1d(y, labels).size:
                raise ValueError(
                    f"xpnet: y contains labels {np.setdiff1d(y, labels).tolist()} missing from "
                    f"classes={labels.tolist()}"
                )
            self.classes_ = labels
            self._initialize(int(X.shape[1]), int(labels.size))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"xpnet: classes={np.unique(classes).tolist()} differs from the classes "
                f"{self.classes_.tolist()} of the first partial_fit call"
            )
        elif not incremental and not np.array_equal(np.unique(y), self.classes_):
            raise ValueError(
                "xpnet: warm_start can only be used where y has the same classes as in the "
                f"previous call to fit: previously {self.classes_.tolist()}, "
                f"now {np.unique(y).tolist()}"
            )
        self._train(X, self._encode(y), incremental=incremental)
        return self

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,).

        Starts from fresh weights unless ``warm_start`` is set and the estimator is fitted.
        Emits :class:`~sklearn.exceptions.ConvergenceWarning` when ``max_iter`` epochs ran
        without the stopping criterion being met.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """Train one epoch over ``(X, y)``, continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, optional
            All the labels that will ever appear; required on the first call.

        Returns
        -------
        self
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("xpnet: classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        logits = _raw_output(self.model_, X)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against the labels ``y``."""
        return float(super().score(X, y, sample_weight=sample_weight))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (elements of ``classes_``), shape (n_samples,)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.classes_[np.argmax(_raw_output(self.model_, X), axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by xpnet, with scikit-learn's interface.

    The network is ``Dense -> activation`` for each hidden layer, then a linear ``Dense``
    with one output per target, trained with :class:`~xpnet.losses.MeanSquaredError`.
    The hyperparameters and attributes are those of :class:`MLPClassifier` (without
    ``classes_``); with ``early_stopping`` the validation score is R².

    :meth:`predict` returns shape (n_samples,) when ``y`` was 1-D, else (n_samples, n_outputs).

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

    def _plain_loss(self) -> Loss:
        return MeanSquaredError()

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(r2_score(y, _raw_output(self.model_, X)))

    def _fit(self, X: Any, y: Any, *, incremental: bool) -> MLPRegressor:
        self._check_hyperparameters()
        continuing = hasattr(self, "model_") and (incremental or self.warm_start)
        X, y = validate_data(
            self,
            X,
            y,
            reset=not continuing,
            dtype=(np.float64, np.float32),
            multi_output=True,
            y_numeric=True,
        )
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if not continuing:
            self._initialize(int(X.shape[1]), int(y2.shape[1]))
            self.n_outputs_ = int(y2.shape[1])
            self._y_1d = y.ndim == 1
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"xpnet: y has {y2.shape[1]} outputs but the estimator was fitted with "
                f"{self.n_outputs_}"
            )
        self._train(X, y2, incremental=incremental)
        return self

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and targets ``y`` (n_samples[, n_outputs]).

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train one epoch over ``(X, y)``, continuing from the current weights.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets: (n_samples,) for a 1-D ``y`` in fit, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        out = _raw_output(self.model_, X)
        return out[:, 0] if self._y_1d else out

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R² of :meth:`predict` on ``X`` against ``y``."""
        return float(super().score(X, y, sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
