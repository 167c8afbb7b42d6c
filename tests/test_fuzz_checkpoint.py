"""Fuzzing load_model: whatever the bytes, the only outcomes are CheckpointError or the exact
original model; nothing crashes, nothing is executed, nothing huge is allocated."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.io import codec
from xpnet.layers import Dense, Dropout, ReLU

FORMATS = ["safetensors", "npz"]


def _model() -> xpnet.Sequential:
    return xpnet.Sequential([Dense(3, 4, activation="tanh"), Dropout(0.1), Dense(4, 2)], seed=0)


def _training_file(directory: Path, fmt: str) -> Path:
    """A training checkpoint (weights, Adam state, history, RNG state) in format ``fmt``."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 3)), rng.integers(0, 2, 16)
    model = _model()
    model.fit(X, y, epochs=2, batch_size=8, checkpoint=directory / "run")
    meta, arrays = ckpt.read_checkpoint(directory / "run")
    meta = {k: v for k, v in meta.items() if not k.endswith("sha256")}
    path = directory / f"train.{fmt}"
    write = codec.encode(arrays, meta, fmt)
    with open(path, "wb") as f:
        write(f)
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, tuple[bytes, list[np.ndarray]]]:
    d = tmp_path_factory.mktemp("originals")
    out = {}
    for fmt in FORMATS:
        model = _model()
        model.save(d / f"model.{fmt}", format=fmt)
        out[f"model-{fmt}"] = ((d / f"model.{fmt}").read_bytes(), model.get_weights())
        path = _training_file(d, fmt)
        out[f"train-{fmt}"] = (path.read_bytes(), xpnet.load_model(path).get_weights())
    return out


def _outcome(path: Path, data: bytes, original: list[np.ndarray]) -> str:
    """Load ``data``; return "refused" or "intact", fail on anything else."""
    path.write_bytes(data)
    try:
        model = xpnet.load_model(path)
    except xpnet.CheckpointError as exc:
        assert str(path) in str(exc)
        return "refused"
    weights = model.get_weights()
    assert len(weights) == len(original)
    for a, b in zip(weights, original, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), "a changed file loaded"
    return "intact"


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("name", ["model-safetensors", "model-npz", "train-safetensors"])
def test_single_bit_flips(tmp_path, originals, name):
    data, weights = originals[name]
    rng = np.random.default_rng(0)
    bits = rng.choice(len(data) * 8, size=min(250, len(data) * 8), replace=False)
    outcomes = [_outcome(tmp_path / "f", _flip(data, int(bit)), weights) for bit in bits]
    if name.endswith("safetensors"):
        # Every byte of a safetensors file is covered by a digest or by the parser.
        assert set(outcomes) == {"refused"}
    else:
        # Zip headers hold fields nobody reads (timestamps, "version made by"): a flip there
        # may load, but only ever as the original model.
        assert outcomes.count("refused") > len(outcomes) // 2


@pytest.mark.parametrize("name", ["model-safetensors", "model-npz", "train-npz"])
def test_every_truncation(tmp_path, originals, name):
    data, weights = originals[name]
    cuts = sorted(set(range(0, len(data), max(1, len(data) // 150))) | {len(data) - 1})
    for n in cuts:
        assert _outcome(tmp_path / "t", data[:n], weights) == "refused", n


def test_appended_and_inserted_bytes(tmp_path, originals):
    rng = np.random.default_rng(1)
    for data, weights in originals.values():
        assert _outcome(tmp_path / "a", data + b"\0", weights) in ("refused", "intact")
        for _ in range(20):
            at = int(rng.integers(0, len(data)))
            junk = rng.bytes(int(rng.integers(1, 16)))
            _outcome(tmp_path / "i", data[:at] + junk + data[at:], weights)
            _outcome(tmp_path / "d", data[:at] + data[at + len(junk) :], weights)
            _outcome(tmp_path / "o", data[:at] + junk + data[at + len(junk) :], weights)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=2048), prefix=st.sampled_from([b"", b"PK\x03\x04", b"magic"]))
def test_random_bytes(tmp_path, blob, prefix):
    data = prefix + blob
    if prefix == b"magic":  # a plausible safetensors length followed by noise
        data = struct.pack("<Q", len(blob)) + blob
    assert _outcome(tmp_path / "r", data, []) == "refused"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_overwrites(tmp_path, originals, data):
    name = data.draw(st.sampled_from(sorted(originals)))
    raw, weights = originals[name]
    start = data.draw(st.integers(0, len(raw) - 1))
    patch = data.draw(st.binary(min_size=1, max_size=32))
    mutated = raw[:start] + patch + raw[start + len(patch) :]
    _outcome(tmp_path / "w", mutated, weights)


# ----------------------------------------------------------------------------- hostile files
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "executed"))


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    return buf.getvalue()


def _npy(header: dict, payload: bytes = b"") -> bytes:
    text = repr(header).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def test_hostile_files(tmp_path):
    marker = tmp_path / "executed"
    meta = _npy({"descr": "|u1", "fortran_order": False, "shape": (2,)}, b"{}")
    pickled_npy = io.BytesIO()
    np.save(pickled_npy, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    deep = b"[" * 100_000 + b"]" * 100_000
    st_deep = struct.pack("<Q", len(deep)) + deep
    st_meta_deep = json.dumps({"__metadata__": {"format": "xpnet", "xpnet": deep.decode()}})
    st_meta_deep = struct.pack("<Q", len(st_meta_deep)) + st_meta_deep.encode()
    st_dup = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{}}'
    hostile = {
        "pickle (would run code)": pickle.dumps(_Payload(marker)),
        "pickle inside npz": _zip(
            {"__xpnet__.npy": meta, "layers.0.W.npy": pickled_npy.getvalue()}
        ),
        "zip bomb": _zip(
            {"__xpnet__.npy": meta, "layers.0.W.npy": b"\0" * 50_000_000}, zipfile.ZIP_DEFLATED
        ),
        "npy claiming 10**12 elements": _zip(
            {
                "__xpnet__.npy": meta,
                "layers.0.W.npy": _npy(
                    {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}, b"\0" * 64
                ),
            }
        ),
        "npy with a structured dtype": _zip(
            {
                "__xpnet__.npy": meta,
                "layers.0.W.npy": _npy(
                    {"descr": [("a", "<f8")], "fortran_order": False, "shape": (1,)}, b"\0" * 8
                ),
            }
        ),
        "npy with a huge header": _zip(
            {"__xpnet__.npy": b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{"}
        ),
        "member that is not .npy": _zip({"__xpnet__.npy": meta, "../../etc/passwd": b"x"}),
        "deeply nested JSON header": st_deep,
        "deeply nested JSON metadata": st_meta_deep,
        "duplicate JSON keys": struct.pack("<Q", len(st_dup)) + st_dup + b"\0" * 4,
        "header length 2**64-1": b"\xff" * 8 + b"{}",
        "header longer than the file": struct.pack("<Q", 1000) + b"{}",
    }
    for what, data in hostile.items():
        path = tmp_path / "hostile"
        path.write_bytes(data)
        with pytest.raises(xpnet.CheckpointError):
            xpnet.load_model(path)
        assert not marker.exists(), f"{what}: code in the file was executed"
    with pytest.raises(FileNotFoundError):
        xpnet.load_model(tmp_path / "absent")


def test_the_round_trip_still_works_after_fuzzing(tmp_path, originals):
    """Guard against a fuzz suite that passes because loading always fails."""
    for data, weights in originals.values():
        assert _outcome(tmp_path / "ok", data, weights) == "intact"


def test_fuzz_never_escapes_as_another_exception_type(tmp_path, originals):
    """Bytes set to 0x00 or 0xFF across a tiny model with ReLU (another architecture record)."""
    model = xpnet.Sequential([Dense(2, 2), ReLU()], seed=1)
    rng = np.random.default_rng(2)
    for fmt in FORMATS:
        model.save(tmp_path / "tiny", format=fmt)
        raw = (tmp_path / "tiny").read_bytes()
        for i in rng.choice(len(raw), size=min(200, len(raw)), replace=False):
            value = 0x00 if i % 2 else 0xFF
            mutated = raw[:i] + bytes([value]) + raw[i + 1 :]
            _outcome(tmp_path / "x", mutated, model.get_weights())
