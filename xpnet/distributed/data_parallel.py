"""What the training loop calls to train one model on many ranks as if it were one process.

Every rank holds the whole data set and the same generator, so every rank draws the same
shuffle; each global batch is cut into contiguous parts, one per rank (rank ``r`` of ``N``
takes rows ``r*B//N`` to ``(r+1)*B//N`` of a batch of ``B``), and a stochastic layer is told
where its part starts (``row_offset``), so a row's dropout mask is the single process's. A
rank's loss gradient is the mean over its own rows; :class:`DataParallel` scales it by
``rows_rank / B`` so that the sum of one all-reduce of the flat gradient buffer is exactly the
mean over the global batch, uneven parts and a short last batch included. All ranks then take
the same optimizer step on the same numbers and stay bit-identical.

Without a communicator, or with a size-1 one, the same calls run: the part is the whole
batch, the gradient is not rescaled, and every collective is an identity.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np

from ..backend import namespace_of
from ..losses import Loss
from ..parameter import Parameter, ParameterBuffer
from .communicator import Communicator
from .shared_memory import SharedMemoryAllreducer

__all__ = ["DataParallel", "split_rows"]


def split_rows(rows: int, size: int, rank: int) -> tuple[int, int]:
    """The contiguous part ``[start, stop)`` of a batch of ``rows`` rows that ``rank`` takes."""
    return rank * rows // size, (rank + 1) * rows // size


class DataParallel:
    """The per-fit data-parallel state of the training loop.

    Parameters
    ----------
    communicator : Communicator or None
        The ranks training together (see :func:`xpnet.distributed.init`); None trains alone
        (a size-1 communicator).

    Notes
    -----
    The loop calls, in order: :meth:`start` once (after a resume), :meth:`part` for each
    global batch, :meth:`loss_and_grad` after the forward, :meth:`allreduce_gradients` before
    the optimizer step, :meth:`reduce` on the epoch's host sums and the validation sums, and
    :meth:`finish` when training ends.
    """

    def __init__(self, communicator: Communicator | None) -> None:
        if communicator is not None and not isinstance(communicator, Communicator):
            raise TypeError(
                "xpnet: communicator must be an xpnet.distributed.Communicator "
                f"(from xpnet.distributed.init()) or None, got {type(communicator).__name__}"
            )
        self.given = communicator is not None
        self.comm = communicator if communicator is not None else Communicator(None)
        self.size, self.rank = self.comm.size, self.comm.rank
        self._synced: list[Any] = []
        # The shared-memory all-reduce this fit's gradient buffer moved into, if any.
        self._shared: SharedMemoryAllreducer | None = None
        self._shared_buffer: ParameterBuffer | None = None

    @property
    def is_root(self) -> bool:
        return self.comm.is_root

    # ----------------------------------------------------------------- set-up
    def start(
        self,
        model: Any,
        rng: np.random.Generator,
        X: Any,
        y: Any,
        *,
        batch_size: int,
        epochs: int,
        start_epoch: int,
        shuffle: bool,
    ) -> None:
        """Check that the ranks agree, then make rank 0's weights, buffers and generator
        everyone's; give the layers that ask for it (``set_communicator``) the communicator."""
        if self.given:
            # Layers whose forward needs statistics of the whole global batch (a synchronised
            # BatchNorm, see docs/distributed.md) take the communicator for the fit's duration.
            self._synced = [layer for layer in model.layers if hasattr(layer, "set_communicator")]
            for layer in self._synced:
                layer.set_communicator(self.comm)
        if self.size == 1:
            return
        params = model.parameters()
        xp = namespace_of(X)
        # A rank given other data or arguments would deadlock or train a different model
        # silently; a fingerprint of the data and the loop's shape catches both up front.
        # Sums in the arrays' own dtypes: deterministic for equal data, and no float64 copy of
        # the whole training set.
        fingerprint = [
            int(X.shape[0]),
            int(batch_size),
            int(epochs),
            int(start_epoch),
            int(shuffle),
            sum(p.size for p in params),
            zlib.crc32(str(params[0].data.dtype).encode()) if params else 0,
            int(np.float64(float(xp.sum(X))).view(np.int64)),
            int(np.float64(float(xp.sum(y))).view(np.int64)),
        ]
        if not self.comm.agree(fingerprint):
            raise ValueError(
                "xpnet: the ranks of a data-parallel fit disagree on the data (rows or values), "
                "batch_size, epochs, resume point, shuffle, model size or dtype; every rank must "
                "pass the same data and arguments"
            )
        if batch_size < self.size:
            raise ValueError(
                f"xpnet: batch_size is the global batch and must be at least the number of "
                f"ranks ({self.size}), got {batch_size}"
            )
        buf = params[0].buffer if params else None
        if buf is not None and buf.holds(params):
            self.comm.broadcast(buf.data)
        else:
            for p in params:
                self.comm.broadcast(p.data)
        for layer in model.layers:  # non-trainable state (running statistics) too
            for array in layer.buffers().values():
                self.comm.broadcast(array)
        state = json.dumps(rng.bit_generator.state).encode()
        rng.bit_generator.state = json.loads(self.comm.broadcast_bytes(state))
        self._share_gradients(params, buf)

    def _share_gradients(self, params: list[Parameter], buf: ParameterBuffer | None) -> None:
        """On one machine, move the gradient buffer into a shared window (shared_memory.py),
        where the backward pass writes and the all-reduce reads; all ranks or none."""
        local = (
            buf is not None
            and buf.holds(params)
            and isinstance(buf.grad, np.ndarray)
            and self.comm.shared_memory_possible(int(buf.grad.shape[0]), buf.grad.dtype)
        )
        # One rank that cannot (another environment, a rebound gradient) sends all through
        # MPI: a rank in the window's barrier and one in MPI_Allreduce would wait forever.
        refusals = self.comm.reduce_metrics([0.0 if local else 1.0])[0]
        if refusals or buf is None:
            return
        shared = self.comm.shared_memory_allreducer(int(buf.grad.shape[0]), buf.grad.dtype)
        if shared is None:
            return
        # Recorded before the move, so that finish() brings the gradients back whatever
        # interrupts this.
        shared.in_use = True
        self._shared, self._shared_buffer = shared, buf
        buf.move_grad(shared.buffer)

    # ----------------------------------------------------------------- per step
    def part(self, rows: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of a global batch of ``rows`` rows."""
        return split_rows(rows, self.size, self.rank)

    def loss_and_grad(self, loss_fn: Loss, out: Any, target: Any, total: int) -> tuple[Any, Any]:
        """This rank's mean loss and its loss gradient, weighted by its share of ``total``.

        A rank whose part of a short last batch is empty gets a zero loss and an empty
        gradient, so its backward pass writes zero gradients and it still takes part in the
        all-reduce (and in any collective a layer's forward makes).
        """
        rows = int(out.shape[0])
        if rows == 0:
            xp = namespace_of(out)
            zero = xp.zeros((), dtype=out.dtype, device=out.device)
            return zero, xp.zeros(out.shape, dtype=out.dtype, device=out.device)
        value = loss_fn.forward(out, target)
        grad = loss_fn.backward()
        if rows != total:  # alone the part is the batch: no extra kernel, not a bit changed
            grad = grad * (rows / total)
        return value, grad

    def allreduce_gradients(self, params: list[Parameter]) -> None:
        """Sum the (already weighted) gradients of all ranks: one all-reduce per step."""
        if self.size == 1 or not params:
            return
        buf, shared = params[0].buffer, self._shared
        # What the ranks sum was decided for the whole fit at start: the shared window (which
        # the gradient buffer moved into), else the flat gradient buffer.
        if buf is not None and buf.holds(params) and (shared is None or buf.grad is shared.buffer):
            self._sum(buf.grad)
            return
        # Gradients rebound outside that buffer: pack them into one (the window itself, where
        # the other ranks sum), still the one all-reduce every rank makes.
        xp = namespace_of(*(p.grad for p in params))
        if shared is None:
            flat = xp.concat([xp.reshape(p.grad, (-1,)) for p in params])
        else:
            flat = shared.buffer
            total = sum(p.size for p in params)
            if total != int(flat.shape[0]):
                raise ValueError(
                    f"xpnet: the model has {total} parameter values, but had "
                    f"{int(flat.shape[0])} when the data-parallel fit started; layers cannot "
                    "change during a fit"
                )
            start = 0
            for p in params:
                flat[start : start + p.size] = xp.reshape(p.grad, (-1,))
                start += p.size
        self._sum(flat)
        start = 0
        for p in params:
            p.grad[...] = xp.reshape(flat[start : start + p.size], p.grad.shape)
            start += p.size

    def _sum(self, flat: Any) -> None:
        """Sum ``flat`` over the ranks in place (with a window, ``flat`` is its buffer)."""
        if self._shared is not None:
            self._shared.allreduce()
        else:
            self.comm.allreduce(flat)

    # ----------------------------------------------------------------- per epoch
    def reduce(self, values: list[float]) -> list[float]:
        """The sums over all ranks of a few host numbers (epoch or validation sums)."""
        if self.size == 1:
            return values
        return [float(v) for v in self.comm.reduce_metrics(values)]

    def finish(self) -> None:
        """Detach the layers that were given the communicator; take the gradients out of the
        shared window, so that the model holds no memory of the job's after the fit."""
        for layer in self._synced:
            layer.set_communicator(None)
        self._synced = []
        shared, buf = self._shared, self._shared_buffer
        if shared is not None and buf is not None:
            if buf.grad is shared.buffer:
                buf.move_grad(np.empty_like(buf.grad))
            shared.in_use = False
        self._shared = self._shared_buffer = None
