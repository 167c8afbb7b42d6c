"""Developer sessions: ``nox -s tests-cpu``, ``tests-gpu``, ``lint``, ``docs``, ``bench``,
``mutants``."""

from __future__ import annotations

import fnmatch
import os
import shutil
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


@nox.session(name="tests-gpu")
def tests_gpu(session: nox.Session) -> None:
    """The whole suite on cupy plus the numpy-vs-cupy agreement tests; needs a CUDA device."""
    cuda = os.environ.get("XPNET_CUDA", "13")
    session.install("-e", f".[dev,cuda{cuda}]")
    probe = (
        "import sys\n"
        "try:\n"
        "    import cupy\n"
        "    n = cupy.cuda.runtime.getDeviceCount()\n"
        "except Exception as exc:\n"
        "    sys.exit(f'tests-gpu: no usable CUDA device ({exc})')\n"
        "if not n:\n"
        "    sys.exit('tests-gpu: CuPy sees no CUDA device')\n"
        "try:\n"  # compiles (NVRTC) and runs one kernel: fails here, not in every test
        "    assert int((cupy.arange(4) * 2).sum()) == 12\n"
        "except Exception as exc:\n"
        "    sys.exit(f'tests-gpu: CuPy cannot compile or run a kernel ({exc}); '\n"
        "             'install the CUDA toolkit or cupy-cuda12x[ctk]')\n"
    )
    session.run("python", "-c", probe)
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
    """Build the documentation site with warnings as errors (into docs/_build/html).

    The pages' code examples are run by tests/test_docs_examples.py in the test sessions.
    """
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-E", "-b", "html", "docs", "docs/_build/html"
    )


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
        if status not in ("killed", "timeout", "not checked", "caught by type check"):
            survivors.append(f"  {status:>10}  {name}")
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    tried = killed + counts.get("survived", 0) + counts.get("no tests", 0)
    score = 100.0 * killed / tried if tried else 0.0
    for line in survivors:
        print(line)
    print(
        f"mutants: {killed} killed of {tried} tried ({score:.1f}%); "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
    print("  `mutmut show NAME` prints a mutant's diff; triage it as docs/testing.md says")
