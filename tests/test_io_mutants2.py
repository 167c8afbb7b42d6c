"""Saving and loading, pinned by value: the digests' byte order and text, strict JSON, the
format sniffer's pickle signs, the array checks' exact messages, and where a loaded model lives.

Written against the mutants mutation testing left alive (docs/testing.md). Every file here is
a few hundred bytes, built in memory or in ``tmp_path``.
"""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from user_layers import ScaleLayer

import xpnet
from xpnet.backend import to_numpy
from xpnet.io import codec, schema
from xpnet.io.arrays import buffer_arrays, restore_buffers
from xpnet.io.reader import read_checkpoint
from xpnet.layers import LAYER_TYPES, BatchNorm, Dense, register_layer

PATH = Path("/nowhere/model.safetensors")


def _refused(call: Any, what: str, path: Path = PATH) -> None:
    with pytest.raises(xpnet.CheckpointError) as info:
        call()
    assert str(info.value) == f"xpnet: {path} is not a valid xpnet checkpoint: {what}"


# ----------------------------------------------------------------------------- digests
def test_canonical_json_escapes_non_ascii_text():
    assert codec.canonical_json({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'


def test_the_arrays_digest_is_of_little_endian_bytes_whatever_the_arrays_order():
    a = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.25
    little = codec.arrays_sha256({"w": a.astype("<f4"), "v": np.arange(3.0)})
    big = codec.arrays_sha256({"w": a.astype(">f4"), "v": np.arange(3.0).astype(">f8")})
    assert big == little
    assert little != codec.arrays_sha256({"w": a.astype("<f4") + 1, "v": np.arange(3.0)})


# ----------------------------------------------------------------------------- strict JSON
def _st_raw(header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + payload


def _decode_error(data: bytes) -> str:
    with pytest.raises(codec.CodecError) as info:
        codec.decode(data)
    return str(info.value)


def test_a_duplicate_tensor_name_in_the_header_is_refused():
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    meta = '{"format": "xpnet", "xpnet": "{}"}'
    header = f'{{"__metadata__": {meta}, "t": {entry}, "t": {entry}}}'.encode()
    assert _decode_error(_st_raw(header, b"\x00" * 4)) == (
        "the safetensors header is not valid JSON (duplicate key 't')"
    )


def test_a_duplicate_metadata_field_is_refused():
    meta = {"format": "xpnet", "xpnet": '{"dtype": "float32", "dtype": "float64"}'}
    header = json.dumps({"__metadata__": meta}).encode()
    assert _decode_error(_st_raw(header)) == (
        "the xpnet metadata is not valid JSON (duplicate key 'dtype')"
    )


# ----------------------------------------------------------------------------- integer lists
def test_is_int_list_bounds():
    assert codec.is_int_list([])
    assert codec.is_int_list([0] * 8) and not codec.is_int_list([0] * 9)
    assert codec.is_int_list([2**62 - 1]) and not codec.is_int_list([2**62])
    assert not codec.is_int_list([2**63 - 1])


_XP = {"format": "xpnet", "xpnet": "{}"}


def _st(header: dict, payload: bytes = b"") -> bytes:
    return _st_raw(json.dumps(header).encode(), payload)


def test_a_zero_dimensional_tensor_is_read():
    scalar = np.array(2.5, dtype="<f4")
    header = {"__metadata__": _XP, "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}
    _, arrays = codec.decode(_st(header, scalar.tobytes()))
    assert arrays["s"].shape == () and float(arrays["s"]) == 2.5


@pytest.mark.parametrize(
    ("end", "message"),
    [
        (2**62, "tensor 't': shape/data_offsets must be non-negative ints"),
        (
            2**62 - 1,
            f"tensor 't': data_offsets [0, {2**62 - 1}] do not match its shape (1,) and the "
            "tensors before it",
        ),
    ],
)
def test_offsets_from_2_to_the_62_are_not_integers_of_a_file(end, message):
    header = {"__metadata__": _XP, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, end]}}
    assert _decode_error(_st(header, b"\x00" * 4)) == message


# ----------------------------------------------------------------------------- sniffing
@pytest.mark.parametrize(
    "data",
    [
        b"(dp0\nS'a'\np1\nI1\ns",  # protocol 0 opens with "(" whatever it ends with
        b"]q\x00(K\x01K\x02e",  # a list, protocol 1
        b"}q\x00X\x01\x00\x00\x00aK\x01s",  # a dict, protocol 1
        b"cos\nsystem\np0\n.",  # ends with STOP
        b"cos\nsystem\np0\n.\n  ",  # STOP, then whitespace
    ],
)
def test_pickles_are_named_as_such(data):
    assert _decode_error(data) == "it looks like a Python pickle, which xpnet never loads"


# ----------------------------------------------------------------------------- array checks
def _meta(model: xpnet.Sequential) -> dict:
    cfg = model.get_config()
    return {
        "format": "xpnet",
        "format_version": 2,
        "xpnet_version": xpnet.__version__,
        "dtype": cfg["dtype"],
        "layers": cfg["layers"],
    }


def _arrays(model: xpnet.Sequential) -> dict[str, np.ndarray]:
    W, b = model.get_weights()
    return {"layers.0.W": W, "layers.0.b": b}


def _model() -> xpnet.Sequential:
    return xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=0)


def test_a_file_of_an_unknown_layer_kind_names_the_file(tmp_path):
    model = _model()
    meta = _meta(model)
    meta["layers"] = [{"kind": "TestNoSuchLayer", "config": {}}]
    path = tmp_path / "m.safetensors"
    with open(path, "wb") as f:
        codec.encode(_arrays(model), meta, "safetensors")(f)
    with pytest.raises(xpnet.CheckpointError) as info:
        read_checkpoint(path)
    assert str(info.value).startswith(
        f"xpnet: {path} is not a valid xpnet checkpoint: layer 0 (TestNoSuchLayer) cannot be "
        "rebuilt: "
    )


def test_a_missing_parameter_and_an_extra_buffer_are_named():
    model = _model()
    arrays = _arrays(model)
    del arrays["layers.0.b"]
    _refused(
        lambda: schema.check_arrays(_meta(model), arrays, PATH),
        "the parameters do not match the architecture (missing ['layers.0.b'], extra [])",
    )
    arrays = {**_arrays(model), "buffers.0.mean": np.zeros(2)}
    _refused(
        lambda: schema.check_arrays(_meta(model), arrays, PATH),
        "the buffers do not match the architecture (missing [], extra ['buffers.0.mean'])",
    )


def _training_meta(model: xpnet.Sequential, steps: list[int]) -> dict:
    meta = _meta(model)
    meta["training"] = {
        "epoch": 0,
        "history": {"epoch": []},
        "optimizer": {"name": "adam", "hyperparameters": {}, "steps": steps},
        "loss": "SoftmaxCrossEntropy",
        "fit": {"batch_size": 4, "shuffle": True},
        "rng_state": {"bit_generator": "PCG64"},
    }
    return meta


def test_the_optimizer_steps_must_count_the_parameters():
    model = _model()
    meta = _training_meta(model, [1])
    schema.check_metadata({**meta, "weights_sha256": "0" * 64, "metadata_sha256": "0" * 64}, PATH)
    _refused(
        lambda: schema.check_arrays(meta, _arrays(model), PATH),
        "training.optimizer.steps must have 2 entries",
    )


def test_optimizer_state_of_a_parameter_past_the_last_is_refused():
    model = _model()
    arrays = {**_arrays(model), "optimizer.2.exp_avg": np.zeros(2)}
    _refused(
        lambda: schema.check_arrays(_training_meta(model, [1, 1]), arrays, PATH),
        "optimizer array 'optimizer.2.exp_avg' refers to a missing parameter",
    )
    arrays = {**_arrays(model), "optimizer.1.exp_avg": np.zeros(2)}
    schema.check_arrays(_training_meta(model, [1, 1]), arrays, PATH)  # the last one is fine


# ----------------------------------------------------------------------------- loading
def test_load_model_puts_the_model_on_the_backend_asked_for(tmp_path):
    model = _model()
    path = model.save(tmp_path / "m.safetensors")
    with xpnet.use_backend("numpy"):
        loaded = xpnet.load_model(path, backend="array_api_strict")
    assert loaded.backend.name == "array_api_strict"
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.fixture
def drawn_layer():
    register_layer(ScaleLayer)
    yield ScaleLayer
    LAYER_TYPES.pop(ScaleLayer.kind)


def test_a_user_layer_that_draws_its_weights_loads(tmp_path, drawn_layer):
    model = xpnet.Sequential([Dense(3, 2), drawn_layer(2)], dtype="float64", seed=0)
    path = model.save(tmp_path / "m.npz", format="npz")
    loaded = xpnet.load_model(path, backend="numpy")
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- arrays
def _norm_model(backend: str = "numpy", dtype: str = "float64") -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(3, 2), BatchNorm(2)], dtype=dtype, seed=0, backend=backend)
    model.parameters()
    return model


def test_buffer_arrays_are_copies():
    model = _norm_model()
    out = buffer_arrays(model)
    live = model.layers[1].buffers()
    for name in ("running_mean", "running_var"):
        assert not np.shares_memory(out[f"buffers.1.{name}"], to_numpy(live[name]))
    before = copy.deepcopy(out)
    live["running_mean"][...] = 7.0
    np.testing.assert_array_equal(out["buffers.1.running_mean"], before["buffers.1.running_mean"])


def test_saving_names_the_non_finite_weight_or_buffer(tmp_path):
    model = _norm_model()
    model.parameters()[0].data[0, 0] = np.nan
    with pytest.raises(ValueError) as info:
        model.save(tmp_path / "a.safetensors")
    assert str(info.value).startswith("xpnet: weight layers.0.W holds NaN or infinite values;")
    model = _norm_model()
    model.layers[1].buffers()["running_var"][0] = np.inf
    with pytest.raises(ValueError) as info:
        model.save(tmp_path / "b.safetensors")
    assert str(info.value).startswith(
        "xpnet: buffer buffers.1.running_var holds NaN or infinite values;"
    )


def test_restored_buffers_take_the_models_dtype():
    """The strict namespace refuses to write a float64 (or int) array into a float32 one, so
    the host arrays must be cast to the model's dtype before they are written."""
    model = _norm_model("array_api_strict", "float32")
    restore_buffers(
        model,
        {
            "buffers.1.running_mean": np.array([0.5, -1.5]),
            "buffers.1.running_var": np.array([2, 3], dtype=np.int64),
        },
    )
    live = model.layers[1].buffers()
    np.testing.assert_array_equal(to_numpy(live["running_mean"]), [0.5, -1.5])
    np.testing.assert_array_equal(to_numpy(live["running_var"]), [2.0, 3.0])
    assert to_numpy(live["running_var"]).dtype == np.float32
