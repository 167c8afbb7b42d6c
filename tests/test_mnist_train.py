"""The headline result: ``xpnet train`` with its defaults reaches >= 98% on MNIST.

Needs the MNIST files in ``$XPNET_DATA_DIR/mnist/`` (skipped otherwise); never downloads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xpnet.cli import DEFAULTS, main

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _mnist_root() -> Path | None:
    """$XPNET_DATA_DIR when its mnist/ folder holds the four files, else None."""
    root = os.environ.get("XPNET_DATA_DIR")
    if root and all((Path(root) / "mnist" / name).is_file() for name in MNIST_FILES):
        return Path(root)
    return None


pytestmark = [
    pytest.mark.mnist,
    pytest.mark.slow,
    pytest.mark.skipif(_mnist_root() is None, reason="MNIST files not in $XPNET_DATA_DIR/mnist/"),
]


def test_default_train_reaches_98_percent(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["train", "--no-download", "--quiet", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["dataset"] == "mnist" and s["backend"] == "numpy"
    assert (s["n_train"] + s["n_val"], s["n_test"]) == (60_000, 10_000)
    assert s["epochs"] == DEFAULTS["epochs"] == len(s["history"]["loss"])
    assert s["test_accuracy"] >= 0.98, s["test_accuracy"]
