"""The package as users get it: a wheel that installs and runs in a fresh environment, an sdist
that holds what a rebuild needs, one version everywhere, and no scikit-learn at import time."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

import xpnet

ROOT = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would let the repository shadow the install."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: list[str | os.PathLike[str]], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def _build(kind: str, out: Path) -> Path:
    """Build a wheel or sdist with `python -m build` (offline when hatchling is installed)."""
    if importlib.util.find_spec("build") is None:
        pytest.fail('building needs the "build" package: pip install -e ".[dev]"')
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-isolation"]
    out.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "build", f"--{kind}", *isolation, "--outdir", out, ROOT], out)
    (built,) = out.glob("*.whl" if kind == "wheel" else "*.tar.gz")
    return built


def test_version_comes_from_one_place():
    source = (ROOT / "xpnet" / "_version.py").read_text()
    (version,) = re.findall(r'^__version__ = "([^"]+)"$', source, re.M)
    assert xpnet.__version__ == version
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", version)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'path = "xpnet/_version.py"' in pyproject
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text(), "CHANGELOG lacks a section"


def test_typed_marker_ships():
    assert (ROOT / "xpnet" / "py.typed").is_file()


def test_importing_xpnet_does_not_import_sklearn():
    # Every module but xpnet.sklearn (the estimators) and xpnet.__main__ (runs the CLI).
    code = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        import xpnet
        skipped = {"xpnet.sklearn", "xpnet.__main__"}
        imported, optional = [], []

        def walk(path, prefix):
            # pkgutil.walk_packages imports every package to look inside it, skipped or not.
            for info in pkgutil.iter_modules(path, prefix):
                if info.name in skipped:
                    continue
                yield info
                if info.ispkg:
                    sub = importlib.import_module(info.name)
                    yield from walk(sub.__path__, info.name + ".")

        for info in walk(xpnet.__path__, "xpnet."):
            try:
                importlib.import_module(info.name)
                imported.append(info.name)
            except ImportError:
                optional.append(info.name)  # e.g. CuPy kernels without CuPy
        leaked = sorted(m for m in sys.modules if m == "sklearn" or m.startswith("sklearn."))
        print(json.dumps({"imported": imported, "optional": optional, "leaked": leaked}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"xpnet.model", "xpnet.cli", "xpnet.datasets", "xpnet.checkpoint"} <= set(
        result["imported"]
    )
    assert result["leaked"] == [], f"importing xpnet pulled in {result['leaked']}"


@pytest.mark.slow
def test_sdist_holds_the_sources_tests_and_docs(tmp_path):
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    version = xpnet.__version__
    assert sdist.name == f"xpnet-{version}.tar.gz"
    for needed in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "xpnet/__init__.py",
        "xpnet/py.typed",
        "tests/test_packaging.py",
        "docs/conf.py",
        "docs/index.md",
    ):
        assert needed in names, f"{needed} missing from the sdist"
    assert not [n for n in names if "__pycache__" in n or n.startswith("docs/_build")]


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    wheel = _build("wheel", tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(meta_name).decode()
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert wheel.name.startswith(f"xpnet-{xpnet.__version__}-py3-none-any")
    assert "xpnet/py.typed" in names and "xpnet/sklearn/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    assert f"Version: {xpnet.__version__}" in metadata
    for dep in ("numpy", "array-api-compat", "tqdm"):
        assert re.search(rf"^Requires-Dist: {dep}\b", metadata, re.M), dep
    assert "xpnet = xpnet.cli:main" in entry_points

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    # Dependencies come from the package index, as for a user; the wheel from here.
    _run([python, "-m", "pip", "install", "--quiet", wheel], tmp_path, timeout=600)

    help_text = _run([bindir / "xpnet", "--help"], tmp_path)
    for command in ("train", "evaluate", "predict"):
        assert command in help_text
    assert _run([bindir / "xpnet", "--version"], tmp_path).strip() == f"xpnet {xpnet.__version__}"

    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import xpnet
        from xpnet import Sequential
        from xpnet.layers import Dense, ReLU

        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 5)).astype("float32")
        y = (X[:, 0] + X[:, 1] > 0).astype("int64")
        model = Sequential([Dense(5, 16), ReLU(), Dense(16, 2)], seed=0)
        history = model.fit(X, y, epochs=20, batch_size=32)
        model.save("model.xpnet")
        again = xpnet.load_model("model.xpnet")
        print(json.dumps({
            "file": xpnet.__file__,
            "version": xpnet.__version__,
            "first_loss": history.history["loss"][0],
            "last_loss": history.history["loss"][-1],
            "accuracy": model.evaluate(X, y)["accuracy"],
            "same": bool(np.array_equal(again.predict(X), model.predict(X))),
            "sklearn": "sklearn" in sys.modules,
        }))
        """
    )
    (tmp_path / "fit.py").write_text(script)
    out = json.loads(_run([python, "fit.py"], tmp_path).strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(env_dir.resolve()), out["file"]
    assert out["version"] == xpnet.__version__
    assert out["last_loss"] < out["first_loss"]
    assert out["accuracy"] > 0.9
    assert out["same"] is True
    assert out["sklearn"] is False
