"""Shared by the optimizer-update tests: a model's flat parameters with random gradients, and
the two numbers of a loss that ``SampleL2`` reads."""

from __future__ import annotations

import numpy as np

from xpnet import Sequential
from xpnet.layers import Dense


def params_with_gradients(seed: int = 0) -> list:
    """A small model's parameters (one flat buffer), each with a random gradient set."""
    model = Sequential([Dense(5, 4, activation="relu"), Dense(4, 3)], seed=seed)
    params = model.parameters()
    rng = np.random.default_rng(seed)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape).astype(p.grad.dtype)
    return params


class BatchLoss:
    """What SampleL2 reads of the loss: the batch's rows and 1 / sum(w)."""

    def __init__(self, rows: int = 8) -> None:
        self.batch_rows, self.inverse_weight_sum = rows, 1.0 / rows
