"""Layer buffers in files: saved, verified, restored in place on load and on resume."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.backend import namespace_of
from xpnet.io import arrays as io_arrays
from xpnet.io import codec, writer
from xpnet.layers import LAYER_TYPES, Dense, Layer, ReLU, register_layer
from xpnet.testing import make_blobs

FORMATS = ["safetensors", "npz"]


class RunningMean(Layer):
    """Identity with a buffer: the running mean of its training inputs (like BatchNorm's)."""

    kind = "TestRunningMean"

    def __init__(self, features: int, momentum: float = 0.5) -> None:
        self.features = int(features)
        self.momentum = float(momentum)
        self.mean: Any = None

    def build(self, backend, dtype, rng, next_activation=None) -> None:
        if self.mean is None:
            xp = backend.xp
            self.mean = xp.zeros((self.features,), dtype=getattr(xp, dtype), device=backend.device)

    def forward(self, x: Any, training: bool = False) -> Any:
        if training:
            xp = namespace_of(x)
            # In place, so that references to the buffer (and a restore) stay valid.
            self.mean[...] = self.momentum * self.mean + (1 - self.momentum) * xp.mean(x, axis=0)
        return x

    def backward(self, grad: Any, need_input_grad: bool = True) -> Any:
        return grad

    def buffers(self) -> dict[str, Any]:
        return {} if self.mean is None else {"mean": self.mean}

    def config(self) -> dict[str, Any]:
        return {"features": self.features, "momentum": self.momentum}


@pytest.fixture(autouse=True)
def registered():
    register_layer(RunningMean)
    yield
    LAYER_TYPES.pop(RunningMean.kind)


def make_model(**kw: Any) -> xpnet.Sequential:
    return xpnet.Sequential([Dense(4, 5), RunningMean(5), ReLU(), Dense(5, 3)], seed=1, **kw)


def trained(epochs: int = 1, **kw: Any) -> xpnet.Sequential:
    X, y = make_blobs(n_samples=48, n_features=4, n_classes=3, seed=0)
    model = make_model()
    model.fit(X, y, epochs=epochs, batch_size=16, seed=3, **kw)
    return model


def host_buffer(model: xpnet.Sequential) -> np.ndarray:
    return np.asarray(xpnet.to_numpy(model.layers[1].buffers()["mean"]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_buffers_round_trip_through_a_file(tmp_path, backend, fmt):
    model = trained()
    saved = host_buffer(model)
    assert np.any(saved != 0)
    model.save(tmp_path / "m", format=fmt)
    meta, arrays = ckpt.read_checkpoint(tmp_path / "m")
    assert meta["format_version"] == ckpt.FORMAT_VERSION == 2
    assert sorted(k for k in arrays if k.startswith("buffers.")) == ["buffers.1.mean"]
    back = xpnet.load_model(tmp_path / "m", backend=backend)
    assert back.backend.name == backend.name
    np.testing.assert_array_equal(host_buffer(back), saved)
    for a, b in zip(back.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_restores_buffers_in_place(tmp_path):
    """A resumed run's buffers are the checkpoint's, written into the layer's own array, and
    the run ends where an uninterrupted one does."""
    full = trained(epochs=3)
    trained(epochs=2, checkpoint=tmp_path)
    X, y = make_blobs(n_samples=48, n_features=4, n_classes=3, seed=0)
    resumed = make_model()
    resumed.parameters()
    ref = resumed.layers[1].buffers()["mean"]
    saved = ckpt.read_checkpoint(tmp_path)[1]["buffers.1.mean"]
    resumed.fit(X, y, epochs=3, batch_size=16, seed=3, checkpoint=tmp_path, resume=True)
    assert resumed.layers[1].buffers()["mean"] is ref
    assert not np.array_equal(np.asarray(ref), saved)  # it moved on from the restored value
    np.testing.assert_array_equal(host_buffer(resumed), host_buffer(full))
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()


def test_restore_buffers_checks_before_writing():
    model = make_model()
    model.parameters()
    before = host_buffer(model).copy()
    with pytest.raises(ValueError, match=r"must have shape \(5,\), got \(4,\)"):
        io_arrays.restore_buffers(model, {"buffers.1.mean": np.ones(4)})
    with pytest.raises(ValueError, match="the arrays hold"):
        io_arrays.restore_buffers(model, {})
    with pytest.raises(ValueError, match="finite"):
        io_arrays.restore_buffers(model, {"buffers.1.mean": np.full(5, np.nan)})
    np.testing.assert_array_equal(host_buffer(model), before)
    io_arrays.restore_buffers(model, {"buffers.1.mean": np.arange(5.0)})
    np.testing.assert_array_equal(host_buffer(model), np.arange(5.0, dtype=np.float32))


def forge(path, arrays, meta, fmt):
    with open(path, "wb") as f:
        codec.encode(arrays, meta, fmt)(f)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update({"buffers.1.mean": np.zeros(4, np.float32)}), "has shape"),
        (lambda a: a.pop("buffers.1.mean"), r"buffers do not match .*missing \['buffers.1.mean"),
        (lambda a: a.update({"buffers.0.mean": np.zeros(5, np.float32)}), r"extra \['buffers.0"),
        (lambda a: a.update({"buffers.1.mean": np.zeros(5, np.float64)}), "dtype float64"),
        (lambda a: a.update({"buffers.1.mean": np.full(5, np.inf, np.float32)}), "infinite"),
        (lambda a: a.update({"buffers.1.mean-x": np.zeros(5, np.float32)}), "unexpected array"),
    ],
)
def test_wrong_buffers_are_refused(tmp_path, fmt, change, message):
    model = trained()
    arrays, meta = io_arrays.model_arrays(model), writer.base_metadata(model)
    change(arrays)
    path = forge(tmp_path / "forged", arrays, meta, fmt)
    with pytest.raises(xpnet.CheckpointError, match=message):
        xpnet.load_model(path)


def test_non_finite_buffer_is_not_saved(tmp_path):
    model = make_model()
    model.parameters()
    model.layers[1].mean[...] = np.nan
    with pytest.raises(ValueError, match=r"buffer buffers.1.mean holds NaN"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_buffer_of_another_dtype_is_not_saved(tmp_path):
    model = make_model()
    model.parameters()
    model.layers[1].mean = np.zeros(5, dtype=np.float64)
    with pytest.raises(ValueError, match=r"buffers.1.mean has dtype float64, but the model's"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_resume_refuses_a_checkpoint_whose_buffers_were_dropped(tmp_path):
    trained(epochs=1, checkpoint=tmp_path)
    path = tmp_path / ckpt.STATE_FILES[ckpt.default_format()]
    meta, arrays = ckpt.read_checkpoint(path)
    arrays.pop("buffers.1.mean")
    meta = {k: v for k, v in meta.items() if not k.endswith("sha256")}
    forge(path, arrays, meta, ckpt.default_format())
    X, y = make_blobs(n_samples=48, n_features=4, n_classes=3, seed=0)
    model = make_model()
    before = model.get_weights()
    with pytest.raises(xpnet.CheckpointError, match="buffers do not match"):
        model.fit(X, y, epochs=2, batch_size=16, seed=3, checkpoint=tmp_path, resume=True)
    for a, b in zip(model.get_weights(), before, strict=True):
        assert a.tobytes() == b.tobytes()


def test_sklearn_pickling_keeps_buffers():
    from xpnet.sklearn import _model_from_plain, _model_to_plain

    model = trained()
    back = _model_from_plain(_model_to_plain(model))
    np.testing.assert_array_equal(host_buffer(back), host_buffer(model))
    assert back.get_config() == model.get_config() and back.seed == model.seed
