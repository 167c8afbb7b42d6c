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


def _resume_v1(tmp_path, fmt, expected, epochs, name):
    directory = tmp_path / name
    shutil.copytree(DATA / f"v1_state_{fmt}", directory)
    model = xpnet.Sequential([Dense(4, 6, activation="relu"), Dropout(0.2), Dense(6, 3)], seed=7)
    history = model.fit(
        expected["X"],
        expected["y"],
        epochs=epochs,
        optimizer=Adam(lr=1e-2),
        loss="softmax_cross_entropy",
        batch_size=8,
        seed=5,
        checkpoint=directory,
        resume=True,
    )
    return model, history, directory


@pytest.mark.parametrize("fmt", FORMATS)
def test_version_1_training_state_resumes(tmp_path, fmt, expected):
    """The 2-epoch checkpoint of 0.1.0 restores its weights and history exactly and trains on.

    Its third epoch cannot match 0.1.0's uninterrupted run: dropout masks are counter-based
    since then, so the third epoch draws other masks. It must still be deterministic."""
    _, saved = ckpt.read_checkpoint(DATA / f"v1_state_{fmt}")
    restored, history, _ = _resume_v1(tmp_path, fmt, expected, 2, "restore")
    assert history.epoch == [0, 1]
    names = [f"layers.{i}.{n}" for i in (0, 2) for n in ("W", "b")]
    for w, name in zip(restored.get_weights(), names, strict=True):
        np.testing.assert_array_equal(w, saved[name])

    model, history, directory = _resume_v1(tmp_path, fmt, expected, 3, "run")
    again, _, _ = _resume_v1(tmp_path, fmt, expected, 3, "again")
    assert history.epoch == [0, 1, 2]
    for w, w2, before in zip(
        model.get_weights(), again.get_weights(), restored.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(w, w2)
        assert not np.array_equal(w, before)
    meta, _ = ckpt.read_checkpoint(directory)
    assert meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["training"]["epoch"] == 3
