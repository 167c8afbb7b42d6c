"""Files written by xpnet 0.1.0 (format version 1, no buffers) still load and resume.

The files in tests/data were written by that release (see tests/data/README.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.layers import Dense, Dropout
from xpnet.optimizers import Adam

DATA = Path(__file__).resolve().parent / "data"
FORMATS = ["safetensors", "npz"]


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(DATA / "v1_expected.npz", allow_pickle=False) as f:
        return dict(f)


@pytest.mark.parametrize("fmt", FORMATS)
def test_version_1_model_file_loads(fmt, expected):
    path = DATA / f"v1_model.{fmt}"
    meta, _ = ckpt.read_checkpoint(path)
    assert meta["format_version"] == 1 and meta["xpnet_version"] == "0.1.0"
    model = xpnet.load_model(path)
    assert [layer.kind for layer in model.layers] == [
        "Dense",
        "LeakyReLU",
        "Dropout",
        "Dense",
        "Softmax",
    ]
    weights = model.get_weights()
    assert len(weights) == 4
    for i, w in enumerate(weights):
        assert w.dtype == np.float32
        assert w.tobytes() == expected[f"m{i}"].tobytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_version_1_model_file_resaves_as_the_current_version(tmp_path, fmt):
    model = xpnet.load_model(DATA / f"v1_model.{fmt}")
    model.save(tmp_path / "again", format=fmt)
    meta, arrays = ckpt.read_checkpoint(tmp_path / "again")
    old_meta, old_arrays = ckpt.read_checkpoint(DATA / f"v1_model.{fmt}")
    assert meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["layers"] == old_meta["layers"] == model.get_config()["layers"]
    assert sorted(arrays) == sorted(old_arrays)


@pytest.mark.parametrize("fmt", FORMATS)
def test_version_1_training_state_resumes(tmp_path, fmt, expected):
    """Resuming the 2-epoch checkpoint of 0.1.0 to 3 epochs ends at the weights 0.1.0 reached
    in one uninterrupted 3-epoch run (to rounding: kernels may change between releases)."""
    directory = tmp_path / "run"
    shutil.copytree(DATA / f"v1_state_{fmt}", directory)
    model = xpnet.Sequential([Dense(4, 6, activation="relu"), Dropout(0.2), Dense(6, 3)], seed=7)
    history = model.fit(
        expected["X"],
        expected["y"],
        epochs=3,
        optimizer=Adam(lr=1e-2),
        loss="softmax_cross_entropy",
        batch_size=8,
        seed=5,
        checkpoint=directory,
        resume=True,
    )
    assert history.epoch == [0, 1, 2]
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, expected[f"w{i}"], rtol=1e-5, atol=1e-6)
    meta, _ = ckpt.read_checkpoint(directory)
    assert meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["training"]["epoch"] == 3
