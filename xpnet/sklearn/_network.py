"""The estimators' network: Dense layers with the hidden activation and xpnet's optional norms,
and where scikit-learn's ``coefs_`` and ``intercepts_`` sit among its weights."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..layers import Dense
from ..model import Sequential
from ..recipe import HIDDEN_ACTIVATIONS, NORMS

__all__ = [
    "DenseWeights",
    "build_network",
    "check_batch_norm_batches",
    "dense_slots",
    "set_dense_weights",
]


def build_network(
    layer_units: list[int], dtype: str, activation: str | None, norm: str, backend: str
) -> Sequential:
    """``Dense → [norm] → activation`` per hidden layer, then a linear ``Dense``.

    ``activation`` is xpnet's canonical name (None: linear). Without a norm the activation
    is fused into the Dense, as the estimators always built it; with one, the norm sits
    between the Dense and its activation, as :func:`xpnet.recipe.build_model` places it.
    """
    norm_layer = NORMS[norm]
    layers: list[Any] = []
    for a, b in itertools.pairwise(layer_units[:-1]):
        if norm_layer is None:
            layers.append(Dense(a, b, activation=activation))
            continue
        layers.append(Dense(a, b))
        layers.append(norm_layer(b))
        if activation is not None:
            layers.append(HIDDEN_ACTIVATIONS[activation]())
    layers.append(Dense(layer_units[-2], layer_units[-1]))
    return Sequential(layers, dtype=dtype, seed=0, backend=backend)


def dense_slots(model: Sequential) -> list[int]:
    """Positions of the Dense ``W`` and ``b`` in ``model.get_weights()``: the norms' ``weight``
    and ``bias`` sit between them and are not scikit-learn's ``coefs_``/``intercepts_``."""
    return [i for i, p in enumerate(model.parameters()) if p.name in ("W", "b")]


def set_dense_weights(model: Sequential, dense: list[np.ndarray]) -> None:
    """Write the Dense weights (``W``, ``b`` per layer) and leave the norms' as they are."""
    weights = model.get_weights()
    for i, w in zip(dense_slots(model), dense, strict=True):
        weights[i] = w
    model.set_weights(weights)


def check_batch_norm_batches(n: int, batch_size: int) -> None:
    """ValueError when a training batch would hold one row: BatchNorm estimates a variance
    per training batch and a single row has none."""
    if n < 2:
        raise ValueError(
            f"xpnet: norm='batch' needs at least 2 training samples per batch to estimate a "
            f"variance, got n_samples={n}"
        )
    if n % batch_size == 1:
        raise ValueError(
            f"xpnet: norm='batch' with batch_size={batch_size} leaves a last batch of one of "
            f"the {n} training samples, which has no variance; pick a batch_size that does "
            "not divide n_samples - 1 (or norm='layer')"
        )


class DenseWeights:
    """scikit-learn's ``coefs_`` and ``intercepts_`` over the estimator's ``model_``: host
    copies of the Dense weights, settable (before any fit they are kept for the next one)."""

    model_: Sequential

    def _host_weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        all_weights = self.model_.get_weights()
        weights = [all_weights[i] for i in dense_slots(self.model_)]
        return weights[0::2], weights[1::2]

    def _set_part(self, part: int, values: Any) -> None:
        if "model_" not in self.__dict__:
            self.__dict__["_given_coefs" if part == 0 else "_given_intercepts"] = values
            return
        all_weights = self.model_.get_weights()
        slots = dense_slots(self.model_)
        weights = [all_weights[i] for i in slots]
        values = list(values)
        if len(values) != len(weights) // 2:
            raise ValueError(
                f"xpnet: expected {len(weights) // 2} arrays, one per layer, got {len(values)}"
            )
        weights[part::2] = [np.asarray(v) for v in values]
        set_dense_weights(self.model_, weights)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, layer by layer (shape (in, out)): host copies of the network's.

        Assigning a list (same shapes) writes it into the network; before any fit it becomes
        the starting point of the next ``partial_fit`` or warm-started ``fit``.
        """
        if "model_" in self.__dict__:
            return self._host_weights()[0]
        if "_given_coefs" in self.__dict__:
            return self.__dict__["_given_coefs"]
        raise AttributeError("coefs_")

    @coefs_.setter
    def coefs_(self, values: Any) -> None:
        self._set_part(0, values)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, layer by layer; settable like :attr:`coefs_`."""
        if "model_" in self.__dict__:
            return self._host_weights()[1]
        if "_given_intercepts" in self.__dict__:
            return self.__dict__["_given_intercepts"]
        raise AttributeError("intercepts_")

    @intercepts_.setter
    def intercepts_(self, values: Any) -> None:
        self._set_part(1, values)
