"""The estimators' shared part: hyperparameters, the network, the two ways of training
(:meth:`Sequential.fit` for the stochastic solvers, L-BFGS), the fitted attributes, pickling."""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ..backend import BACKEND_NAMES
from ..layers.activations import normalize_activation
from ..model import Sequential, _check_fits_dtype
from ..optimizers import AdamW, Optimizer, RMSProp
from ..recipe import NORMS
from ..validation import (
    check_choice,
    check_non_negative,
    check_number,
    check_positive,
    check_positive_int,
)
from ._helpers import (
    check_sample_weight,
    model_from_plain,
    model_to_plain,
    with_weights,
)
from ._lbfgs import LbfgsObjective, fit_lbfgs
from ._losses import LOSS_KINDS, LogisticLoss, SoftmaxLogLoss
from ._network import (
    DenseWeights,
    build_network,
    check_batch_norm_batches,
    dense_slots,
    set_dense_weights,
)
from ._training import (
    KeepGoing,
    SampleL2,
    SklearnAdam,
    SklearnSGD,
    SklearnStopping,
    host_scores,
)

# scikit-learn's activation names, mapped to xpnet's (None: a linear layer).
_SKLEARN_ACTIVATIONS: dict[str, str | None] = {
    "identity": None,
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
}
_HIDDEN_ACTIVATIONS = (
    "identity",
    "logistic",
    "tanh",
    "relu",
    "leaky_relu",
    "sigmoid",
    "gelu",
    "silu",
)
_SOLVERS = ("adam", "sgd", "lbfgs", "adamw", "rmsprop")
_STOCHASTIC = ("adam", "sgd", "adamw", "rmsprop")
_SCHEDULES = ("constant", "invscaling", "adaptive")
_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values "
    "and need to be preprocessed."
)


class _BaseMLP(DenseWeights, BaseEstimator):
    """Shared hyperparameters and training of the two estimators."""

    _is_classifier = False

    # No defaults here: each estimator's own __init__ holds scikit-learn's (the signature
    # get_params reads) and passes every argument on, so a second copy could only drift.
    def __init__(
        self,
        *,
        hidden_layer_sizes: int | tuple[int, ...],
        activation: str,
        solver: str,
        learning_rate_init: float,
        batch_size: int | str,
        max_iter: int,
        alpha: float,
        random_state: int | np.random.RandomState | None,
        early_stopping: bool,
        validation_fraction: float,
        n_iter_no_change: int | float,
        tol: float,
        verbose: bool,
        warm_start: bool,
        backend: str,
        dtype: str | None,
        learning_rate: str,
        power_t: float,
        shuffle: bool,
        momentum: float,
        nesterovs_momentum: bool,
        beta_1: float,
        beta_2: float,
        epsilon: float,
        max_fun: int,
        norm: str,
        clip_norm: float | None,
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
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.shuffle = shuffle
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_fun = max_fun
        self.norm = norm
        self.clip_norm = clip_norm

    # ---- what the subclasses fill in
    def _encode_targets(
        self, y: np.ndarray, incremental: bool, classes: Any
    ) -> tuple[np.ndarray, str]:
        """``(Y, out_activation)``: 2-D targets as scikit-learn trains on them."""
        raise NotImplementedError

    def _loss_targets(self, Y: np.ndarray, sw: np.ndarray | None) -> np.ndarray:
        """The host targets of the private loss for 2-D targets ``Y``."""
        return with_weights(np.asarray(Y, dtype=np.float64), sw)

    def _score_outputs(self, raw: np.ndarray, y: Any, sw: np.ndarray | None) -> float:
        raise NotImplementedError

    def _stratify(self, Y: np.ndarray) -> np.ndarray | None:
        return None

    # ---- hyperparameters (checked in fit, never in __init__: scikit-learn's rule)
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
        check_choice("learning_rate", self.learning_rate, _SCHEDULES)
        check_positive("learning_rate_init", self.learning_rate_init)
        check_non_negative("power_t", self.power_t)
        check_non_negative("alpha", self.alpha)
        check_non_negative("tol", self.tol)
        check_number("momentum", self.momentum, low=0.0, high=1.0)
        check_number("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        check_number("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        check_positive("epsilon", self.epsilon)
        check_number(
            "validation_fraction",
            self.validation_fraction,
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        )
        check_positive_int("max_iter", self.max_iter)
        check_positive_int("max_fun", self.max_fun)
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == math.inf):
            check_positive_int("n_iter_no_change", self.n_iter_no_change)
        if self.batch_size != "auto":
            check_positive_int("batch_size", self.batch_size)
        check_choice("backend", self.backend, BACKEND_NAMES)
        if self.dtype is not None:
            check_choice("dtype", self.dtype, ("float32", "float64"))
        check_choice("norm", self.norm, NORMS)
        if self._is_classifier:
            check_number("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        if self.clip_norm is not None:
            check_positive("clip_norm", self.clip_norm)
        if self.norm == "batch" and self.solver == "lbfgs":
            # Every L-BFGS function evaluation (line-search trials included) would run a
            # training-mode forward and move the running statistics, so the statistics used
            # for prediction would depend on how many trial points SciPy happened to try.
            raise ValueError(
                "xpnet: norm='batch' cannot be used with solver='lbfgs': L-BFGS evaluates the "
                "full batch at trial points, which would update BatchNorm's running statistics "
                "at each evaluation; use norm='layer' (no running statistics) or a stochastic "
                "solver"
            )

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                "not stochastic."
            )
        return True

    def _batch_size_for(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if int(self.batch_size) > n:
            warnings.warn(
                f"xpnet: batch_size={self.batch_size} is larger than the {n} training samples; "
                f"using {n}",
                UserWarning,
                stacklevel=5,
            )
            return n
        return int(self.batch_size)

    def _make_optimizer(self) -> Optimizer:
        lr = float(self.learning_rate_init)
        clip = None if self.clip_norm is None else float(self.clip_norm)
        if self.solver == "sgd":
            return SklearnSGD(
                lr,
                momentum=float(self.momentum),
                nesterov=bool(self.nesterovs_momentum),
                lr_schedule=str(self.learning_rate),
                power_t=float(self.power_t),
                clip_norm=clip,
            )
        if self.solver == "adamw":
            return AdamW(lr=lr, clip_norm=clip)
        if self.solver == "rmsprop":
            return RMSProp(lr=lr, clip_norm=clip)
        return SklearnAdam(
            lr,
            betas=(float(self.beta_1), float(self.beta_2)),
            eps=float(self.epsilon),
            clip_norm=clip,
        )

    def _make_loss(self, weighted: bool) -> Any:
        """The private loss of the output activation (label smoothing for the classifier's)."""
        smoothing = float(getattr(self, "label_smoothing", 0.0))
        if self.out_activation_ == "softmax":
            return SoftmaxLogLoss(weighted=weighted, label_smoothing=smoothing)
        if self.out_activation_ == "logistic":
            return LogisticLoss(weighted=weighted, label_smoothing=smoothing)
        return LOSS_KINDS[self.out_activation_](weighted=weighted)

    # ---- the network
    def _build_model(self, layer_units: list[int], dtype: str) -> Sequential:
        act = normalize_activation(_SKLEARN_ACTIVATIONS.get(self.activation, self.activation))
        return build_network(
            layer_units, dtype, act, getattr(self, "norm", "none"), backend=self.backend
        )

    def _initialize(
        self, layer_units: list[int], dtype: str, rs: np.random.RandomState, out_act: str
    ) -> None:
        self.n_iter_ = 0  # pragma: no mutate
        self.t_ = 0
        self.n_outputs_ = layer_units[-1]  # pragma: no mutate
        self.n_layers_ = len(layer_units)
        self.out_activation_ = out_act
        model = self._build_model(layer_units, dtype)
        # scikit-learn's Glorot-uniform draws, in its order, so a random_state starts both
        # libraries from the same weights.
        factor = 2.0 if self.activation in ("logistic", "sigmoid") else 6.0
        weights = []
        for fan_in, fan_out in itertools.pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
            weights.append(rs.uniform(-bound, bound, fan_out))
        set_dense_weights(model, weights)
        self.__dict__.pop("_given_coefs", None)
        self.__dict__.pop("_given_intercepts", None)
        self.model_ = model
        self._start_records()

    def _start_records(self) -> None:
        """The fitted attributes a first fit starts from: no optimizer, empty records."""
        self._optimizer: Optimizer | None = None
        if self.solver in _STOCHASTIC:
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0  # pragma: no mutate
            if self.early_stopping:
                self.validation_scores_: list[float] | None = []  # pragma: no mutate
                self.best_validation_score_: float | None = -np.inf
                self.best_loss_: float | None = None
            else:
                self.best_loss_ = np.inf  # pragma: no mutate
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _model_from_given(self, dtype: str) -> None:
        """Build the network from ``coefs_`` and ``intercepts_`` assigned before any fit."""
        coefs = [np.asarray(c) for c in self.__dict__["_given_coefs"]]
        intercepts = [np.asarray(b).reshape(-1) for b in self.__dict__["_given_intercepts"]]
        units = [int(coefs[0].shape[0])] + [int(c.shape[1]) for c in coefs]
        model = self._build_model(units, dtype)
        set_dense_weights(model, [w for pair in zip(coefs, intercepts, strict=True) for w in pair])
        del self.__dict__["_given_coefs"], self.__dict__["_given_intercepts"]
        self.model_ = model
        self.n_layers_ = len(units)
        # The first fit of this estimator: its counters and records start here.
        self.n_iter_ = 0
        self.t_ = 0
        self._start_records()

    # ---- training
    def _fit(
        self, X: Any, y: Any, sample_weight: Any, *, incremental: bool, classes: Any = None
    ) -> Any:
        self._check_hyperparameters()
        if incremental and self.early_stopping:
            raise ValueError("xpnet: partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = validate_data(
            self,
            X,
            y,
            reset=first_pass,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            y_numeric=not self._is_classifier,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if sp.issparse(X):
            # Densified once: see the module docstring for the measurement behind it.
            X = X.toarray()
        n = int(X.shape[0])
        sw = check_sample_weight(sample_weight, n)
        stochastic = self.solver in _STOCHASTIC
        Y, out_act = self._encode_targets(y, incremental, classes)
        dtype = self.dtype or X.dtype.name
        rs = check_random_state(self.random_state)
        units = [int(X.shape[1]), *self._hidden_sizes(), int(Y.shape[1])]
        if first_pass:
            self._initialize(units, dtype, rs, out_act)
        else:
            if "model_" not in self.__dict__:
                self._model_from_given(dtype)
            if self.model_.n_outputs != Y.shape[1]:
                raise ValueError(
                    f"xpnet: y has {Y.shape[1]} outputs but the network was fitted with "
                    f"{self.model_.n_outputs}"
                )
            self.out_activation_ = out_act
        self.n_outputs_ = int(Y.shape[1])
        if stochastic:
            self._fit_stochastic(X, Y, sw, incremental, rs)
        else:
            self._fit_lbfgs(X, Y, sw)
        if not all(np.isfinite(w).all() for w in self.model_.get_weights()):
            raise ValueError(f"xpnet: {_NON_FINITE}")
        return self

    def _fit_stochastic(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        sw: np.ndarray | None,
        incremental: bool,
        rs: np.random.RandomState,
    ) -> None:
        model = self.model_
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
        opt = self._optimizer
        assert opt is not None
        validation = None
        if self.early_stopping:
            X, Y, sw, validation = self._split(X, Y, sw, rs)
        n = int(X.shape[0])
        batch_size = self._batch_size_for(n)
        if self.norm == "batch":
            check_batch_norm_batches(n, batch_size)
        loss = self._make_loss(sw is not None)
        hook = SampleL2(float(self.alpha), loss) if self.alpha > 0 else None
        rules = SklearnStopping(self, n, hook, validation)
        if hook is not None:
            opt.add_hook(hook)
        self.n_iter_ = 0  # scikit-learn counts the epochs of this call
        try:
            history = model.fit(
                X,
                self._loss_targets(Y, sw),
                epochs=1 if incremental else int(self.max_iter),
                batch_size=batch_size,
                optimizer=opt,
                loss=loss,
                shuffle=bool(self.shuffle),
                seed=int(rs.randint(np.iinfo(np.int32).max)),
                callbacks=[KeepGoing(), rules],
            )
        finally:
            # Leave a plain optimizer behind, for save() and later fits.
            if hook is not None:
                opt.hooks.remove(hook)
        if history.interrupted:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        elif not (incremental or rules.converged):
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _split(
        self, X: np.ndarray, Y: np.ndarray, sw: np.ndarray | None, rs: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[Any, Any, Any]]:
        arrays = [X, Y] if sw is None else [X, Y, sw]
        stratify = self._stratify(Y)
        try:
            parts = train_test_split(
                *arrays, random_state=rs, test_size=self.validation_fraction, stratify=stratify
            )
        except ValueError as exc:
            raise self._split_error(exc) from exc
        X_tr, X_val, Y_tr, Y_val = parts[:4]
        if X_val.shape[0] < 2:
            raise ValueError(
                "xpnet: The validation set is too small. Increase 'validation_fraction' or the "
                f"size of your dataset (validation_fraction={self.validation_fraction} of "
                f"{X.shape[0]} samples leaves {X_val.shape[0]} sample)."
            )
        sw_tr, sw_val = (parts[4], parts[5]) if sw is not None else (None, None)
        Xd_val = self.model_.backend.asarray(X_val, dtype=self.model_.dtype)
        return X_tr, Y_tr, sw_tr, (Xd_val, self._validation_truth(Y_val), sw_val)

    def _split_error(self, exc: ValueError) -> ValueError:
        return exc

    def _validation_truth(self, Y_val: np.ndarray) -> Any:
        return Y_val

    def _validation_score(self, Xd: Any, y: Any, sw: np.ndarray | None) -> float:
        raw = host_scores(self.model_, Xd)
        if not np.isfinite(raw).all():
            return float("nan")  # scikit-learn scores a diverged network as NaN
        return float(self._score_outputs(raw, y, sw))

    def _fit_lbfgs(self, X: np.ndarray, Y: np.ndarray, sw: np.ndarray | None) -> None:
        model = self.model_
        loss = self._make_loss(sw is not None)
        targets = self._loss_targets(Y, sw)
        _check_fits_dtype(X, model.dtype)
        Xd = model.backend.asarray(X, dtype=model.dtype)
        yd = model.backend.asarray(targets, dtype=loss.target_dtype(model.dtype, targets.ndim))
        objective = LbfgsObjective(model, loss, Xd, yd, float(self.alpha))
        res = fit_lbfgs(
            objective, max_iter=int(self.max_iter), max_fun=int(self.max_fun), tol=float(self.tol)
        )
        self.n_iter_ = min(int(res.nit), int(self.max_iter))
        self.loss_ = float(res.fun)

    def _loss_grad_lbfgs(
        self,
        packed_coef_inter: np.ndarray,
        X: Any,
        y: np.ndarray,
        sample_weight: Any,
        activations: list[Any],
        deltas: list[Any],
        coef_grads: list[Any],
        intercept_grads: list[Any],
    ) -> tuple[float, np.ndarray]:
        """scikit-learn's L-BFGS objective: loss and gradient at ``packed_coef_inter`` (all
        weights raveled, then all biases), computed by xpnet's forward and backward.

        ``activations`` and ``deltas`` are accepted for scikit-learn's signature; the
        gradients are also written into ``coef_grads`` and ``intercept_grads``.
        """
        check_is_fitted(self, "model_")
        model = self.model_
        if len(dense_slots(model)) != len(model.parameters()):
            raise ValueError(
                "xpnet: _loss_grad_lbfgs packs scikit-learn's Dense weights only; this network "
                f"has norm={self.norm!r} layers"
            )
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        Y = np.asarray(y).reshape(len(X), -1)
        sw = check_sample_weight(sample_weight, len(X))
        loss = self._make_loss(sw is not None)
        targets = self._loss_targets(Y, sw)
        Xd = model.backend.asarray(X, dtype=model.dtype)
        yd = model.backend.asarray(targets, dtype=loss.target_dtype(model.dtype, targets.ndim))
        objective = LbfgsObjective(model, loss, Xd, yd, float(self.alpha))
        return objective.sklearn_packed(packed_coef_inter, coef_grads, intercept_grads)

    def _update_loss_progress(self, value: float) -> None:
        if self.best_loss_ is None:
            self.best_loss_ = np.inf
        if value > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        self.best_loss_ = min(self.best_loss_, value)

    def _update_validation(self, score: float) -> bool:
        """Record a validation score; return True when it is the best so far."""
        if self.validation_scores_ is None:
            self.validation_scores_ = []
        if self.best_validation_score_ is None:
            self.best_validation_score_ = -np.inf
        self.validation_scores_.append(score)
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            return True
        return False

    # ---- prediction
    def _raw(self, X: Any) -> np.ndarray:
        """Validated ``X`` through the network: the last layer's logits, host, model dtype."""
        check_is_fitted(self, "model_")
        X = validate_data(
            self, X, reset=False, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32)
        )
        if sp.issparse(X):
            X = X.toarray()
        model = self.model_
        _check_fits_dtype(X, model.dtype)
        return host_scores(model, model.backend.asarray(X, dtype=model.dtype))

    # ---- pickling goes through plain arrays and configs, never through xpnet objects
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        state.pop("_optimizer", None)  # the model's optimizer, rebuilt with it
        if model is not None:
            state["_model_plain"] = model_to_plain(model)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        plain = state.pop("_model_plain", None)
        super().__setstate__(state)
        if plain is not None:
            self.model_ = model_from_plain(plain)
            self._optimizer = self.model_.optimizer
            if "out_activation_" not in self.__dict__:
                # Pickled before the estimators had scikit-learn's output units: their
                # classifiers had a softmax output per class, their regressors identity.
                self.out_activation_ = "softmax" if self._is_classifier else "identity"
                self.n_outputs_ = int(self.model_.n_outputs or 0)
                self.n_layers_ = len(self.model_.parameters()) // 2 + 1
