"""The scripts in examples/ run as they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets_helpers import mnist_root as _mnist_root

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _test_accuracy(stdout: str) -> float:
    match = re.search(r"^test accuracy: ([0-9.]+)", stdout, re.MULTILINE)
    assert match, stdout
    return float(match.group(1))


def test_custom_architecture_on_digits() -> None:
    pytest.importorskip("sklearn")
    result = _run("custom_architecture.py")
    assert result.returncode == 0, result.stderr
    assert "Tanh()" in result.stdout and "LeakyReLU" in result.stdout
    assert _test_accuracy(result.stdout) > 0.93


@pytest.mark.mnist
@pytest.mark.skipif(_mnist_root() is None, reason="MNIST files not in $XPNET_DATA_DIR/mnist/")
def test_train_mnist_one_epoch() -> None:
    result = _run("train_mnist.py", "--epochs", "1", "--data-dir", str(_mnist_root()))
    assert result.returncode == 0, result.stderr
    assert _test_accuracy(result.stdout) > 0.93
