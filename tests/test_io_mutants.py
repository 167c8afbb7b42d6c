"""Saving and resume, pinned by value: each metadata field's exact error, the .npy/.npz reader's
edge cases, the training state's content, and where a resume warning points.

Written against the mutants mutation testing found (docs/testing.md): each test tells a
changed checkpoint reader or writer from the original by an exact message or a file's content.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.io import codec, schema
from xpnet.io.training_state import TrainingCheckpointer
from xpnet.layers import Dense, Sigmoid

PATH = Path("/nowhere/state.safetensors")


def _model(seed: int = 0) -> xpnet.Sequential:
    return xpnet.Sequential([Dense(3, 2)], dtype="float64", seed=seed)


def _data() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(8, 3))
    return X, np.arange(8) % 2


@pytest.fixture(scope="module")
def state_file(tmp_path_factory) -> Path:
    """A training state of two epochs of Adam (two parameters)."""
    directory = tmp_path_factory.mktemp("state")
    X, y = _data()
    with xpnet.use_backend("numpy"):
        _model().fit(X, y, epochs=2, batch_size=4, checkpoint=directory, verbose=0)
    return directory / "state.safetensors"


@pytest.fixture
def meta(state_file) -> dict:
    return copy.deepcopy(codec.decode(state_file.read_bytes())[0])


def _refused(meta: dict, what: str) -> None:
    with pytest.raises(xpnet.CheckpointError) as info:
        schema.check_metadata(meta, PATH)
    assert str(info.value) == f"xpnet: {PATH} is not a valid xpnet checkpoint: {what}"


# ----------------------------------------------------------------------------- metadata schema
def test_the_state_file_passes(meta):
    schema.check_metadata(meta, PATH)


def test_a_state_after_zero_epochs_passes(meta):
    t = meta["training"]
    t["epoch"] = 0
    t["history"] = {k: [] for k in t["history"]}
    schema.check_metadata(meta, PATH)


def test_more_optimizer_steps_than_eight_pass_the_schema(meta):
    meta["training"]["optimizer"]["steps"] = [3] * 9
    schema.check_metadata(meta, PATH)


def test_a_million_and_one_optimizer_steps_are_refused(meta):
    meta["training"]["optimizer"]["steps"] = [0] * ((1 << 20) + 1)
    _refused(meta, "metadata field training.optimizer.steps must be non-negative ints")


def test_a_null_training_record_is_named_null(meta):
    meta["training"] = None
    _refused(meta, "metadata field training must be dict, got null")


def test_a_negative_epoch_is_refused(meta):
    meta["training"]["epoch"] = -1
    _refused(meta, "metadata field training.epoch must be >= 0, got -1")


# (where the field lives, its key, a value of the wrong type, the type asked for, its name)
_FIELDS = [
    ((), "format_version", "2", "int", "str"),
    ((), "xpnet_version", 1, "str", "int"),
    ((), "dtype", None, "str", "null"),
    ((), "weights_sha256", 1.5, "str", "float"),
    ((), "metadata_sha256", [], "str", "list"),
    ((), "layers", {}, "list", "dict"),
    (("training",), "epoch", 2.0, "int", "float"),
    (("training",), "loss", 3, "str", "int"),
    (("training",), "fit", [], "dict", "list"),
    (("training", "fit"), "batch_size", "4", "int", "str"),
    (("training", "fit"), "shuffle", 1, "bool", "int"),
    (("training",), "rng_state", "x", "dict", "str"),
    (("training", "rng_state"), "bit_generator", 0, "str", "int"),
    (("training",), "optimizer", None, "dict", "null"),
    (("training", "optimizer"), "name", False, "str", "bool"),
    (("training", "optimizer"), "hyperparameters", [], "dict", "list"),
    (("training", "optimizer"), "steps", {}, "list", "dict"),
    (("training",), "history", [], "dict", "list"),
]


def _where(meta: dict, keys: tuple[str, ...]) -> dict:
    for k in keys:
        meta = meta[k]
    return meta


@pytest.mark.parametrize(("keys", "key", "bad", "kind", "got"), _FIELDS)
def test_each_field_of_the_wrong_type_is_named_with_its_path(meta, keys, key, bad, kind, got):
    _where(meta, keys)[key] = bad
    field = ".".join((*keys, key))
    _refused(meta, f"metadata field {field} must be {kind}, got {got}")


@pytest.mark.parametrize(("keys", "key", "_bad", "_kind", "_got"), _FIELDS)
def test_each_missing_field_is_named_with_its_path(meta, keys, key, _bad, _kind, _got):
    del _where(meta, keys)[key]
    if keys == () and key == "format_version":
        field = "format_version"
    else:
        field = ".".join((*keys, key))
    _refused(meta, f"metadata field {field} is missing")


@pytest.mark.parametrize(
    "keys", [(), ("training",), ("training", "fit"), ("training", "optimizer")]
)
def test_unknown_fields_are_named_with_where_they_are(meta, keys):
    _where(meta, keys)["surprise"] = 1
    where = ".".join(keys) or "the top level"
    _refused(meta, f"unknown metadata fields in {where}: ['surprise']")


def test_an_unknown_field_of_a_layer_entry_is_named(meta):
    meta["layers"][0]["extra"] = 1
    _refused(meta, "unknown metadata fields in layers[0]: ['extra']")


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda m: m.update(format_version=3), None),
        (lambda m: m.update(format_version=0), "format version 0 is invalid"),
        (lambda m: m.update(format="xpnet2"), "metadata field format must be 'xpnet'"),
        (
            lambda m: m.update(dtype="float16"),
            "metadata field dtype must be one of ('float32', 'float64'), got 'float16'",
        ),
        (
            lambda m: m.update(weights_sha256="ab" * 31),
            "metadata field weights_sha256 is not a SHA-256 hex digest",
        ),
        (
            lambda m: m.update(metadata_sha256="AB" * 32),
            "metadata field metadata_sha256 is not a SHA-256 hex digest",
        ),
        (lambda m: m["layers"].append(3), "metadata field layers[1] must be dict, got int"),
        (
            lambda m: m["layers"][0]["config"].update(init=[1]),
            "metadata field layers[0].config.init must be a JSON scalar",
        ),
        (
            lambda m: m["layers"][0].update(kind=1),
            "metadata field layers[0].kind must be str, got int",
        ),
        (
            lambda m: m["layers"][0].update(config=[]),
            "metadata field layers[0].config must be dict, got list",
        ),
        (
            lambda m: m["training"]["optimizer"].update(steps=[1, -1]),
            "metadata field training.optimizer.steps must be non-negative ints",
        ),
        (
            lambda m: m["training"]["history"].update(epoch=[1, 0]),
            "metadata field training.history.epoch must be [0, ..., 1]",
        ),
        (
            lambda m: m["training"]["history"].update(loss=[1.0]),
            "metadata field training.history.loss must list 2 values",
        ),
        (
            lambda m: m["training"]["history"].update(loss="ab"),
            "metadata field training.history.loss must list 2 values",
        ),
        (
            lambda m: m["training"]["history"].update(loss=[1.0, True]),
            "metadata field training.history.loss must hold numbers",
        ),
        (
            lambda m: m["training"]["history"].update(loss=[1.0, "2"]),
            "metadata field training.history.loss must hold numbers",
        ),
    ],
)
def test_each_bad_value_has_its_message(meta, change, what):
    change(meta)
    if what is None:
        with pytest.raises(xpnet.CheckpointError, match="written by a newer xpnet"):
            schema.check_metadata(meta, PATH)
        return
    _refused(meta, what)


def test_a_scalar_layer_config_of_each_json_kind_passes(meta):
    meta["layers"][0]["config"].update(a=None, b="s", c=1, d=1.5)
    schema.check_metadata(meta, PATH)


# ----------------------------------------------------------------------------- the .npz reader
def _npy(a: np.ndarray, version: tuple[int, int] = (1, 0), trailing: bytes = b"") -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, a, version=version)
    return f.getvalue() + trailing


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return buf.getvalue()


def _members(model: xpnet.Sequential) -> tuple[dict[str, np.ndarray], bytes]:
    """A model file's arrays and its encoded metadata bytes (digests included)."""
    buf = io.BytesIO()
    arrays = {
        "layers.0.W": np.asarray(model.get_weights()[0]),
        "layers.0.b": np.asarray(model.get_weights()[1]),
    }
    meta = {
        "format": "xpnet",
        "format_version": 2,
        "xpnet_version": xpnet.__version__,
        "dtype": "float64",
        "layers": model.get_config()["layers"],
    }
    codec.encode(arrays, meta, "npz")(buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        text = zf.read("__xpnet__.npy")
    raw = np.lib.format.read_array(io.BytesIO(text))
    return arrays, raw.tobytes()


def _decode_error(data: bytes) -> str:
    with pytest.raises(codec.CodecError) as info:
        codec.decode(data)
    return str(info.value)


def test_npy_members_of_format_version_2_and_fortran_order_load(tmp_path):
    model = _model()
    arrays, text = _members(model)
    W = arrays["layers.0.W"]
    members = {
        "__xpnet__": _npy(np.frombuffer(text, np.uint8), (2, 0)),
        "layers.0.W": _npy(np.asfortranarray(W), (2, 0)),
        "layers.0.b": _npy(arrays["layers.0.b"]),
    }
    path = tmp_path / "m.npz"
    path.write_bytes(_zip(members))
    loaded = xpnet.load_model(path, backend="numpy")
    np.testing.assert_array_equal(loaded.get_weights()[0], W)
    _, got = codec.decode(path.read_bytes())
    assert got["layers.0.W"].flags.c_contiguous or got["layers.0.W"].flags.f_contiguous
    np.testing.assert_array_equal(got["layers.0.W"], W)


def test_a_fortran_order_member_keeps_its_values():
    a = np.arange(6.0).reshape(2, 3)
    _, got = _decode_meta_ok({"layers.0.W": _npy(np.asfortranarray(a))})
    np.testing.assert_array_equal(got["layers.0.W"], a)


def _decode_meta_ok(members: dict[str, bytes]) -> tuple[dict, dict]:
    _, text = _members(_model())
    return codec.decode(_zip({"__xpnet__": _npy(np.frombuffer(text, np.uint8)), **members}))


@pytest.mark.parametrize(
    ("a", "shown"),
    [
        (np.zeros(3, np.uint8), "uint8"),
        (np.zeros(3, np.float16), "float16"),
        (np.zeros(3, ">f4"), ">f4"),
    ],
)
def test_a_member_of_another_dtype_is_refused(a, shown):
    _, text = _members(_model())
    data = _zip({"__xpnet__": _npy(np.frombuffer(text, np.uint8)), "layers.0.W": _npy(a)})
    assert _decode_error(data) == (
        f"member 'layers.0.W' has dtype {shown}, expected one of ('float32', 'float64')"
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_float_metadata_member_is_not_a_byte_array(dtype):
    data = _zip({"__xpnet__": _npy(np.zeros(4, dtype))})
    assert _decode_error(data) == (
        "the metadata member is not a 1-D byte array within the size limit"
    )


def test_a_two_dimensional_metadata_member_is_refused():
    _, text = _members(_model())
    data = _zip({"__xpnet__": _npy(np.frombuffer(text, np.uint8)[None, :])})
    assert _decode_error(data) == (
        "the metadata member is not a 1-D byte array within the size limit"
    )


def test_metadata_of_exactly_the_size_limit_is_read():
    _, text = _members(_model())
    padded = text + b" " * (codec.MAX_HEADER_BYTES - len(text))
    meta, _ = codec.decode(_zip({"__xpnet__": _npy(np.frombuffer(padded, np.uint8))}))
    assert meta["format"] == "xpnet"
    over = padded + b" "
    data = _zip({"__xpnet__": _npy(np.frombuffer(over, np.uint8))})
    assert _decode_error(data) == (
        "the metadata member is not a 1-D byte array within the size limit"
    )


def test_metadata_that_is_not_json_is_named():
    data = _zip({"__xpnet__": _npy(np.frombuffer(b"{", np.uint8))})
    assert _decode_error(data).startswith("the xpnet metadata is not valid JSON (")


def test_a_header_claiming_exactly_the_members_size_reads_short():
    header = _npy(np.zeros(16))[:128]  # a version 1.0 header of 128 bytes, shape (16,)
    assert len(header) == 128 and np.zeros(16).nbytes == 128
    data = _zip({"__xpnet__": _npy(np.frombuffer(b"{}", np.uint8)), "x": header})
    assert _decode_error(data) == "member 'x' holds 0 data bytes, its shape needs 128"


def test_bytes_after_a_members_data_are_refused():
    data = _zip(
        {
            "__xpnet__": _npy(np.frombuffer(b"{}", np.uint8)),
            "x": _npy(np.zeros(2), trailing=b"12345"),
        }
    )
    assert _decode_error(data) == "member 'x' holds 17 data bytes, its shape needs 16"


def test_members_claiming_exactly_the_archives_size_pass_that_check():
    data = bytearray(_zip({"__xpnet__": _npy(np.frombuffer(b"{}", np.uint8))}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        (info,) = zf.infolist()
    # The central directory's uncompressed size of the one member, set to the file's size.
    cd = data.rindex(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = len(data).to_bytes(4, "little")
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        assert zf.infolist()[0].file_size == len(data) != info.file_size
    # The members' claimed sizes only bound the .npy reads: the archive still decodes.
    assert codec.decode(bytes(data)) == ({}, {})
    data[cd + 24 : cd + 28] = (len(data) + 1).to_bytes(4, "little")
    assert _decode_error(bytes(data)) == (
        "the archive's members claim more bytes than the file holds"
    )


# ----------------------------------------------------------------------------- training state
def _fit(directory: Path, epochs: int = 1, **kw) -> xpnet.Sequential:
    X, y = _data()
    model = _model()
    kw.setdefault("batch_size", 4)
    model.fit(X, y, epochs=epochs, checkpoint=directory, verbose=0, **kw)
    return model


def _state_meta(directory: Path, name: str = "state.safetensors") -> tuple[dict, dict]:
    return codec.decode((directory / name).read_bytes())


def test_the_state_records_the_fit_settings_and_the_optimizer(tmp_path, backend):
    _fit(tmp_path / "a" / "b", epochs=1)  # two missing levels: both are created
    meta, arrays = _state_meta(tmp_path / "a" / "b")
    t = meta["training"]
    assert t["fit"] == {"batch_size": 4, "shuffle": True}
    assert t["optimizer"]["hyperparameters"] == {
        "lr": 0.001,
        "betas": [0.9, 0.999],
        "eps": 1e-08,
        "weight_decay": 0.0,
    }
    assert t["optimizer"]["steps"] == [2, 2]
    assert sorted(arrays) == [
        "layers.0.W",
        "layers.0.b",
        "optimizer.0.exp_avg",
        "optimizer.0.exp_avg_sq",
        "optimizer.1.exp_avg",
        "optimizer.1.exp_avg_sq",
    ]
    _fit(tmp_path / "c", epochs=1, shuffle=False)
    assert _state_meta(tmp_path / "c")[0]["training"]["fit"]["shuffle"] is False


def test_the_checkpointer_writes_every_epoch_by_default(tmp_path):
    X, y = _data()
    model = _model()
    ckpt = TrainingCheckpointer(tmp_path)
    assert ckpt.every == 1
    assert ckpt.write_pending() is False  # nothing captured yet
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    args = (model, model.optimizer, model.loss, np.random.default_rng(0), model.history)
    ckpt.end_epoch(*args, batch_size=4, shuffle=True, final=False)
    assert ckpt.path.is_file()
    assert ckpt.write_pending() is False  # already on disk


def test_a_pending_state_is_written_by_write_pending(tmp_path):
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    ckpt = TrainingCheckpointer(tmp_path / "x" / "y", every=2)
    args = (model, model.optimizer, model.loss, np.random.default_rng(0), model.history)
    ckpt.end_epoch(*args, batch_size=4, shuffle=True, final=False)
    assert not ckpt.path.exists()
    assert ckpt.write_pending() is True
    assert ckpt.path.is_file()


def test_the_format_given_is_the_one_written(tmp_path):
    ckpt = TrainingCheckpointer(tmp_path, format="npz")
    assert ckpt.format == "npz" and ckpt.path.name == "state.npz"


def test_resume_with_the_same_settings_warns_nothing(tmp_path):
    _fit(tmp_path, epochs=1)
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().fit(X, y, epochs=2, batch_size=4, checkpoint=tmp_path, resume=True, verbose=0)


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ,
    reason="mutmut's trampolines add a frame between the caller and the warning",
)
def test_a_resume_warning_points_at_the_callers_line(tmp_path):
    _fit(tmp_path, epochs=1)
    X, y = _data()
    with pytest.warns(UserWarning, match="batch_size=2") as record:
        _model().fit(X, y, epochs=2, batch_size=2, checkpoint=tmp_path, resume=True, verbose=0)
    (w,) = [w for w in record if "batch_size=2" in str(w.message)]
    assert w.filename == __file__


def test_a_resume_of_another_architecture_describes_both(tmp_path):
    _fit(tmp_path, epochs=1)
    X, y = _data()
    other = xpnet.Sequential([Dense(3, 2, activation="relu"), Sigmoid()], dtype="float64")
    with pytest.raises(xpnet.CheckpointError) as info:
        other.fit(X, y, epochs=2, batch_size=4, checkpoint=tmp_path, resume=True, verbose=0)
    assert (
        "it was written for the architecture [Dense(in_features=3, init='auto', "
        "out_features=2)], but this fit uses [Dense(in_features=3, out_features=2, "
        "activation='relu', init='auto'), Sigmoid()];" in str(info.value)
    )


def test_optimizer_state_of_another_optimizer_is_refused(tmp_path):
    _fit(tmp_path, epochs=1)
    meta, arrays = _state_meta(tmp_path)
    arrays["optimizer.0.bogus"] = np.zeros((3, 2))
    meta = {k: v for k, v in meta.items() if not k.endswith("sha256")}
    with open(tmp_path / "state.safetensors", "wb") as f:
        codec.encode(arrays, meta, "safetensors")(f)
    X, y = _data()
    with pytest.raises(xpnet.CheckpointError) as info:
        _model().fit(X, y, epochs=2, batch_size=4, checkpoint=tmp_path, resume=True, verbose=0)
    assert str(info.value).endswith("optimizer state ['optimizer.0.bogus'] is not state of Adam")


def test_without_safetensors_the_default_format_is_npz(monkeypatch):
    # A None entry in sys.modules makes the import fail, as when the package is missing.
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    assert codec.default_format() == "npz"


# ----------------------------------------------------------------------------- safetensors
def _st(header: dict, payload: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + payload


_XP = {"format": "xpnet", "xpnet": "{}"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"12345678", "truncated: only 8 bytes, too short for any checkpoint"),
        (b"\x93NUMPY\x01\x00xx", "a single .npy array, not a checkpoint"),
        (b"\x80\x04\x95xxxxxxxxx", "it looks like a Python pickle, which xpnet never loads"),
        (b"(lp0\nI1\na.", "it looks like a Python pickle, which xpnet never loads"),
        (b"hello, world\n", "unrecognised format (expected safetensors or .npz)"),
        (
            struct.pack("<Q", codec.MAX_HEADER_BYTES + 1) + b"{}",
            f"header length {codec.MAX_HEADER_BYTES + 1} exceeds the "
            f"{codec.MAX_HEADER_BYTES}-byte limit",
        ),
        (
            struct.pack("<Q", 2**63 + 2) + b"{}",
            f"header length {2**63 + 2} exceeds the {codec.MAX_HEADER_BYTES}-byte limit",
        ),
        (
            struct.pack("<Q", 100) + b"{}",
            "truncated: the header needs 108 bytes, the file has 10",
        ),
        (_st({}), "a safetensors file without xpnet metadata (not written by xpnet)"),
        (
            _st({"__metadata__": {"format": "pt"}}),
            "a safetensors file without xpnet metadata (not written by xpnet)",
        ),
        (
            _st({"__metadata__": {"format": "xpnet"}}),
            "the safetensors __metadata__ is not xpnet's",
        ),
        (
            _st({"__metadata__": {**_XP, "other": "x"}}),
            "the safetensors __metadata__ is not xpnet's",
        ),
        (
            _st({"__metadata__": _XP, "t": {"dtype": "F32", "shape": [1]}}),
            "tensor 't': entry must have dtype, shape and data_offsets",
        ),
        (
            _st({"__metadata__": _XP, "t": [1]}),
            "tensor 't': entry must have dtype, shape and data_offsets",
        ),
        (
            _st({"__metadata__": _XP, "t": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}),
            "tensor 't': dtype 'F16' is not F32 or F64",
        ),
        (
            _st({"__metadata__": _XP, "t": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}}),
            "tensor 't': dtype 1 is not F32 or F64",
        ),
        (
            _st(
                {"__metadata__": _XP, "t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}
            ),
            "tensor 't': shape/data_offsets must be non-negative ints",
        ),
        (
            _st({"__metadata__": _XP, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}),
            "tensor 't': shape/data_offsets must be non-negative ints",
        ),
        (
            _st({"__metadata__": _XP, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}),
            "tensor 't': data_offsets [0, 8] do not match its shape (1,) and the tensors before it",
        ),
        (
            _st(
                {"__metadata__": _XP, "t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
                b"\x00" * 8,
            ),
            "tensor 't': data_offsets [4, 8] do not match its shape (1,) and the tensors before it",
        ),
        (
            _st(
                {"__metadata__": _XP, "t": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}},
                b"\x00" * 15,
            ),
            "truncated: tensor 't' ends past the end of the file",
        ),
        (
            _st(
                {"__metadata__": _XP, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                b"\x00" * 7,
            ),
            "3 bytes after the last tensor",
        ),
        (
            _st({"__metadata__": {"format": "xpnet", "xpnet": "{"}}),
            None,
        ),
        (struct.pack("<Q", 2) + b"{x", "header"),
        (struct.pack("<Q", 1) + b"{", "header"),  # 9 bytes: long enough to be parsed
        (
            _st({"__metadata__": _XP, "t": {"dtype": [1], "shape": [1], "data_offsets": [0, 4]}}),
            "tensor 't': dtype [1] is not F32 or F64",
        ),
        (
            _st(
                {
                    "__metadata__": _XP,
                    "t": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]},
                }
            ),
            "tensor 't': shape/data_offsets must be non-negative ints",
        ),
        (
            _st(
                {
                    "__metadata__": _XP,
                    "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]},
                }
            ),
            "tensor 't': shape/data_offsets must be non-negative ints",
        ),
        # A lone surrogate in the metadata text: bad JSON text, not a crash of the encoder.
        (_st({"__metadata__": {"format": "xpnet", "xpnet": '{"a": "\ud800"}'}}), "metadata"),
        (b"PK\x03\x04" + b"\x00" * 20, "npz"),
    ],
)
def test_each_malformed_safetensors_file_has_its_message(data, message):
    if message is None:
        assert _decode_error(data).startswith("the xpnet metadata is not valid JSON (")
        return
    if message == "metadata":
        assert _decode_error(data).startswith("the xpnet metadata is not valid JSON (")
        return
    if message == "npz":
        assert _decode_error(data).startswith("corrupt npz data (")
        return
    if message == "header":
        assert _decode_error(data).startswith("the safetensors header is not valid JSON (")
        return
    assert _decode_error(data) == message


def test_safetensors_tensors_in_any_header_order_are_read_by_offset():
    a, b = np.arange(3, dtype="<f4"), np.arange(2, dtype="<f8") + 0.5
    header = {
        "b": {"dtype": "F64", "shape": [2], "data_offsets": [12, 28]},
        "__metadata__": _XP,
        "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
    }
    meta, arrays = codec.decode(_st(header, a.tobytes() + b.tobytes()))
    assert meta == {}
    np.testing.assert_array_equal(arrays["a"], a)
    np.testing.assert_array_equal(arrays["b"], b)
    assert arrays["a"].dtype == np.float32 and arrays["b"].dtype == np.float64
    assert arrays["a"].flags.writeable  # a copy, not a view of the file's bytes
    empty = {"__metadata__": _XP, "e": {"dtype": "F32", "shape": [0, 2], "data_offsets": [0, 0]}}
    assert codec.decode(_st(empty))[1]["e"].shape == (0, 2)


def test_a_header_of_exactly_the_size_limit_is_read():
    raw = json.dumps({"__metadata__": _XP}).encode()
    raw += b" " * (codec.MAX_HEADER_BYTES - len(raw))
    assert codec.decode(struct.pack("<Q", len(raw)) + raw) == ({}, {})
