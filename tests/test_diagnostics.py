"""xpnet.diagnostics: collect_info / format_info (`xpnet info`), run_check (`xpnet check`)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import xpnet
from xpnet import backend as backend_module
from xpnet.cli import main
from xpnet.diagnostics import (
    CHECK_TF32_RTOL,
    check_backends,
    collect_info,
    format_check,
    format_info,
    run_check,
)
from xpnet.diagnostics import check as check_module
from xpnet.errors import BackendUnavailableError

HAVE_STRICT = importlib.util.find_spec("array_api_strict") is not None
CUPY_REASON = backend_module.unavailable_reason("cupy")
needs_strict = pytest.mark.skipif(not HAVE_STRICT, reason="array-api-strict is not installed")
needs_no_cupy = pytest.mark.skipif(CUPY_REASON is None, reason="the cupy backend runs here")


# --------------------------------------------------------------------------- info
def test_collect_info_reports_versions_backends_and_blas():
    info = collect_info()
    json.dumps(info)  # JSON-serialisable as it is
    assert info["xpnet"] == xpnet.__version__
    packages = {p["name"]: p for p in info["packages"]}
    assert packages["numpy"]["version"] == np.__version__
    assert {"array-api-compat", "cupy", "array-api-strict"} <= set(packages)
    assert packages["cupy"]["extra"] == "cuda12 / cuda13"
    backends = {b["name"]: b for b in info["backends"]}
    assert list(backends) == list(backend_module.BACKEND_NAMES)
    numpy = backends["numpy"]
    assert numpy["available"] and numpy["device"] == "cpu (NumPy)"
    assert numpy["kernels"] in ("fast", "compiled")
    assert backends["cupy"]["available"] == (CUPY_REASON is None)
    if CUPY_REASON is not None:
        assert backends["cupy"]["reason"] == CUPY_REASON
    if HAVE_STRICT:
        assert backends["array_api_strict"]["kernels"] == "portable"
    assert isinstance(info["blas"], list)
    for pool in info["blas"]:
        assert "error" in pool or isinstance(pool["num_threads"], int)


def test_format_info_shows_every_section(monkeypatch):
    monkeypatch.setenv("XPNET_KERNELS", "portable")
    text = format_info(collect_info())
    for heading in ("packages:", "CUDA (through CuPy):", "backends:", "BLAS (threadpoolctl):"):
        assert f"\n{heading}\n" in text
    assert text.splitlines()[0] == f"xpnet {xpnet.__version__}"
    assert "XPNET_KERNELS=portable" in text
    assert "  numpy " in text and "available: cpu (NumPy)" in text
    if CUPY_REASON is not None:
        assert "unavailable: " + CUPY_REASON in text


def test_collect_info_survives_a_backend_that_crashes(monkeypatch):
    def broken():
        raise OSError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setitem(backend_module._FACTORIES, "cupy", broken)
    monkeypatch.delitem(backend_module._cache, "cupy", raising=False)
    backends = {b["name"]: b for b in collect_info()["backends"]}
    assert backends["cupy"] == {
        "name": "cupy",
        "available": False,
        "reason": "OSError: libcudart.so.12: cannot open shared object file",
    }
    assert backends["numpy"]["available"]


# --------------------------------------------------------------------------- check
@needs_strict
def test_run_check_agrees_on_the_cpu_backends():
    report = run_check(steps=4, speed=False)
    assert [b.backend for b in report.backends] == check_backends()
    strict = next(b for b in report.backends if b.backend == "array_api_strict")
    assert [d.dtype for d in strict.dtypes] == ["float64", "float32"]
    f64, f32 = strict.dtypes
    assert (f64.rtol, f32.rtol) == (1e-10, 1e-4) and not f32.tf32
    assert report.agree and strict.agree
    # The two backends really trained (non-zero steps, different from the start).
    assert f64.weights <= 1e-12 and f32.weights <= 1e-5
    text = format_check(report)
    assert text.splitlines()[-1] == "agree"
    assert "array_api_strict on cpu (array-api-strict):" in text
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["agree"] is True and data["backends"][0]["dtypes"][0]["agree"] is True


@needs_strict
def test_run_check_times_both_backends():
    report = run_check("array_api_strict", steps=2, dtypes=("float32",))
    assert report.numpy_steps_per_second > 0
    assert report.backends[0].steps_per_second > 0
    assert "steps/s, numpy" in format_check(report)


@needs_strict
def test_run_check_reports_a_disagreement(monkeypatch):
    # A backend whose weights come out 1e-3 off (a broken kernel, say) must be caught.
    real = check_module._trace

    def skewed(name, dtype, steps, batch, seed):
        trace = real(name, dtype, steps, batch, seed)
        if name != "numpy":
            trace["weights"] = [w * (1 + 1e-3) for w in trace["weights"]]
        return trace

    monkeypatch.setattr(check_module, "_trace", skewed)
    report = run_check("array_api_strict", steps=3, speed=False)
    assert not report.agree
    for d in report.backends[0].dtypes:
        assert d.weights == pytest.approx(1e-3, rel=1e-3) and not d.agree
        assert d.loss <= d.rtol and d.gradients <= d.rtol
    lines = format_check(report).splitlines()
    assert lines[-1] == "DISAGREE"
    assert [line.split()[-1] for line in lines if line.startswith("  float")] == ["DISAGREE"] * 2


@needs_strict
def test_run_check_uses_the_tf32_tolerance_when_tf32_is_on(monkeypatch):
    monkeypatch.setattr("xpnet.testing.tf32_active", lambda backend=None: True)
    report = run_check("array_api_strict", steps=2, speed=False)
    f64, f32 = report.backends[0].dtypes
    assert f32.tf32 and f32.rtol == CHECK_TF32_RTOL == 1e-2
    assert not f64.tf32 and f64.rtol == 1e-10
    assert "1e-02 tf32" in format_check(report)


@needs_strict
def test_a_backend_failing_mid_check_is_one_clear_error(monkeypatch):
    real = check_module._trace

    def failing(name, *args):
        if name != "numpy":
            raise RuntimeError("cuBLAS\nnot found")
        return real(name, *args)

    monkeypatch.setattr(check_module, "_trace", failing)
    with pytest.raises(BackendUnavailableError) as info:
        run_check("array_api_strict", steps=2, speed=False)
    message = str(info.value)
    assert "\n" not in message
    assert "'array_api_strict' backend failed while running the check" in message
    assert "RuntimeError: cuBLAS not found" in message


@needs_no_cupy
def test_run_check_on_a_missing_backend_says_why():
    with pytest.raises(BackendUnavailableError, match="the 'cupy' backend needs"):
        run_check("cupy")


def test_run_check_refuses_bad_arguments():
    with pytest.raises(ValueError, match="check compares a backend with NumPy"):
        run_check("numpy")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        run_check("tpu")
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        run_check(steps=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        run_check(dtypes=("float16",))
    with pytest.raises(ValueError, match="batch_size must be at most 512, got 513"):
        run_check(batch_size=513)


def test_check_without_another_backend_is_an_error(monkeypatch):
    monkeypatch.setattr(backend_module, "unavailable_reason", lambda name: f"no {name} here")
    with pytest.raises(BackendUnavailableError, match="no backend besides numpy can run here"):
        check_backends()


def test_relative_difference_is_norm_wise():
    rel = check_module._relative
    assert rel(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel(np.array([1.0, 2.01]), np.array([1.0, 2.0])) == pytest.approx(0.005)
    # A tiny entry formed by cancellation does not dominate.
    assert rel(np.array([4.0, 2e-9]), np.array([4.0, 1e-9])) == pytest.approx(2.5e-10)
    assert rel(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) == 0.0
    assert rel(np.array([np.nan, 1.0]), np.array([0.0, 1.0])) == float("inf")
    assert rel(np.zeros(2), np.array([0.0, 1e-30])) == 1.0
    assert rel(np.ones(2), np.zeros(2)) == float("inf")
    assert rel(np.ones(3), np.ones(2)) == float("inf")


# --------------------------------------------------------------------------- command line
def test_cli_info_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "info.json"
    assert main(["info", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"xpnet {xpnet.__version__}\n")
    assert json.loads(out.read_text())["xpnet"] == xpnet.__version__


@needs_strict
def test_cli_check_agrees_and_exits_0(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["check", "--steps", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1] == "agree"
    assert json.loads(out.read_text())["agree"] is True


@needs_no_cupy
def test_cli_check_on_cupy_without_it_is_one_error_line(capsys):
    assert main(["check", "--backend", "cupy"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xpnet: error: the 'cupy' backend needs")


def test_cli_check_rejects_bad_steps(capsys):
    assert main(["check", "--steps", "0"]) == 2
    assert "--steps: expected a positive integer, got '0'" in capsys.readouterr().err
