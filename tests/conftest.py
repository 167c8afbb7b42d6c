"""Shared fixtures: the backend each test runs on, backend restoration, a seeded generator.

``XPNET_TEST_BACKENDS`` (comma list, default ``numpy,array_api_strict,cupy``) picks the backends
the ``backend``/``xp`` fixtures run on. A backend whose package or device is missing is skipped
with the reason, except that ``XPNET_REQUIRE_GPU=1`` turns a missing CuPy/CUDA into a failure,
so a GPU CI job cannot pass by skipping everything.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

import xpnet
from xpnet.backend import BACKEND_NAMES

DEFAULT_TEST_BACKENDS = "numpy,array_api_strict,cupy"

# tqdm's default write lock is a multiprocessing lock, shared by every process forked after it
# was made: mutmut forks a child per mutant, and one killed while drawing a bar (a mutant that
# makes the bar spin past its time limit) leaves it held for all the others, which then wait
# forever in their first bar. A lock of each process's own, and no monitor thread (which takes
# it every few seconds), keep the children apart.
with contextlib.suppress(ImportError):
    import threading

    import tqdm

    tqdm.tqdm.set_lock(threading.RLock())
    tqdm.tqdm.monitor_interval = 0


def _selected_backends() -> list[str]:
    raw = os.environ.get("XPNET_TEST_BACKENDS", "") or DEFAULT_TEST_BACKENDS
    names = [n.strip().lower().replace("-", "_") for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown or not names:
        raise pytest.UsageError(
            f"XPNET_TEST_BACKENDS={raw!r}: unknown backend(s) {unknown}; "
            f"choose from {', '.join(BACKEND_NAMES)}"
        )
    return list(dict.fromkeys(names))


SELECTED_BACKENDS = _selected_backends()


def _param(name: str) -> object:
    marks = [pytest.mark.gpu] if name == "cupy" else []
    return pytest.param(name, marks=marks, id=name)


def _activate(name: str, stack: contextlib.ExitStack) -> xpnet.Backend:
    try:
        return stack.enter_context(xpnet.use_backend(name))
    except xpnet.BackendUnavailableError as exc:
        if os.environ.get("XPNET_REQUIRE_GPU") == "1" and name == "cupy":
            pytest.fail(f"XPNET_REQUIRE_GPU=1 but the cupy backend is unavailable: {exc}")
        pytest.skip(f"backend {name!r} unavailable: {exc}")


@pytest.fixture(params=[_param(n) for n in SELECTED_BACKENDS])
def backend(request):
    """The Backend under test, active (``xpnet.use_backend``) for the whole test."""
    with contextlib.ExitStack() as stack:
        yield _activate(request.param, stack)


@pytest.fixture(params=[_param(n) for n in SELECTED_BACKENDS if n != "numpy"])
def other_backend(request):
    """A selected backend other than NumPy, to compare against NumPy; not left active."""
    with contextlib.ExitStack() as stack:
        found = _activate(request.param, stack)
    return found


@pytest.fixture
def xp(backend):
    """The array namespace of the backend under test."""
    return backend.xp


@pytest.fixture(autouse=True)
def _restore_backend():
    """Put the active backend back after each test, whatever the test switched to."""
    saved = xpnet.get_backend()
    yield
    xpnet.set_backend(saved)


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded host generator (the same numbers in every test that asks for one)."""
    return np.random.default_rng(20240531)
