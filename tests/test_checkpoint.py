"""Model files: round trips, format details, every way a file can be wrong, atomic writes."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.io import arrays as io_arrays
from xpnet.io import codec, writer
from xpnet.io_utils import atomic_write, stale_temp_files
from xpnet.layers import Dense, Dropout, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["safetensors", "npz"]


def make_model(dtype: str = "float32", seed: int = 0) -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            Dense(5, 8, activation="relu"),
            LeakyReLU(0.2),
            Dropout(0.25),
            Dense(8, 6, init="glorot_normal"),
            Tanh(),
            Dense(6, 4),
            Sigmoid(),
            Dense(4, 3),
            Softmax(),
        ],
        dtype=dtype,
        seed=seed,
    )


def weights_equal(a: xpnet.Sequential, b: xpnet.Sequential) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(wa, wb, strict=True)
    )


def forge(path: Path, arrays: dict, meta: dict, fmt: str = "safetensors") -> Path:
    """Write a file with *valid* digests over arbitrary content, to reach the later checks."""
    write = codec.encode(arrays, meta, fmt)
    with open(path, "wb") as f:
        write(f)
    return path


def parts(model: xpnet.Sequential) -> tuple[dict, dict]:
    return io_arrays.model_arrays(model), writer.base_metadata(model)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, fmt, dtype):
    model = make_model(dtype)
    X = np.random.default_rng(1).normal(size=(7, 5))
    path = tmp_path / "model"
    model.save(path, format=fmt)
    loaded = xpnet.load_model(path)
    assert sorted(os.listdir(tmp_path)) == ["model"]  # exactly path, no extension, no temp
    assert repr(loaded) == repr(model)
    assert loaded.dtype == dtype
    assert weights_equal(model, loaded)
    assert np.array_equal(model.predict_proba(X), loaded.predict_proba(X))


def test_load_onto_each_backend(tmp_path, backend):
    model = make_model("float64")
    model.save(tmp_path / "m")
    loaded = xpnet.load_model(tmp_path / "m", backend=backend.name)
    assert loaded.backend == backend
    X = np.random.default_rng(2).normal(size=(6, 5))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-12)
    # The active backend is the default.
    assert xpnet.load_model(tmp_path / "m").backend == xpnet.get_backend()


def test_metadata_records_version_architecture_dtype_and_digests(tmp_path):
    model = make_model("float64")
    model.save(tmp_path / "m")
    meta, arrays = ckpt.read_checkpoint(tmp_path / "m")
    assert meta["format"] == "xpnet" and meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["xpnet_version"] == xpnet.__version__
    assert meta["dtype"] == "float64"
    assert [e["kind"] for e in meta["layers"]] == [layer.kind for layer in model.layers]
    assert meta["layers"][0]["config"] == {
        "in_features": 5,
        "out_features": 8,
        "activation": "relu",
        "init": "auto",
    }
    assert sorted(arrays) == sorted(f"layers.{i}.{n}" for i in (0, 3, 5, 7) for n in ("W", "b"))
    # The weights digest depends on every byte: change one weight by one ulp.
    w = model.get_weights()
    w[0][0, 0] = np.nextafter(w[0][0, 0], np.inf)
    model.set_weights(w)
    model.save(tmp_path / "m2")
    meta2, _ = ckpt.read_checkpoint(tmp_path / "m2")
    assert meta2["weights_sha256"] != meta["weights_sha256"]


def test_safetensors_file_is_readable_by_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    model = make_model()
    model.save(tmp_path / "m.safetensors", format="safetensors")
    arrays = st.load((tmp_path / "m.safetensors").read_bytes())
    assert np.array_equal(arrays["layers.0.W"], model.get_weights()[0])
    with safe_open(tmp_path / "m.safetensors", framework="np") as f:
        meta = json.loads(f.metadata()["xpnet"])
    assert meta["dtype"] == "float32"


def test_format_is_detected_from_the_bytes_not_the_name(tmp_path):
    model = make_model()
    model.save(tmp_path / "really_npz.safetensors", format="npz")
    model.save(tmp_path / "really_st.npz", format="safetensors")
    assert (tmp_path / "really_npz.safetensors").read_bytes()[:4] == b"PK\x03\x04"
    for name in ("really_npz.safetensors", "really_st.npz"):
        assert weights_equal(model, xpnet.load_model(tmp_path / name))


def test_npz_fallback_when_safetensors_is_missing(tmp_path):
    """Without the optional package, save writes .npz and both formats still load."""
    make_model().save(tmp_path / "st", format="safetensors")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["safetensors"] = None  # makes "import safetensors" fail
        import numpy as np, xpnet
        from xpnet import checkpoint
        from xpnet.layers import Dense
        assert checkpoint.default_format() == "npz"
        m = xpnet.Sequential([Dense(3, 2)], seed=0)
        m.save({str(tmp_path / "fallback")!r})
        with open({str(tmp_path / "fallback")!r}, "rb") as f:
            assert f.read(4) == b"PK\\x03\\x04"
        back = xpnet.load_model({str(tmp_path / "fallback")!r})
        assert all((a == b).all() for a, b in zip(m.get_weights(), back.get_weights()))
        xpnet.load_model({str(tmp_path / "st")!r})  # safetensors read without the package
        try:
            m.save({str(tmp_path / "x")!r}, format="safetensors")
        except ImportError as exc:
            assert "xpnet[safetensors]" in str(exc)
        else:
            raise AssertionError("format='safetensors' without the package must fail")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_load_from_a_checkpoint_directory(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 5))
    y = np.arange(20) % 3
    model = make_model()
    model.fit(X, y, epochs=1, checkpoint=tmp_path / "ck")
    assert weights_equal(model, xpnet.load_model(tmp_path / "ck"))
    assert weights_equal(model, xpnet.load_model(tmp_path / "ck" / "state.safetensors"))


# ----------------------------------------------------------------------------- bad calls
def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        xpnet.load_model(missing)
    with pytest.raises(FileNotFoundError, match="without a checkpoint"):
        xpnet.load_model(tmp_path)


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_model().save(tmp_path / "no" / "such" / "m")


def test_save_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="'safetensors' or 'npz'"):
        make_model().save(tmp_path / "m", format="pickle")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path):
    model = make_model()
    model.save(tmp_path / "m")
    before = (tmp_path / "m").read_bytes()
    model.parameters()[0].data[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"layers\.0\.W holds NaN"):
        model.save(tmp_path / "m")
    assert (tmp_path / "m").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_unknown_backend_on_load(tmp_path):
    make_model().save(tmp_path / "m")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        xpnet.load_model(tmp_path / "m", backend="tpu")


# ----------------------------------------------------------------------------- bad files
class _Evil:
    """Unpickling this would create a marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _bad_files(tmp_path: Path) -> list[tuple[str, bytes, str]]:
    model = make_model()
    model.save(tmp_path / "good.st", format="safetensors")
    model.save(tmp_path / "good.npz", format="npz")
    st = (tmp_path / "good.st").read_bytes()
    npz = (tmp_path / "good.npz").read_bytes()
    marker = tmp_path / "PWNED"
    rnd = np.random.default_rng(0)
    header_len = struct.unpack("<Q", st[:8])[0]
    flipped = bytearray(st)
    flipped[-3] ^= 0x10  # a weight byte
    meta_flip = bytearray(st)
    at = st.index(xpnet.__version__.encode(), st.index(b"xpnet_version"))
    meta_flip[at] ^= 0x01  # a digit of the recorded version: the JSON stays valid
    import io

    obj_npz = io.BytesIO()
    np.savez(
        obj_npz,
        __xpnet__=np.frombuffer(b"{}", np.uint8),
        **{"layers.0.W": np.array([{"a": 1}], dtype=object)},
    )
    comp = io.BytesIO()
    with (
        zipfile.ZipFile(npz_io := io.BytesIO(npz)) as zin,
        zipfile.ZipFile(comp, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    del npz_io
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    return [
        ("empty", b"", "empty"),
        ("truncated header", st[:5], "truncated"),
        ("truncated in header", st[: 8 + header_len // 2], "truncated"),
        ("truncated in data", st[:-7], "data_offsets|truncated|after the last"),
        ("truncated npz", npz[: len(npz) // 2], "corrupt npz"),
        ("random", rnd.bytes(4096), "unrecognised format|not valid JSON|exceeds"),
        ("random after safetensors magic", st[:9] + rnd.bytes(500), "JSON|truncated"),
        ("bit flip in weights", bytes(flipped), "SHA-256"),
        ("bit flip in metadata", bytes(meta_flip), "metadata's SHA-256"),
        ("huge header length", struct.pack("<Q", 2**62) + b"{" + b" " * 64, "exceeds"),
        ("pickle", pickle.dumps(_Evil(marker)), "pickle"),
        ("pickle protocol 0", pickle.dumps({"W": [1.0]}, protocol=0), "pickle|unrecognised"),
        (".npy", npy.getvalue(), r"single \.npy"),
        ("npz with object array", obj_npz.getvalue(), "object array"),
        ("compressed npz", comp.getvalue(), "compressed"),
        ("plain npz", _plain_npz(), "without xpnet metadata"),
        ("plain safetensors", _plain_safetensors(), "without xpnet metadata"),
        ("text", b"hello, world\n", "unrecognised format"),
    ]


def _plain_npz() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, W=np.zeros((2, 2)))
    return buf.getvalue()


def _plain_safetensors() -> bytes:
    st = pytest.importorskip("safetensors.numpy")
    return st.save({"W": np.zeros((2, 2), np.float32)})


def test_every_bad_file_raises_checkpoint_error(tmp_path):
    for what, data, message in _bad_files(tmp_path):
        path = tmp_path / "bad"
        path.write_bytes(data)
        with pytest.raises(xpnet.CheckpointError, match=message) as info:
            xpnet.load_model(path)
        assert isinstance(info.value, ValueError), what
        assert str(path) in str(info.value), what
    assert not (tmp_path / "PWNED").exists(), "a pickle was executed"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: a.update({"layers.0.W": a["layers.0.W"] * np.nan}), "NaN or infinite"),
        (lambda a, m: a.update({"layers.0.W": np.full_like(a["layers.0.W"], np.inf)}), "NaN"),
        (lambda a, m: a.update({"layers.0.W": a["layers.0.W"].T.copy()}), r"shape \(8, 5\)"),
        (lambda a, m: a.update({"layers.0.b": a["layers.0.b"].astype(np.float64)}), "dtype"),
        (lambda a, m: a.pop("layers.3.b"), r"missing \['layers\.3\.b'\]"),
        (lambda a, m: a.update({"layers.1.W": np.zeros(2, np.float32)}), "extra"),
        (lambda a, m: a.update({"optimizer.0.m": np.zeros(2, np.float32)}), "training state"),
        (lambda a, m: a.update({"evil name": np.zeros(2, np.float32)}), "unexpected array name"),
        (lambda a, m: m["layers"][1].update(kind="Conv2D"), "unknown layer type 'Conv2D'"),
        (lambda a, m: m["layers"][0]["config"].update(in_features=0), "integer >= 1"),
        (lambda a, m: m["layers"][0]["config"].update(bogus=1), "cannot be rebuilt"),
        (lambda a, m: m["layers"][2]["config"].update(p=1.5), r"in \[0, 1\)"),
        (lambda a, m: m["layers"][1]["config"].update(alpha="0.2"), "alpha|not canonical"),
        (lambda a, m: m["layers"][0]["config"].update(activation="ReLU"), "not canonical"),
        (lambda a, m: m["layers"][0]["config"].update(init=["x"]), "JSON scalar"),
        (
            lambda a, m: m["layers"].insert(
                1,
                {
                    "kind": "Dense",
                    "config": {
                        "in_features": 3,
                        "out_features": 8,
                        "activation": None,
                        "init": "auto",
                    },
                },
            ),
            "do not fit|do not match",
        ),
        (lambda a, m: m.update(dtype=32), "dtype must be str, got int"),
        (lambda a, m: m.update(dtype="float16"), "dtype must be one of"),
        (lambda a, m: m.update(layers={"0": 1}), "layers must be list, got dict"),
        (lambda a, m: m.update(format_version=True), "format_version must be int, got bool"),
        (lambda a, m: m.update(format_version=ckpt.FORMAT_VERSION + 1), "newer xpnet"),
        (lambda a, m: m.update(format_version=0), "invalid"),
        (lambda a, m: m.update(format="other"), "format must be 'xpnet'"),
        (lambda a, m: m.pop("xpnet_version"), "xpnet_version is missing"),
        (lambda a, m: m.update(surprise=1), r"unknown metadata fields .*\['surprise'\]"),
        (lambda a, m: m.update(training=[]), "training must be dict"),
        (lambda a, m: m["layers"][0].update(extra=1), r"unknown metadata fields in layers\[0\]"),
    ],
)
def test_signed_but_inconsistent_files_are_refused(tmp_path, fmt, change, message):
    """Files with correct digests over wrong content: each later check has its own message."""
    arrays, meta = parts(make_model())
    change(arrays, meta)
    path = forge(tmp_path / "forged", arrays, meta, fmt)
    with pytest.raises(xpnet.CheckpointError, match=message):
        xpnet.load_model(path)


def test_forged_header_claiming_a_huge_array_allocates_nothing(tmp_path):
    """Shapes are checked against the bytes present before any array is built."""
    good = tmp_path / "g"
    make_model().save(good, format="safetensors")
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    header["layers.0.W"]["shape"] = [10**9, 10**9]
    raw = json.dumps(header).encode()
    (tmp_path / "bad").write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    with pytest.raises(xpnet.CheckpointError, match="do not match its shape"):
        xpnet.load_model(tmp_path / "bad")


# ----------------------------------------------------------------------------- atomic writes
def test_interrupted_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "m"
    make_model(seed=1).save(target)
    before = target.read_bytes()

    def writer(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, writer)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "m"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".m.{dead_pid}.deadbeef.tmp"
    live = tmp_path / f".m.{os.getpid()}.cafef00d.tmp"  # a writer that is still running
    other = tmp_path / f".other.{dead_pid}.deadbeef.tmp"  # another target's: not ours to touch
    for p in (stale, live, other):
        p.write_bytes(b"junk")
    assert stale_temp_files(target) == [stale]
    make_model().save(target)
    assert not stale.exists()
    assert live.exists() and other.exists()


_SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np, xpnet
    from xpnet.layers import Dense, ReLU
    path = sys.argv[1]
    models = [xpnet.Sequential([Dense(1000, 1000), ReLU(), Dense(1000, 1000)], seed=s)
              for s in (1, 2)]
    i = 0
    while True:
        models[i % 2].save(path)
        print("saved", flush=True)
        i += 1
    """
)


def test_sigkill_during_save_never_leaves_a_broken_file(tmp_path):
    """Kill a process saving a 2M-parameter model in a loop: at random moments, and right
    after its temporary file appears (inside the write itself, which random moments rarely
    hit because encoding and hashing take most of a save)."""
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    target = tmp_path / "model.safetensors"
    versions = [
        xpnet.Sequential([Dense(1000, 1000), ReLU(), Dense(1000, 1000)], seed=s).get_weights()
        for s in (0, 1, 2)
    ]
    xpnet.Sequential([Dense(1000, 1000), ReLU(), Dense(1000, 1000)], seed=0).save(target)
    chooser = random.Random(1234)
    killed_mid_write = 0
    for i in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=_env()
        )
        prefix = f".{target.name}.{proc.pid}."
        try:
            assert proc.stdout.readline().strip() == b"saved"  # the loop is running
            if i % 3 == 0:
                time.sleep(chooser.uniform(0.0, 0.15))
            else:
                deadline = time.monotonic() + 10
                while not any(p.name.startswith(prefix) for p in tmp_path.iterdir()):
                    assert time.monotonic() < deadline, "the saver never wrote a temp file"
                time.sleep(chooser.uniform(0.0, 0.003))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        loaded = xpnet.load_model(target).get_weights()
        assert any(
            all(np.array_equal(a, b) for a, b in zip(loaded, v, strict=True)) for v in versions
        )
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(leftovers) <= 1, leftovers
        killed_mid_write += any(name.startswith(prefix) for name in leftovers)
    assert killed_mid_write >= 1, "no kill landed inside a write; the test proved nothing"
    xpnet.load_model(target).save(target)  # the next save clears what the last kill left
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
