"""How many threads the BLAS library may use while xpnet trains on the CPU.

The matrix products of a small MLP are too small for many BLAS threads to share well: on a
busy machine OpenBLAS's spinning threads can make training several times slower (see
``benchmarks/NOTES.md``). xpnet never overrides a choice the user made, through
:func:`set_blas_threads`, ``XPNET_BLAS_THREADS``, or the BLAS library's own variables.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["blas_threads", "get_blas_threads", "set_blas_threads", "with_blas_threads"]

F = TypeVar("F", bound=Callable[..., Any])

_USER_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_chosen: int | None = None


def set_blas_threads(n: int | None) -> None:
    """Limit BLAS to ``n`` threads inside ``fit``/``evaluate``/``predict`` (None: no limit)."""
    global _chosen
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"xpnet: BLAS thread count must be a positive integer or None, got {n!r}")
    _chosen = n


def get_blas_threads() -> int | None:
    """The BLAS thread limit xpnet applies, or None when it leaves BLAS as configured.

    In order: :func:`set_blas_threads`; ``XPNET_BLAS_THREADS``; None if any of
    ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set (the user's
    choice, already in force); else None (the library's default).
    """
    if _chosen is not None:
        return _chosen
    value = os.environ.get("XPNET_BLAS_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"xpnet: XPNET_BLAS_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return None


@contextlib.contextmanager
def blas_threads() -> Iterator[None]:
    """Apply :func:`get_blas_threads` for the duration of a ``with`` block."""
    n = get_blas_threads()
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def with_blas_threads(func: F) -> F:
    """Decorator: run ``func`` under :func:`blas_threads`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with blas_threads():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
