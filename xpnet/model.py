"""The Sequential model: a stack of layers, and the training loop around it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .backend import Backend, get_backend, namespace_of, resolve_backend, to_numpy
from .callbacks import Callback
from .history import History
from .io.writer import save_model
from .layers import Dense, Dropout, Layer, layer_config, layers_from_config
from .layers.activations import ACTIVATIONS, Sigmoid, Softmax
from .losses import Loss, get_loss
from .optimizers import Optimizer, get_optimizer
from .parameter import Parameter, ParameterBuffer
from .threads import with_blas_threads
from .training import (
    check_callbacks,
    check_communicator,
    check_fit_arguments,
    default_callbacks,
    evaluate_arrays,
    history_keys,
    train,
)
from .validation import check_positive_int, check_X, check_X_y

__all__ = ["Sequential"]

_DTYPES = ("float32", "float64")


def _check_dtype(dtype: Any) -> str:
    name = getattr(dtype, "__name__", None) or str(dtype)
    name = name.rsplit(".", 1)[-1]
    if name not in _DTYPES:
        raise ValueError(f"xpnet: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return name


class Sequential:
    """A feed-forward stack of layers.

    Parameters
    ----------
    layers : iterable of Layer, optional
        The layers, input first. Consecutive :class:`~xpnet.layers.Dense` widths must match.
    dtype : {"float32", "float64"}, default "float32"
        Floating type of parameters and activations.
    seed : int, optional
        Seed of the model's host ``numpy.random.Generator``, which draws the initial weights
        (and dropout masks unless ``fit`` is given its own seed).
    backend : str or Backend, optional
        Where the parameters live; default: the active backend at construction.

    Notes
    -----
    Weights are drawn lazily, in layer order, the first time the model is used, so that each
    Dense layer's default initializer can depend on the activation that follows it.
    """

    def __init__(
        self,
        layers: Iterable[Layer] | None = None,
        *,
        dtype: str = "float32",
        seed: int | None = None,
        backend: str | Backend | None = None,
    ) -> None:
        self.dtype = _check_dtype(dtype)
        self.backend = get_backend() if backend is None else resolve_backend(backend)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.layers: list[Layer] = []
        self._built = 0  # layers[:_built] have their parameters
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        #: The History of the running (or last) fit; callbacks reach it as ``model.history``.
        self.history: History | None = None
        #: Set by a callback to end training after the current epoch (reset by each fit).
        self.stop_training = False
        for layer in layers or []:
            self.add(layer)

    # ----------------------------------------------------------------- structure
    def add(self, layer: Layer) -> Sequential:
        """Append a layer (returns the model, so calls chain)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"xpnet: Sequential.add expects a Layer, got {type(layer).__name__}")
        width = self.n_outputs
        if isinstance(layer, Dense) and width is not None and layer.in_features != width:
            raise ValueError(
                f"xpnet: {layer!r} expects {layer.in_features} inputs but the previous layers "
                f"output {width}"
            )
        if isinstance(layer, Dropout):
            layer.rng = self._rng
        self.layers.append(layer)
        return self

    @property
    def n_features_in(self) -> int | None:
        """Input width (from the first Dense layer), or None for a model without one."""
        for layer in self.layers:
            if isinstance(layer, Dense):
                return layer.in_features
        return None

    @property
    def n_outputs(self) -> int | None:
        """Output width (from the last Dense layer)."""
        width = None
        for layer in self.layers:
            width = layer.output_features(width)
        return width

    def _build(self) -> None:
        if self._built == len(self.layers):
            return
        # A for loop, not a while over _built: a fault in the count cannot make it spin.
        for i in range(self._built, len(self.layers)):
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            next_act = getattr(nxt, "name", None) if type(nxt) in ACTIVATIONS.values() else None
            self.layers[i].build(self.backend, self.dtype, self._rng, next_act)
            self._built = i + 1
        self._flatten()

    def _flatten(self) -> None:
        # All parameters (and gradients) as views into one buffer, so that an optimizer step
        # is one update over it rather than one per array (see ParameterBuffer); redone
        # whenever the parameter set or its backend changes.
        params = [p for layer in self.layers for p in layer.parameters()]
        if params:
            ParameterBuffer(params)

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, layer by layer (W then b for each Dense)."""
        self._build()
        return [p for layer in self.layers for p in layer.parameters()]

    def to(self, backend: str | Backend) -> Sequential:
        """Move the parameters to another backend (returns the model)."""
        target = resolve_backend(backend)
        for p in self.parameters():
            p.data = target.asarray(to_numpy(p.data))
            p.grad = None
        for layer in self.layers:
            layer.backend = target  # each layer runs on the backend its parameters are on
        self.backend = target
        self._flatten()
        self.optimizer = None  # its state lives on the old backend
        return self

    # ----------------------------------------------------------------- maths
    def forward(self, X: Any, training: bool = False) -> Any:
        """Run the layers on a batch already on the model's backend; return the output."""
        self._build()
        for layer in self.layers:
            X = layer.forward(X, training)
        return X

    def backward(self, grad: Any, input_grad: bool = False) -> Any:
        """Back-propagate d(loss)/d(output), filling ``p.grad`` for every parameter.

        Returns d(loss)/d(input) when ``input_grad`` is true, else None (the first layer then
        skips that product).
        """
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, need_input_grad=input_grad or i > 0)
        return grad

    # ----------------------------------------------------------------- training
    def _to_device(self, X: Any, y: Any | None, loss: Loss) -> tuple[Any, Any]:
        b = self.backend
        Xd = b.asarray(X, dtype=self.dtype)
        if y is None:
            return Xd, None
        return Xd, b.asarray(y, dtype=loss.target_dtype(self.dtype, getattr(y, "ndim", 1)))

    def _check_data(self, X: Any, y: Any, loss: Loss) -> tuple[Any, Any]:
        classes = self.n_outputs if loss.categorical else None
        X, y = check_X_y(X, y, self.n_features_in, classes)
        y = loss.check_targets(y, self.n_outputs)
        _check_fits_dtype(X, self.dtype)
        return X, y

    # A diverging run overflows on the way to the non-finite loss that DivergenceError reports;
    # NumPy's overflow/invalid warnings would only repeat that, less clearly.
    @np.errstate(over="ignore", invalid="ignore")
    @with_blas_threads
    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int = 32,
        optimizer: Optimizer | str | None = None,
        loss: Loss | str | None = None,
        validation_data: tuple[Any, Any] | None = None,
        seed: int | None = None,
        verbose: int = 0,
        shuffle: bool = True,
        check_every: int = 50,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
        callbacks: Sequence[Callback] | None = None,
        communicator: Any = None,
    ) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            NumPy (moved to the model's backend once, not per batch) or the model's backend.
        y : array of shape (n_samples,) or (n_samples, n_outputs)
            Integer labels for classification, real targets for regression losses.
        epochs : int
            Passes over the data (0 returns an empty history).
        batch_size : int
            Samples per update; the last batch of an epoch may be smaller.
        optimizer : Optimizer or str, optional
            Default: the optimizer of the previous ``fit`` call, else ``Adam()``.
        loss : Loss or str, optional
            Default: the loss of the previous ``fit`` call, else ``SoftmaxCrossEntropy()``.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch.
        seed : int, optional
            Seed of the generator that shuffles and seeds the stochastic layers (dropout);
            default: the model's.
        verbose : int
            0 silent, 1 a progress bar and a line per epoch, 2 a line per epoch
            (a :class:`~xpnet.callbacks.ProgressBar`).
        shuffle : bool
            Reshuffle the samples every epoch.
        check_every : int
            Steps between checks that the loss is finite (the
            :class:`~xpnet.callbacks.TerminateOnNaN` guard). Each check reads one number back
            from the device, so on a GPU it is kept off the per-batch path.
        checkpoint : str or PathLike, optional
            A directory for the training state (weights, optimizer state, epoch, history and
            the random generator's state), written atomically to one file in it every
            ``checkpoint_every`` epochs, after the last epoch and on a keyboard interrupt
            (the last completed epoch). The file is also loadable by :func:`xpnet.load_model`.
        checkpoint_every : int
            Epochs between checkpoint writes.
        resume : bool
            Continue from the state in ``checkpoint``: ``epochs`` counts the total, so a run
            of 5 epochs that checkpointed after 3 trains epochs 4 and 5, and the returned
            history includes the earlier epochs. Given the same data, seed and settings, the
            result is bit-identical to an uninterrupted run on the same backend.
            (``checkpoint``, ``checkpoint_every`` and ``resume`` make a
            :class:`~xpnet.callbacks.BackupAndRestore`.)
        callbacks : list of Callback, optional
            Called around epochs and batches; see :mod:`xpnet.callbacks`. Any hook may set
            ``model.stop_training = True`` to end training after the current epoch.
        communicator : xpnet.distributed.Communicator, optional
            Train data-parallel over its ranks (see :mod:`xpnet.distributed`): every rank
            passes the same data and arguments, ``batch_size`` is the global batch, each
            rank computes its contiguous part of it and one all-reduce per step averages the
            gradients. Every rank ends with the same weights and History as one process
            would; only rank 0 prints and writes checkpoints. A checkpoint written with
            any number of ranks resumes with any other. An exception on one rank (other
            than a :class:`~xpnet.DivergenceError`, which every rank raises together) aborts
            the whole job.

        Returns
        -------
        History

        Raises
        ------
        DivergenceError
            If the loss becomes NaN or infinite; the model keeps the last weights that were
            checked finite.
        CheckpointError
            If ``resume`` finds a damaged checkpoint, or one written for another architecture,
            dtype, optimizer kind or loss.
        FileNotFoundError
            If ``resume`` is true and the checkpoint directory holds no checkpoint.
        TypeError
            If ``communicator`` is not an :class:`xpnet.distributed.Communicator`.
        ValueError
            If the ranks of a data-parallel fit were given different data or arguments, or
            ``batch_size`` is below the number of ranks.
        """
        epochs, batch_size, check_every, checkpoint_every = check_fit_arguments(
            epochs=epochs,
            batch_size=batch_size,
            check_every=check_every,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            validation_data=validation_data,
        )
        given = check_callbacks(callbacks)
        check_communicator(communicator)
        loss_fn = get_loss(loss if loss is not None else self.loss)
        if optimizer is not None or self.optimizer is None:
            self.optimizer = get_optimizer(optimizer)
        self.loss = loss_fn
        X, y = self._check_data(X, y, loss_fn)
        Xd, yd = self._to_device(X, y, loss_fn)
        val = None
        if validation_data is not None:
            Xv, yv = self._check_data(validation_data[0], validation_data[1], loss_fn)
            val = self._to_device(Xv, yv, loss_fn)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        history = History(history_keys(loss_fn, yd.ndim, val is not None))
        run_callbacks = default_callbacks(
            given,
            history,
            verbose=verbose,
            check_every=check_every,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )
        return train(
            self,
            Xd,
            yd,
            val,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            rng=rng,
            callbacks=run_callbacks,
            history=history,
            verbose=verbose,
            communicator=communicator,
        )

    # ----------------------------------------------------------------- inference
    def _forward_batches(self, Xd: Any, batch_size: int) -> Any:
        xp = namespace_of(Xd)
        n = int(Xd.shape[0])
        outs = [
            self.forward(Xd[i : min(i + batch_size, n), ...], training=False)
            for i in range(0, n, batch_size)
        ]
        return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)

    @with_blas_threads
    def evaluate(
        self, X: Any, y: Any, batch_size: int = 1024, loss: Loss | str | None = None
    ) -> dict[str, float]:
        """Mean loss (and accuracy, for classification) on ``(X, y)`` as Python floats."""
        batch_size = check_positive_int("batch_size", batch_size)
        loss_fn = get_loss(loss if loss is not None else self.loss)
        X, y = self._check_data(X, y, loss_fn)
        Xd, yd = self._to_device(X, y, loss_fn)
        return evaluate_arrays(self, Xd, yd, loss_fn, batch_size)

    @with_blas_threads
    def predict_proba(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities (softmax of the outputs) as a NumPy array (n, classes).

        For a model trained with a multi-label loss (:class:`~xpnet.losses.BinaryCrossEntropy`)
        each output's own probability, the sigmoid of its logit.
        """
        batch_size = check_positive_int("batch_size", batch_size)
        X = check_X(X, self.n_features_in)
        _check_fits_dtype(X, self.dtype)
        out = self._forward_batches(self.backend.asarray(X, dtype=self.dtype), batch_size)
        if not (self.layers and isinstance(self.layers[-1], (Softmax, Sigmoid))):
            multi = self.loss is not None and self.loss.multi_label
            out = (Sigmoid() if multi else Softmax()).forward(out)
        return to_numpy(out)

    @with_blas_threads
    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Predicted class labels (argmax of the outputs) as a NumPy int64 array.

        For a model trained with a multi-label loss, the (n, outputs) 0/1 decisions instead:
        1 where an output's probability exceeds 0.5.
        """
        batch_size = check_positive_int("batch_size", batch_size)
        X = check_X(X, self.n_features_in)
        _check_fits_dtype(X, self.dtype)
        out = self._forward_batches(self.backend.asarray(X, dtype=self.dtype), batch_size)
        xp = namespace_of(out)
        if self.loss is not None and self.loss.multi_label:
            last = self.layers[-1] if self.layers else None
            cut = 0.5 if isinstance(last, (Softmax, Sigmoid)) else 0.0
            return to_numpy(out > cut).astype(np.int64)
        return to_numpy(xp.argmax(out, axis=1)).astype(np.int64)

    # ----------------------------------------------------------------- weights
    def save(self, path: str | os.PathLike[str], format: str | None = None) -> os.PathLike[str]:
        """Write the architecture and weights to exactly ``path``, atomically.

        Parameters
        ----------
        path : str or PathLike
            The file to write; no extension is added. Reload it with :func:`xpnet.load_model`.
        format : {"safetensors", "npz"}, optional
            Default: safetensors when the ``safetensors`` package is installed, else an
            uncompressed ``.npz``. Neither is ever pickled; see :mod:`xpnet.checkpoint`.

        Returns
        -------
        pathlib.Path
        """
        return save_model(self, path, format=format)

    def get_config(self) -> dict[str, Any]:
        """The architecture as plain JSON types: what :meth:`from_config` rebuilds.

        ``{"dtype": "float32", "layers": [{"kind": "Dense", "config": {...}}, ...]}``. Checkpoints
        record it and the scikit-learn estimators pickle it; weights, buffers and the seed are
        not part of it. Raises ValueError for a layer that is not registered
        (:func:`xpnet.layers.register_layer`) or whose config is not JSON.
        """
        return {
            "dtype": self.dtype,
            "layers": [layer_config(la, i) for i, la in enumerate(self.layers)],
        }

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        backend: str | Backend | None = None,
        *,
        seed: int | None = None,
    ) -> Sequential:
        """A new, unbuilt model with the architecture ``config`` of :meth:`get_config`.

        Parameters
        ----------
        config : dict
        backend : str or Backend, optional
            Where the parameters will live; default: the active backend.
        seed : int, optional
            The new model's generator seed (initial weights, dropout masks).

        Raises
        ------
        ValueError
            For a malformed config, an unknown layer kind or argument, or mismatched widths.
        """
        if not isinstance(config, dict) or set(config) != {"dtype", "layers"}:
            got = sorted(config) if isinstance(config, dict) else type(config).__name__
            raise ValueError(
                f"xpnet: a model config is a dict with keys 'dtype' and 'layers', got {got}"
            )
        return cls(
            layers_from_config(config["layers"]), dtype=config["dtype"], seed=seed, backend=backend
        )

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of the weights, layer by layer, each layer's parameters in order: Dense
        ``W`` (in, out) then ``b`` (out,); BatchNorm and LayerNorm ``weight`` then ``bias``.
        Buffers (BatchNorm's running statistics) are not weights."""
        return [to_numpy(p.data).copy() for p in self.parameters()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Overwrite the weights in place from arrays in :meth:`get_weights` order."""
        params = self.parameters()
        weights = list(weights)
        if len(weights) != len(params):
            raise ValueError(
                f"xpnet: set_weights expected {len(params)} arrays (each layer's parameters), "
                f"got {len(weights)}"
            )
        staged = []
        for i, (p, w) in enumerate(zip(params, weights, strict=True)):
            w = np.asarray(to_numpy(w))
            if w.shape != p.shape:
                raise ValueError(
                    f"xpnet: set_weights array {i} ({p.name}) must have shape {p.shape}, "
                    f"got {w.shape}"
                )
            if w.dtype.kind not in "iuf" or not np.isfinite(w).all():
                raise ValueError(f"xpnet: set_weights array {i} must hold finite numbers")
            staged.append(self.backend.asarray(w, dtype=self.dtype))
        # All arrays are checked before any is written, so a bad list changes nothing.
        for p, w in zip(params, staged, strict=True):
            p.data[...] = w

    def summary(self, print_fn: Any = print) -> str:
        """A table of layers, output widths and parameter counts; printed and returned."""
        self._build()
        rows = [("Layer", "Output", "Params")]
        width, total = None, 0
        for i, layer in enumerate(self.layers):
            width = layer.output_features(width)
            count = sum(p.size for p in layer.parameters())
            total += count
            rows.append((f"{i}: {layer!r}", f"(n, {width})", f"{count:,}"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"{a.ljust(w0)}  {b.ljust(w1)}  {c.rjust(10)}" for a, b, c in rows]
        rule = "-" * len(lines[0])
        lines = [lines[0], rule, *lines[1:], rule]
        lines.append(
            f"Total parameters: {total:,}  dtype: {self.dtype}  backend: {self.backend.label}"
        )
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], dtype={self.dtype!r}, backend={self.backend.name!r})"


def _check_fits_dtype(X: Any, dtype: str) -> None:
    """Refuse finite host values that the model's dtype would turn into infinities."""
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.size:
        limit = float(np.finfo(dtype).max)
        if X.dtype.itemsize > np.dtype(dtype).itemsize and float(np.abs(X).max()) > limit:
            raise ValueError(
                f"xpnet: X holds values up to {float(np.abs(X).max()):.3g}, beyond the largest "
                f"{dtype} ({limit:.3g}); scale the inputs or use dtype='float64'"
            )
