"""GPU installation plumbing that the CPU can check: the CuPy extras and ``nox -s tests-gpu``."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@functools.cache  # nox warns when a noxfile's sessions are registered twice
def _load_noxfile():
    spec = importlib.util.spec_from_file_location("xpnet_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _noxfile():
    pytest.importorskip("nox")
    return _load_noxfile()


def test_cuda_extras_bring_the_cuda_toolkit():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    # Without [ctk] CuPy 14 finds no CUDA headers (no kernel compiles) and no cuBLAS.
    assert extras["cuda12"] == ["cupy-cuda12x[ctk]>=14"]
    assert extras["cuda13"] == ["cupy-cuda13x[ctk]>=14"]


SMI = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: {v}     |
|-----------------------------------------+------------------------+----------------------+
"""


@pytest.mark.parametrize(
    ("version", "expected"), [("12.2", "12"), ("12.8", "12"), ("13.0", "13"), ("14.1", "13")]
)
def test_tests_gpu_picks_the_wheel_from_the_driver(version, expected):
    assert _noxfile().cuda_major(SMI.format(v=version)) == expected


def test_xpnet_cuda_overrides_the_driver():
    nox_file = _noxfile()
    assert nox_file.cuda_major(SMI.format(v="13.0"), "12") == "12"
    assert nox_file.cuda_major(None, " 13 ") == "13"
    assert nox_file.cuda_major(SMI.format(v="12.4"), "") == "12"  # empty: not set
    with pytest.raises(ValueError, match="XPNET_CUDA must be 12 or 13, got '11'"):
        nox_file.cuda_major(SMI.format(v="13.0"), "11")


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (None, "nvidia-smi not found or failed"),
        ("NVIDIA-SMI has failed because it couldn't communicate", "printed no 'CUDA Version'"),
        (SMI.format(v="11.8"), "supports CUDA 11.8; CuPy 14 needs CUDA 12 or later"),
    ],
)
def test_tests_gpu_explains_when_it_cannot_choose(output, message):
    with pytest.raises(ValueError, match=message):
        _noxfile().cuda_major(output)


def test_gpu_probe_runs_a_matrix_product_and_fails_in_one_line():
    probe = _noxfile().GPU_PROBE.replace("@CUDA@", "12")
    compile(probe, "probe", "exec")
    assert "a @ a" in probe and "cupy-cuda12x[ctk]" in probe
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: the probe's failure path cannot be run here")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "tests-gpu: no usable CUDA device (ModuleNotFoundError: No module named 'cupy')"
    ]


# --------------------------------------------------------------------------- gpu_run.sh
GPU_RUN = ROOT / "benchmarks" / "gpu_run.sh"


def test_gpu_run_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(GPU_RUN)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    done = subprocess.run([shellcheck, str(GPU_RUN)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.slow
def test_gpu_run_without_a_gpu_skips_the_gpu_stages_and_exits_0(tmp_path):
    from xpnet.backend import unavailable_reason

    if unavailable_reason("cupy") is None:
        pytest.skip("a GPU is here: the dry run is for machines without one")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(GPU_RUN), "--budget", "120", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text())
    stages = {s["name"]: s for s in results["stages"]}
    assert results["ok"] and results["gpu"] is None and results["no_gpu_reason"]
    assert stages["info"]["status"] == "ok"
    assert json.loads((out / "info.json").read_text())["backends"][0]["name"] == "numpy"
    for name in ("check", "tests", "agreement", "bench", "train", "cuda-graph"):
        assert stages[name]["status"] == "skipped", name
        assert stages[name]["note"] == "skipped: no CUDA device"
    assert "stage info: ok" in (out / "gpu_run.log").read_text()
