"""xpnet: deep fully-connected networks from scratch, on NumPy or CuPy through one namespace.

>>> import xpnet
>>> from xpnet import Sequential
>>> from xpnet.layers import Dense, ReLU
>>> model = Sequential([Dense(4, 8), ReLU(), Dense(8, 3)], seed=0)
>>> [w.shape for w in model.get_weights()]
[(4, 8), (8,), (8, 3), (3,)]
"""

from __future__ import annotations

from . import initializers, layers, losses, metrics, optimizers
from ._version import __version__
from .backend import Backend, get_backend, set_backend, to_numpy, use_backend
from .errors import (
    BackendUnavailableError,
    CheckpointError,
    DataError,
    DivergenceError,
    XpnetError,
)
from .history import History
from .io.loader import load_model
from .model import Sequential
from .threads import set_blas_threads

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "CheckpointError",
    "DataError",
    "DivergenceError",
    "History",
    "Sequential",
    "XpnetError",
    "__version__",
    "get_backend",
    "initializers",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "optimizers",
    "set_backend",
    "set_blas_threads",
    "to_numpy",
    "use_backend",
]
