"""Normalisation layers: :class:`BatchNorm` and :class:`LayerNorm`, PyTorch's formulas.

Both normalise ``x`` to ``xhat = (x - mean) / sqrt(var + eps)`` (the biased variance) and
return ``xhat * weight + bias``; BatchNorm takes the statistics over the batch (axis 0),
LayerNorm over the features of each row (axis 1). The element-wise parts run through the
kernels (:meth:`~xpnet.kernels.PortableKernels.normalize`, ``scale_shift`` and the two
backwards), the reductions through the array namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import Backend, backend_of, to_numpy
from ..parameter import Parameter
from ..validation import check_number, check_positive_int
from .base import Layer

if TYPE_CHECKING:
    from ..distributed.communicator import Communicator


class _Norm(Layer):
    """What both normalisation layers share: ``weight`` (ones) then ``bias`` (zeros)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        owner = type(self).__name__
        self.num_features = check_positive_int(f"{owner} num_features", num_features)
        self.eps = check_number(f"{owner} eps", eps, low=0.0, low_open=True)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        self._xhat: Any = None
        self._inv_std: Any = None  # pragma: no mutate

    def build(
        self,
        backend: Backend,
        dtype: Any,
        rng: np.random.Generator,
        next_activation: str | None = None,
    ) -> None:
        super().build(backend, dtype, rng, next_activation)
        xp, n = backend.xp, self.num_features
        self.weight = Parameter(backend.asarray(np.ones(n), dtype=dtype), "weight")
        self.bias = Parameter(
            xp.zeros(n, dtype=self.weight.data.dtype, device=backend.device), "bias"
        )

    def _params(self) -> tuple[Parameter, Parameter]:
        if self.weight is None or self.bias is None:
            raise RuntimeError(
                f"xpnet: this {type(self).__name__} layer has no weights yet; put it in a "
                "Sequential model or call layer.build(backend, dtype, rng) first"
            )
        return self.weight, self.bias

    def _check_input(self, x: Any) -> None:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"xpnet: {type(self).__name__}({self.num_features}) expected input of shape "
                f"(n, {self.num_features}), got {tuple(x.shape)}"
            )

    def parameters(self) -> list[Parameter]:
        return [p for p in (self.weight, self.bias) if p is not None]

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps}

    def output_features(self, in_features: int | None) -> int | None:
        return self.num_features


class BatchNorm(_Norm):
    """Batch normalisation over the batch axis, ``torch.nn.BatchNorm1d`` for (n, features).

    In training, ``x`` is normalised by the batch mean and the biased batch variance, and the
    running statistics move towards the batch's: ``running_mean = (1 - momentum)
    running_mean + momentum mean``, ``running_var`` likewise from the *unbiased* batch
    variance (``var * n / (n - 1)``). With ``training=False`` the running statistics
    normalise. The affine parameters are ``weight`` (ones) then ``bias`` (zeros).

    Parameters
    ----------
    num_features : int
        The input (and output) width.
    eps : float, default 1e-5
        Added to the variance before the square root (> 0).
    momentum : float, default 0.1
        Weight of the batch statistics in the running ones, in [0, 1].

    Notes
    -----
    ``running_mean`` (zeros) and ``running_var`` (ones) are buffers (:meth:`buffers`): not
    trainable, not in ``get_weights``, saved in checkpoints, restored on resume and by
    ``EarlyStopping(restore_best_weights=True)``. A training batch of one row has no variance
    and raises ValueError, as PyTorch does.

    In a data-parallel fit (``communicator=``) the training loop hands the layer the
    communicator (:meth:`set_communicator`): the batch statistics, the running-statistics
    update and the backward's sums are then those of the whole global batch, so N ranks train
    the model one process would (docs/distributed.md).
    """

    kind = "BatchNorm"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps)
        self.momentum = check_number("BatchNorm momentum", momentum, low=0.0, high=1.0)
        self.running_mean: Any = None
        self.running_var: Any = None  # pragma: no mutate
        self._comm: Communicator | None = None
        self._global_rows = 0  # pragma: no mutate

    def build(
        self,
        backend: Backend,
        dtype: Any,
        rng: np.random.Generator,
        next_activation: str | None = None,
    ) -> None:
        super().build(backend, dtype, rng, next_activation)
        n = self.num_features
        self.running_mean = backend.asarray(np.zeros(n), dtype=dtype)
        self.running_var = backend.asarray(np.ones(n), dtype=dtype)

    def _own_buffers(self, backend: Backend) -> tuple[Any, Any]:
        # Sequential.to moves parameters, not buffers: follow an explicit move once, here.
        if backend_of(self.running_mean) is not backend:
            self.running_mean = backend.asarray(to_numpy(self.running_mean))
            self.running_var = backend.asarray(to_numpy(self.running_var))
        return self.running_mean, self.running_var

    def forward(self, x: Any, training: bool = False) -> Any:
        w, b = self._params()
        backend = self._backend_for(x)
        self._check_input(x)
        k, xp = backend.kernels, backend.xp
        running_mean, running_var = self._own_buffers(backend)
        if not training:
            self._xhat = self._inv_std = None
            xhat, _ = k.normalize(x, running_mean, running_var, self.eps)
            return k.scale_shift(xhat, w.data, b.data)
        comm = self._comm
        size = 1 if comm is None else comm.size
        synced = comm is not None and size > 1
        if comm is not None and size > 1:
            n, mean, var = self._global_statistics(x, comm, xp)
        else:
            n = int(x.shape[0])
            self._global_rows = 0  # this batch's sums are this process's alone
        if n < 2:
            raise ValueError(
                f"xpnet: BatchNorm needs more than one row per training batch to estimate a "
                f"variance, got input of shape {tuple(x.shape)} (drop or merge the last "
                "batch, or pick another batch_size)"
                + (f"; the global batch of the {size} ranks has {n} row(s)" if synced else "")
            )
        if not synced:
            mean = xp.mean(x, axis=0)
            var = xp.var(x, axis=0)
        m = self.momentum
        # In place: the buffers may be held by reference (checkpoints restore into them).
        running_mean *= 1.0 - m
        running_mean += m * mean
        running_var *= 1.0 - m
        running_var += (m * n / (n - 1)) * var
        xhat, inv_std = k.normalize(x, mean, var, self.eps)
        self._xhat, self._inv_std = xhat, inv_std
        return k.scale_shift(xhat, w.data, b.data)

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        w, b = self._params()
        if self._xhat is None:
            raise self._not_trained("normalised input")
        comm = self._comm
        if comm is not None and comm.size > 1 and not self._global_rows:
            # The input gradient would divide global sums by this process's rows.
            raise RuntimeError(
                f"xpnet: BatchNorm.backward over {comm.size} ranks needs a training forward "
                "synchronised over them; call set_communicator before the forward"
            )
        backend = self._backend_for(grad)
        k = backend.kernels
        w.grad = k.sum_rows(grad * self._xhat, out=w.grad)
        b.grad = k.sum_rows(grad, out=b.grad)
        if not need_input_grad:
            return None
        if comm is None or comm.size == 1:
            return k.batch_norm_backward(grad, self._xhat, self._inv_std, w.data, w.grad, b.grad)
        return self._global_input_grad(grad, comm, backend, w.data, w.grad, b.grad)

    def set_communicator(self, comm: Communicator | None) -> None:
        """Synchronise the training statistics over the ranks of ``comm`` (None: this process).

        Called by the training loop of a data-parallel fit with its communicator, and with
        None after it. With more than one rank, every training forward makes one all-reduce
        of device data (each rank's sum and centred sum of squares, after a host all-reduce
        of the row counts) and every backward that needs the input gradient one more (the
        sums of ``grad`` and ``grad * xhat``), on every rank at the same point, also for a
        rank whose part of the batch is empty. A size-1 communicator or None leaves the
        single-process arithmetic untouched.
        """
        self._comm = comm

    def _global_statistics(self, x: Any, comm: Communicator, xp: Any) -> tuple[int, Any, Any]:
        """The global batch's row count, mean and biased variance, identical on every rank.

        Sums of squares about a common origin lose the variance to cancellation when the
        mean is large against the spread, so each rank contributes its row count, its sum and
        its sum of squares about its *own* mean, and the ranks' parts are combined exactly
        (Chan, Golub and LeVeque's formula, ``M2 = sum_r M2_r + n_r (mean_r - mean)^2``). The
        one all-reduce of device data is a gather: rank r writes slot r of a zeroed buffer,
        so the sum adds only exact zeros and every rank combines the same numbers in the same
        order (bit-identical results).
        """
        size, c, n = comm.size, self.num_features, int(x.shape[0])
        # The row counts are host integers: gathered over MPI on the host, so checking the
        # global count needs no read-back of the device buffer.
        one_hot = [0.0] * size
        one_hot[comm.rank] = float(n)
        counts = [int(v) for v in comm.reduce_metrics(one_hot)]
        rows = sum(counts)
        buf = xp.zeros(size * 2 * c, dtype=x.dtype, device=x.device)
        off = comm.rank * 2 * c
        if n > 0:
            total = xp.sum(x, axis=0)
            buf[off : off + c] = total
            buf[off + c : off + 2 * c] = xp.sum((x - total / n) ** 2, axis=0)
        comm.allreduce(buf)  # every rank, even an empty one or a 1-row global batch
        if rows < 2:
            return rows, None, None
        parts = xp.reshape(buf, (size, 2 * c))
        mean = xp.sum(parts[:, :c], axis=0) / rows
        m2 = xp.zeros(c, dtype=x.dtype, device=x.device)
        for r, n_r in enumerate(counts):
            if n_r:
                gap = parts[r, :c] / n_r - mean
                m2 = m2 + (parts[r, c:] + n_r * (gap * gap))
        self._global_rows = rows
        return rows, mean, m2 / rows

    def _global_input_grad(
        self, grad: Any, comm: Communicator, backend: Backend, weight: Any, dw: Any, db: Any
    ) -> Any:
        """d(loss)/d(x) with the sums of ``grad`` and ``grad * xhat`` over the global batch.

        ``dw`` and ``db`` stay this rank's own sums (the gradient all-reduce adds them up);
        the input gradient needs the global ones, divided by the global row count.
        """
        xp, c, n = backend.xp, self.num_features, int(grad.shape[0])
        buf = xp.concat([xp.reshape(db, (-1,)), xp.reshape(dw, (-1,))])
        comm.allreduce(buf)
        if n == 0:
            return xp.zeros(grad.shape, dtype=grad.dtype, device=grad.device)
        # The kernel divides its sums by the part's n rows: scale them to the global count.
        scale = n / self._global_rows
        db_all, dw_all = buf[:c] * scale, buf[c:] * scale
        return backend.kernels.batch_norm_backward(
            grad, self._xhat, self._inv_std, weight, dw_all, db_all
        )

    def buffers(self) -> dict[str, Any]:
        if self.running_mean is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class LayerNorm(_Norm):
    """Layer normalisation over the features of each row, ``torch.nn.LayerNorm(num_features)``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the mean and the biased
    variance of each row; the same in training and inference (no running statistics).

    Parameters
    ----------
    num_features : int
        The input (and output) width.
    eps : float, default 1e-5
        Added to the variance before the square root (> 0).
    """

    kind = "LayerNorm"

    def forward(self, x: Any, training: bool = False) -> Any:
        w, b = self._params()
        backend = self._backend_for(x)
        self._check_input(x)
        k, xp = backend.kernels, backend.xp
        mean = xp.mean(x, axis=1, keepdims=True)
        var = xp.var(x, axis=1, keepdims=True)
        xhat, inv_std = k.normalize(x, mean, var, self.eps)
        self._xhat, self._inv_std = (xhat, inv_std) if training else (None, None)
        return k.scale_shift(xhat, w.data, b.data)

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        w, b = self._params()
        if self._xhat is None:
            raise self._not_trained("normalised input")
        k = self._backend_for(grad).kernels
        w.grad = k.sum_rows(grad * self._xhat, out=w.grad)
        b.grad = k.sum_rows(grad, out=b.grad)
        if not need_input_grad:
            return None
        return k.layer_norm_backward(grad, self._xhat, self._inv_std, w.data)
