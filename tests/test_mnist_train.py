"""The headline result: ``xpnet train`` with its defaults reaches >= 98% on MNIST.

Needs the MNIST files in ``$XPNET_DATA_DIR/mnist/`` (skipped otherwise); never downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets_helpers import mnist_root as _mnist_root

from xpnet.cli import DEFAULTS, main

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
