"""scikit-learn's own MLP test suite, run against xpnet's estimators.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is copied at test
time with only its import line changed, so a new scikit-learn release that adds tests is
picked up here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("pandas")  # the feature-name tests need it, as scikit-learn's CI has

_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
_SOURCE = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not _SOURCE.is_file(), reason="scikit-learn installed without its tests")
def test_scikit_learn_test_mlp_passes_with_xpnet_estimators(tmp_path):
    text = _SOURCE.read_text()
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.rstrip() == _IMPORT]
    assert len(hits) == 1, f"expected one line {_IMPORT!r} in {_SOURCE}"
    lines[hits[0]] = "from xpnet.sklearn import MLPClassifier, MLPRegressor\n"
    target = tmp_path / "test_mlp_xpnet.py"
    target.write_text("".join(lines))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(_ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "sklearn.conftest",
            str(target),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "failed" not in proc.stdout, tail
