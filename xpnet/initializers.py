"""Weight initializers, drawn on the host so every backend starts from the same numbers.

Each initializer maps ``(rng, fan_in, fan_out)`` to a float64 NumPy array of shape
``(fan_in, fan_out)``; the model casts it to its dtype and moves it to its backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["INITIALIZERS", "default_initializer_for", "get_initializer"]

Initializer = Callable[[np.random.Generator, int, int], np.ndarray]


def _uniform(limit: float) -> Initializer:
    def init(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
        return rng.uniform(-limit, limit, size=(fan_in, fan_out))

    return init


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Kaiming He normal: N(0, 2 / fan_in); keeps ReLU activations' variance constant."""
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)


def he_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Kaiming He uniform: U(-sqrt(6 / fan_in), sqrt(6 / fan_in))."""
    return _uniform(math.sqrt(6.0 / fan_in))(rng, fan_in, fan_out)


def glorot_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out)); for tanh, sigmoid and linear."""
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / (fan_in + fan_out))


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform: U(-sqrt(6 / (fan_in + fan_out)), +sqrt(...))."""
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)))(rng, fan_in, fan_out)


def lecun_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """LeCun normal: N(0, 1 / fan_in)."""
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(1.0 / fan_in)


def lecun_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """LeCun uniform: U(-sqrt(3 / fan_in), sqrt(3 / fan_in))."""
    return _uniform(math.sqrt(3.0 / fan_in))(rng, fan_in, fan_out)


def zeros(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """All zeros (for tests and linear probes; a hidden layer needs random weights)."""
    return np.zeros((fan_in, fan_out))


INITIALIZERS: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
}

# ReLU-family units halve the variance they pass on, which He's factor 2 makes up for;
# saturating and linear units want Glorot's balance of forward and backward variance.
_DEFAULT_FOR_ACTIVATION = {
    "relu": "he_uniform",
    "leaky_relu": "he_uniform",
    "tanh": "glorot_uniform",
    "sigmoid": "glorot_uniform",
    "softmax": "glorot_uniform",
    None: "glorot_uniform",
}


def get_initializer(name: str) -> Initializer:
    """Return the initializer called ``name`` (see :data:`INITIALIZERS`)."""
    if not isinstance(name, str) or name.lower() not in INITIALIZERS:
        raise ValueError(
            f"xpnet: unknown initializer {name!r}; valid names are: "
            f"{', '.join(sorted(INITIALIZERS))}"
        )
    return INITIALIZERS[name.lower()]


def default_initializer_for(activation: str | None) -> str:
    """Return the initializer name xpnet uses for a layer followed by ``activation``."""
    return _DEFAULT_FOR_ACTIVATION.get(activation, "glorot_uniform")
