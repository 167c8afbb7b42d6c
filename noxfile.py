"""Developer sessions: ``nox -s tests-cpu``, ``tests-gpu``, ``lint``, ``docs``, ``bench``,
``mutants``."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests-cpu"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
SHARED_DATA = ROOT.parent / "shared" / "datasets"


def _data_env() -> dict[str, str]:
    """Point the MNIST tests at the shared copy when it exists and nothing else was chosen."""
    if "XPNET_DATA_DIR" not in os.environ and (SHARED_DATA / "mnist").is_dir():
        return {"XPNET_DATA_DIR": str(SHARED_DATA)}
    return {}


@nox.session(name="tests-cpu")
def tests_cpu(session: nox.Session) -> None:
    """The whole suite on the numpy and array_api_strict backends (no GPU needed)."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"XPNET_TEST_BACKENDS": "numpy,array_api_strict", **_data_env()},
    )


def cuda_major(smi_output: str | None, override: str | None = None) -> str:
    """The CUDA major version ("12" or "13") whose CuPy wheel to install.

    ``override`` (``XPNET_CUDA``) wins; otherwise the driver's "CUDA Version" in the output of
    ``nvidia-smi`` (the newest CUDA it runs: 13.x or later takes the CUDA 13 wheel).

    Raises
    ------
    ValueError
        With the reason in one line: a bad override, no nvidia-smi output, no version in it,
        or a driver older than CUDA 12 (CuPy 14 needs 12 or later).
    """
    if override is not None and override.strip():
        choice = override.strip()
        if choice not in ("12", "13"):
            raise ValueError(f"XPNET_CUDA must be 12 or 13, got {override!r}")
        return choice
    if smi_output is None:
        raise ValueError(
            "nvidia-smi not found or failed (no NVIDIA driver?); set XPNET_CUDA=12 or 13 to "
            "choose the CuPy wheel yourself"
        )
    found = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", smi_output)
    if found is None:
        raise ValueError("nvidia-smi printed no 'CUDA Version'; set XPNET_CUDA=12 or 13")
    major = int(found.group(1))
    if major < 12:
        raise ValueError(
            f"the NVIDIA driver supports CUDA {found.group(1)}.{found.group(2)}; CuPy 14 needs "
            "CUDA 12 or later: update the driver"
        )
    return "13" if major >= 13 else "12"


def _nvidia_smi() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


#: Run before the GPU suite: each way CuPy can fail is one line and a non-zero exit here
#: instead of dozens of failed tests. ``@CUDA@`` stands for the CUDA major of the wheel.
GPU_PROBE = """
import sys


def fail(what, exc=None):
    why = "" if exc is None else f" ({type(exc).__name__}: {' '.join(str(exc).split())})"
    sys.exit(f"tests-gpu: {what}{why}")


try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:
    fail("no usable CUDA device", exc)
if not n:
    fail("CuPy sees no CUDA device")
try:  # compiles (NVRTC) and runs one kernel
    assert int((cupy.arange(4) * 2).sum()) == 12
except Exception as exc:
    fail("CuPy cannot compile or run a kernel: install cupy-cuda@CUDA@x[ctk] or the toolkit", exc)
try:  # a matrix product: cuBLAS
    a = cupy.ones((64, 64), dtype=cupy.float32)
    assert float((a @ a).sum()) == 64.0**3
except Exception as exc:
    fail("CuPy cannot run a matrix product (no cuBLAS?): install cupy-cuda@CUDA@x[ctk]", exc)
"""


@nox.session(name="tests-gpu")
def tests_gpu(session: nox.Session) -> None:
    """The whole suite on cupy plus the numpy-vs-cupy agreement tests; needs a CUDA device.

    The CuPy wheel follows the driver (``nvidia-smi``'s "CUDA Version"); ``XPNET_CUDA=12`` or
    ``13`` overrides it.
    """
    try:
        cuda = cuda_major(_nvidia_smi(), os.environ.get("XPNET_CUDA"))
    except ValueError as exc:
        session.error(f"tests-gpu: {exc}")
    session.log(f"tests-gpu: installing the CuPy wheel for CUDA {cuda}")
    session.install("-e", f".[dev,cuda{cuda}]")
    session.run("python", "-c", GPU_PROBE.replace("@CUDA@", cuda))
    tf32 = os.environ.get("CUPY_TF32", "0")
    session.log(f"tests-gpu: CUPY_TF32={tf32} (float32 agreement tolerance follows it)")
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={
            "XPNET_TEST_BACKENDS": "cupy",
            "XPNET_REQUIRE_GPU": "1",
            "CUPY_TF32": tf32,
            **_data_env(),
        },
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check, and mypy on the package (configured in pyproject.toml).

    The package is installed with its optional dependencies so that mypy checks the calls
    into the typed ones (NumPy, matplotlib, safetensors, ...) the same way everywhere.
    """
    session.install("-e", ".[dev]", "ruff>=0.6", "mypy>=1.10")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors (into docs/_build/html), then
    check in headless Chromium, offline, that its maths renders (docs/_tools/check_rendered.py;
    ``nox -s docs -- --screenshot-dir DIR`` also writes a PNG of each page checked).

    The browser check is skipped, with a log line, where no Chromium is installed
    (``apt-get install chromium`` on Debian). The pages' code examples are run by
    tests/test_docs_examples.py in the test sessions.
    """
    session.install("-e", ".[docs]")
    # From scratch, so that no page of an earlier build is left for the check below to read.
    shutil.rmtree(ROOT / "docs" / "_build" / "html", ignore_errors=True)
    session.run(
        "sphinx-build", "-W", "--keep-going", "-E", "-b", "html", "docs", "docs/_build/html"
    )
    check = ["python", "docs/_tools/check_rendered.py", "docs/_build/html"]
    # Every page with maths is checked anyway; also the serving page and each notebook page.
    docs_dir = ROOT / "docs"
    notebooks = [p for p in docs_dir.rglob("*.ipynb") if "_build" not in p.parts]
    pages = ["--page", "serving.html"]
    for nb in notebooks:
        pages += ["--page", nb.relative_to(docs_dir).with_suffix(".html").as_posix()]
    browser = next((b for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    if browser is None:
        session.log(
            "docs: no chromium on the PATH, so the rendered-site check is SKIPPED "
            "(install it with: apt-get install chromium)"
        )
        return
    session.run(*check, *pages, "--browser", browser, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side training benchmark: xpnet vs PyTorch vs scikit-learn (see benchmarks/)."""
    session.install("-e", ".[dev]", "torch==2.13.0")
    session.run("python", "benchmarks/bench_cpu.py", *session.posargs, env=_data_env())
    # The GPU cases need CuPy, a large download; only fetch it where an NVIDIA driver exists.
    if shutil.which("nvidia-smi"):
        session.install("-e", f".[cuda{os.environ.get('XPNET_CUDA', '13')}]")
        session.run("python", "benchmarks/bench_gpu.py", env=_data_env())
    else:
        session.log("bench: no NVIDIA driver (nvidia-smi) here, GPU cases skipped")


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing of the core with mutmut ([tool.mutmut] in pyproject.toml).

    Each mutant runs only the tests that cover the mutated function, on NumPy alone and
    without the slow and MNIST tests. Prints the score and the surviving mutants; see
    docs/testing.md for triage. ``nox -s mutants -- "xpnet.losses*"`` tries (and reports) only
    the mutants whose names match. Results stay in mutants/, so a rerun only tries what changed.
    """
    session.install("-e", ".[dev,mutants]")
    env = {"XPNET_TEST_BACKENDS": "numpy", "OPENBLAS_NUM_THREADS": "1"}
    # mutmut forks a child per mutant from a process that has run numba's parallel kernels;
    # numba's default threading layer here, GNU OpenMP, ends such a child with SIGTERM
    # ("fork() called from a process already using GNU OpenMP"), which mutmut reports as
    # "suspicious". The workqueue layer survives a fork.
    env["NUMBA_THREADING_LAYER"] = "workqueue"
    children = str(max(1, os.cpu_count() or 1))
    session.run("mutmut", "run", "--max-children", children, *session.posargs, env=env)
    out = session.run("mutmut", "results", "--all", "true", env=env, silent=True)
    patterns = list(session.posargs) or ["*"]
    counts: dict[str, int] = {}
    survivors = []
    for line in str(out).splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        counts[status] = counts.get(status, 0) + 1
        if status not in ("killed", "timeout", "segfault", "not checked", "caught by type check"):
            survivors.append(f"  {status:>10}  {name}")
    # A mutant that hangs or crashes the tests (timeout, segfault) is caught as surely as one
    # that fails them.
    killed = sum(counts.get(k, 0) for k in ("killed", "timeout", "segfault"))
    tried = killed + counts.get("survived", 0) + counts.get("no tests", 0)
    score = 100.0 * killed / tried if tried else 0.0
    for line in survivors:
        print(line)
    print(
        f"mutants: {killed} killed of {tried} tried ({score:.1f}%); "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
    print("  `mutmut show NAME` prints a mutant's diff; triage it as docs/testing.md says")
