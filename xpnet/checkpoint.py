"""Saving and loading models and training state, verified, atomic and pickle-free.

File format
-----------
One file holds the arrays and a JSON metadata record:

* safetensors (the default when the optional ``safetensors`` package is installed): the JSON
  record is the string ``__metadata__["xpnet"]`` of the safetensors header;
* otherwise an uncompressed NumPy ``.npz`` whose member ``__xpnet__.npy`` holds the JSON record
  as UTF-8 bytes.

The format is detected from the file's first bytes, never from its name. Both are parsed by
this module with NumPy alone (no pickle, no ``eval``, bounded header sizes), so a file of
either format loads whether or not ``safetensors`` is installed.

Arrays are named ``layers.<i>.<W|b>`` (the parameters of layer ``i``) and, in training
checkpoints, ``optimizer.<j>.<state>`` (the optimizer state of parameter ``j``).

The metadata records the format version, the xpnet version, the dtype, the architecture (each
layer's ``kind`` and ``config()``), a SHA-256 of the arrays over a canonical serialization
(name, dtype, shape, then the little-endian C-order bytes, for each array in name order), and a
SHA-256 of the metadata itself, so any change to a stored value is detected on load. Training
checkpoints add a ``training`` record: completed epochs, history, optimizer kind,
hyperparameters and step counts, loss kind, the fit settings and the state of the host random
generator.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import re
import struct
import sys
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._version import __version__
from .backend import Backend, _resolve, get_backend, to_numpy
from .errors import CheckpointError
from .io_utils import atomic_write

if TYPE_CHECKING:
    from types import FrameType

    from .history import History
    from .layers import Layer
    from .losses import Loss
    from .model import Sequential
    from .optimizers import Optimizer

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "TrainingCheckpointer",
    "default_format",
    "load_model",
    "read_checkpoint",
    "save_model",
]

FORMAT_NAME = "xpnet"
FORMAT_VERSION = 1
#: Largest JSON header accepted (the safetensors header, or the .npz metadata member). A real
#: header is a few kilobytes plus ~20 bytes per recorded epoch metric.
MAX_HEADER_BYTES = 16 * 1024 * 1024
_NPY_MAX_HEADER = 10_000
_NPZ_META = "__xpnet__"
_DTYPES = ("float32", "float64")
_ST_DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"(layers|optimizer)\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]{0,63})")
STATE_FILES = {"safetensors": "state.safetensors", "npz": "state.npz"}

# What a parser of untrusted bytes (zipfile, numpy's .npy header reader, json) may raise on
# garbage; each is turned into a CheckpointError that says which file and why.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    OSError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    MemoryError,
    SyntaxError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
)


def default_format() -> str:
    """``"safetensors"`` when the package is installed, else ``"npz"``."""
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError:
        return "npz"
    return "safetensors"


# ----------------------------------------------------------------------------- digests
def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        # A JSON line per array makes the stream unambiguous (no two different sets of
        # names/shapes/bytes can hash the same concatenation).
        h.update(_canonical_json([name, dtype.name, list(a.shape), a.nbytes]).encode())
        h.update(b"\n")
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return h.hexdigest()


def _metadata_sha256(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(_canonical_json(body).encode()).hexdigest()


# ----------------------------------------------------------------------------- writing
def _encode(arrays: dict[str, np.ndarray], meta: dict[str, Any], fmt: str) -> Any:
    """Return a ``write(f)`` callable producing the file's bytes."""
    meta = dict(meta)
    meta["weights_sha256"] = _arrays_sha256(arrays)
    meta["metadata_sha256"] = _metadata_sha256(meta)
    text = _canonical_json(meta)
    if fmt == "safetensors":
        try:
            import safetensors.numpy as st
        except ImportError as exc:
            raise ImportError(
                "xpnet: format='safetensors' needs the safetensors package: "
                'pip install "xpnet[safetensors]" (or save with format="npz")'
            ) from exc
        data = st.save(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()},
            metadata={"format": FORMAT_NAME, FORMAT_NAME: text},
        )
        return lambda f: f.write(data)
    if fmt == "npz":
        members: dict[str, Any] = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        members[_NPZ_META] = np.frombuffer(text.encode(), dtype=np.uint8)
        return lambda f: np.savez(f, **members)
    raise ValueError(f"xpnet: format must be 'safetensors' or 'npz', got {fmt!r}")


def architecture(model: Sequential) -> list[dict[str, Any]]:
    """The JSON description of a model's layers: ``[{"kind": ..., "config": {...}}, ...]``."""
    from .layers import LAYER_TYPES

    out = []
    for i, layer in enumerate(model.layers):
        if LAYER_TYPES.get(layer.kind) is not type(layer):
            raise ValueError(
                f"xpnet: layer {i} ({type(layer).__name__}) is not a built-in layer type; "
                f"checkpoints can hold: {', '.join(LAYER_TYPES)}"
            )
        config = layer.config()
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"xpnet: layer {i} config is not JSON-serialisable: {exc}") from exc
        out.append({"kind": layer.kind, "config": config})
    return out


def _weight_arrays(model: Sequential) -> dict[str, np.ndarray]:
    model._build()
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.layers):
        for p in layer.parameters():
            arrays[f"layers.{i}.{p.name}"] = np.array(to_numpy(p.data), copy=True)
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise ValueError(
                f"xpnet: weight {name} holds NaN or infinite values; refusing to save a model "
                "that load_model would reject"
            )
    return arrays


def _base_metadata(model: Sequential) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "xpnet_version": __version__,
        "dtype": model.dtype,
        "layers": architecture(model),
    }


def save_model(model: Sequential, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write ``model``'s architecture and weights to exactly ``path``, atomically.

    Parameters
    ----------
    model : Sequential
    path : str or PathLike
        The file to write (no extension is added). Its directory must exist.
    format : {"safetensors", "npz"}, optional
        Default: safetensors when installed, else npz.

    Returns
    -------
    Path
    """
    arrays = _weight_arrays(model)
    fmt = default_format() if format is None else format
    return atomic_write(path, _encode(arrays, _base_metadata(model), fmt))


# ----------------------------------------------------------------------------- parsing
def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"xpnet: {path} is not a valid xpnet checkpoint: {what}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _parse_json(raw: bytes, what: str, path: Path) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"{what} is not valid JSON ({exc})") from exc


def _read_safetensors(data: bytes, path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    if len(data) < 8:
        raise _fail(path, f"truncated: {len(data)} bytes, shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise _fail(path, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(data):
        raise _fail(path, f"truncated: the header needs {8 + n} bytes, the file has {len(data)}")
    header = _parse_json(data[8 : 8 + n], "the safetensors header", path)
    if not isinstance(header, dict):
        raise _fail(path, "the safetensors header is not a JSON object")
    extra = header.pop("__metadata__", None)
    if not isinstance(extra, dict) or extra.get("format") != FORMAT_NAME:
        raise _fail(path, "a safetensors file without xpnet metadata (not written by xpnet)")
    text = extra.get(FORMAT_NAME)
    if not isinstance(text, str) or set(extra) != {"format", FORMAT_NAME}:
        raise _fail(path, "the safetensors __metadata__ is not xpnet's")
    meta = _parse_json(text.encode("utf-8", "surrogatepass"), "the xpnet metadata", path)
    buffer = memoryview(data)[8 + n :]
    entries: list[tuple[int, int, str, np.dtype[Any], tuple[int, ...]]] = []
    for name, spec in header.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise _fail(path, f"tensor {name!r}: entry must have dtype, shape and data_offsets")
        dtype = _ST_DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
        if dtype is None:
            raise _fail(path, f"tensor {name!r}: dtype {spec['dtype']!r} is not F32 or F64")
        shape, offsets = spec["shape"], spec["data_offsets"]
        if not _is_int_list(shape, max_len=8) or not _is_int_list(offsets, min_len=2, max_len=2):
            raise _fail(path, f"tensor {name!r}: shape/data_offsets must be non-negative ints")
        entries.append((offsets[0], offsets[1], name, dtype, tuple(shape)))
    arrays = {}
    pos = 0
    for begin, end, name, dtype, shape in sorted(entries):
        nbytes = math.prod(shape) * dtype.itemsize
        if begin != pos or end - begin != nbytes:
            raise _fail(
                path,
                f"tensor {name!r}: data_offsets [{begin}, {end}] do not match its shape {shape} "
                f"and the tensors before it",
            )
        pos = end
        if end > len(buffer):
            raise _fail(path, f"truncated: tensor {name!r} ends past the end of the file")
        arrays[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape).copy()
    if pos != len(buffer):
        raise _fail(path, f"{len(buffer) - pos} bytes after the last tensor")
    return meta, arrays


def _is_int_list(v: Any, min_len: int = 0, max_len: int = 8) -> bool:
    return (
        isinstance(v, list)
        and min_len <= len(v) <= max_len
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**62 for x in v)
    )


def _read_npy(f: Any, size: int, name: str, path: Path) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=_NPY_MAX_HEADER)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=_NPY_MAX_HEADER)
    else:
        raise _fail(path, f"member {name!r}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise _fail(path, f"member {name!r} is an object array (it would need pickle)")
    allowed = ("float32", "float64", "uint8") if name == _NPZ_META else _DTYPES
    if dtype.name not in allowed or dtype.byteorder == ">" or dtype.names is not None:
        raise _fail(path, f"member {name!r} has dtype {dtype}, expected one of {allowed}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > size:
        raise _fail(path, f"member {name!r} claims shape {shape}, larger than its data")
    raw = f.read(nbytes + 1)
    if len(raw) != nbytes:
        raise _fail(path, f"member {name!r} holds {len(raw)} data bytes, its shape needs {nbytes}")
    order: Literal["C", "F"] = "F" if fortran else "C"
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy()


def _read_npz(data: bytes, path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise _fail(path, "the archive has duplicate members")
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise _fail(path, f"member {info.filename!r} is not a .npy array")
            if info.compress_type != zipfile.ZIP_STORED:
                raise _fail(path, f"member {info.filename!r} is compressed (xpnet writes stored)")
        # Stored members cannot be bigger than the archive: no zip bomb gets past this.
        if sum(i.file_size for i in infos) > len(data):
            raise _fail(path, "the archive's members claim more bytes than the file holds")
        if f"{_NPZ_META}.npy" not in names:
            raise _fail(path, "a .npz file without xpnet metadata (not written by xpnet)")
        arrays = {}
        for info in infos:
            name = info.filename[: -len(".npy")]
            with zf.open(info) as f:
                arrays[name] = _read_npy(f, info.file_size, name, path)
    raw = arrays.pop(_NPZ_META)
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_HEADER_BYTES:
        raise _fail(path, "the metadata member is not a 1-D byte array within the size limit")
    meta = _parse_json(raw.tobytes(), "the xpnet metadata", path)
    return meta, arrays


def _sniff(data: bytes, path: Path) -> str:
    if not data:
        raise _fail(path, "the file is empty")
    if len(data) <= 8:
        raise _fail(path, f"truncated: only {len(data)} bytes, too short for any checkpoint")
    if data[:4] == b"PK\x03\x04":
        return "npz"
    if len(data) > 8 and data[8:9] == b"{":
        return "safetensors"
    if data[:6] == b"\x93NUMPY":
        raise _fail(path, "a single .npy array, not a checkpoint")
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}") or data.rstrip().endswith(b"."):
        raise _fail(path, "it looks like a Python pickle, which xpnet never loads")
    raise _fail(path, "unrecognised format (expected safetensors or .npz)")


def _resolve_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        found = _find_state(p)
        if found is None:
            raise FileNotFoundError(
                f"xpnet: {p} is a directory without a checkpoint "
                f"({' or '.join(STATE_FILES.values())})"
            )
        return found
    if not p.exists():
        raise FileNotFoundError(f"xpnet: no such checkpoint file: {str(p)!r}")
    return p


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a checkpoint file; return its metadata and host arrays.

    Verifies the format, the metadata schema, both SHA-256 digests, the array names, shapes and
    dtypes against the recorded architecture, and that every value is finite.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is anything but an intact xpnet checkpoint.
    """
    p = _resolve_path(path)
    data = p.read_bytes()
    fmt = _sniff(data, p)
    try:
        meta, arrays = _read_safetensors(data, p) if fmt == "safetensors" else _read_npz(data, p)
    except CheckpointError:
        raise
    except _PARSE_ERRORS as exc:
        raise _fail(p, f"corrupt {fmt} data ({type(exc).__name__}: {exc})") from exc
    _check_metadata(meta, p)
    if meta["metadata_sha256"] != _metadata_sha256(meta):
        raise _fail(p, "the metadata's SHA-256 does not match (the file was modified)")
    for name in arrays:
        if not _NAME_RE.fullmatch(name):
            raise _fail(p, f"unexpected array name {name!r}")
    if meta["weights_sha256"] != _arrays_sha256(arrays):
        raise _fail(p, "the arrays' SHA-256 does not match (the file was modified or damaged)")
    _check_arrays(meta, arrays, p)
    return meta, arrays


# ----------------------------------------------------------------------------- schema
_TOP_KEYS = {
    "format",
    "format_version",
    "xpnet_version",
    "dtype",
    "layers",
    "weights_sha256",
    "metadata_sha256",
    "training",
}
_TRAINING_KEYS = {"epoch", "history", "optimizer", "loss", "fit", "rng_state"}


def _typename(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _get(d: dict[str, Any], key: str, kind: Any, where: str, path: Path) -> Any:
    if key not in d:
        raise _fail(path, f"metadata field {where}{key} is missing")
    v = d[key]
    ok = (
        (isinstance(v, int) and not isinstance(v, bool))
        if kind is int
        else (isinstance(v, (int, float)) and not isinstance(v, bool))
        if kind is float
        else isinstance(v, kind)
    )
    if not ok:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _fail(path, f"metadata field {where}{key} must be {name}, got {_typename(v)}")
    return v


def _check_keys(d: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise _fail(path, f"unknown metadata fields in {where or 'the top level'}: {unknown}")


def _check_metadata(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise _fail(path, f"the metadata must be a JSON object, got {_typename(meta)}")
    if meta.get("format") != FORMAT_NAME:
        raise _fail(path, f"metadata field format must be {FORMAT_NAME!r}")
    version = _get(meta, "format_version", int, "", path)
    if version > FORMAT_VERSION:
        raise _fail(
            path,
            f"format version {version} was written by a newer xpnet; this one "
            f"({__version__}) reads version {FORMAT_VERSION}: upgrade xpnet",
        )
    if version < 1:
        raise _fail(path, f"format version {version} is invalid")
    _check_keys(meta, _TOP_KEYS, "", path)
    _get(meta, "xpnet_version", str, "", path)
    dtype = _get(meta, "dtype", str, "", path)
    if dtype not in _DTYPES:
        raise _fail(path, f"metadata field dtype must be one of {_DTYPES}, got {dtype!r}")
    for key in ("weights_sha256", "metadata_sha256"):
        if not _SHA_RE.fullmatch(_get(meta, key, str, "", path)):
            raise _fail(path, f"metadata field {key} is not a SHA-256 hex digest")
    layers = _get(meta, "layers", list, "", path)
    for i, entry in enumerate(layers):
        where = f"layers[{i}]."
        if not isinstance(entry, dict):
            raise _fail(path, f"metadata field layers[{i}] must be dict, got {_typename(entry)}")
        _check_keys(entry, {"kind", "config"}, f"layers[{i}]", path)
        _get(entry, "kind", str, where, path)
        config = _get(entry, "config", dict, where, path)
        for k, v in config.items():
            if not (v is None or isinstance(v, (str, int, float))):
                raise _fail(path, f"metadata field {where}config.{k} must be a JSON scalar")
    if "training" in meta:
        _check_training(meta["training"], path)


def _check_training(t: Any, path: Path) -> None:
    if not isinstance(t, dict):
        raise _fail(path, f"metadata field training must be dict, got {_typename(t)}")
    _check_keys(t, _TRAINING_KEYS, "training", path)
    w = "training."
    epoch = _get(t, "epoch", int, w, path)
    if epoch < 0:
        raise _fail(path, f"metadata field training.epoch must be >= 0, got {epoch}")
    _get(t, "loss", str, w, path)
    fit = _get(t, "fit", dict, w, path)
    _check_keys(fit, {"batch_size", "shuffle"}, "training.fit", path)
    _get(fit, "batch_size", int, "training.fit.", path)
    _get(fit, "shuffle", bool, "training.fit.", path)
    rng = _get(t, "rng_state", dict, w, path)
    _get(rng, "bit_generator", str, "training.rng_state.", path)
    opt = _get(t, "optimizer", dict, w, path)
    _check_keys(opt, {"name", "hyperparameters", "steps"}, "training.optimizer", path)
    _get(opt, "name", str, "training.optimizer.", path)
    _get(opt, "hyperparameters", dict, "training.optimizer.", path)
    steps = _get(opt, "steps", list, "training.optimizer.", path)
    if not _is_int_list(steps, max_len=1 << 20):
        raise _fail(path, "metadata field training.optimizer.steps must be non-negative ints")
    history = _get(t, "history", dict, w, path)
    if history.get("epoch") != list(range(epoch)):
        raise _fail(path, f"metadata field training.history.epoch must be [0, ..., {epoch - 1}]")
    for k, v in history.items():
        if not (isinstance(v, list) and len(v) == epoch):
            raise _fail(path, f"metadata field training.history.{k} must list {epoch} values")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise _fail(path, f"metadata field training.history.{k} must hold numbers")


def _expected_parameters(layers: list[Layer]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes from the architecture alone, allocating nothing big."""
    from .layers import Dense

    shapes: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            shapes[f"layers.{i}.W"] = (layer.in_features, layer.out_features)
            shapes[f"layers.{i}.b"] = (layer.out_features,)
        elif layer.parameters():
            shapes.update({f"layers.{i}.{p.name}": p.shape for p in layer.parameters()})
    return shapes


def _check_arrays(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    layers = _rebuild_layers(meta, path)
    expected = _expected_parameters(layers)
    dtype = np.dtype(meta["dtype"])
    weights = {k for k in arrays if k.startswith("layers.")}
    missing, extra = sorted(set(expected) - weights), sorted(weights - set(expected))
    if missing or extra:
        raise _fail(
            path, f"arrays do not match the architecture (missing {missing}, extra {extra})"
        )
    n_params = len(expected)
    param_names = list(expected)
    if "training" in meta and len(meta["training"]["optimizer"]["steps"]) != n_params:
        raise _fail(path, f"training.optimizer.steps must have {n_params} entries")
    for name, a in arrays.items():
        if name.startswith("layers."):
            want = expected[name]
        else:
            if "training" not in meta:
                raise _fail(path, f"optimizer array {name!r} in a file without training state")
            j = int(name.split(".")[1])
            if j >= n_params:
                raise _fail(path, f"optimizer array {name!r} refers to a missing parameter")
            want = expected[param_names[j]]
        if a.shape != want:
            raise _fail(path, f"array {name!r} has shape {a.shape}, the architecture needs {want}")
        if a.dtype != dtype:
            raise _fail(path, f"array {name!r} has dtype {a.dtype}, the model's is {dtype}")
        if not np.isfinite(a).all():
            raise _fail(path, f"array {name!r} holds NaN or infinite values")


def _rebuild_layers(meta: dict[str, Any], path: Path) -> list[Layer]:
    from .layers import layer_from_config

    layers = []
    for i, entry in enumerate(meta["layers"]):
        try:
            layer = layer_from_config(entry["kind"], entry["config"])
        except (TypeError, ValueError) as exc:
            raise _fail(path, f"layer {i} ({entry['kind']}) cannot be rebuilt: {exc}") from exc
        if layer.config() != entry["config"]:
            raise _fail(path, f"layer {i} ({entry['kind']}) config is not canonical")
        layers.append(layer)
    return layers


# ----------------------------------------------------------------------------- loading
def load_model(path: str | os.PathLike[str], backend: str | Backend | None = None) -> Sequential:
    """Rebuild a :class:`~xpnet.Sequential` saved with :meth:`~xpnet.Sequential.save`.

    Parameters
    ----------
    path : str or PathLike
        A file written by ``save``, a training checkpoint file, or a checkpoint directory
        given to ``fit(checkpoint=...)``.
    backend : str or Backend, optional
        Where to put the parameters; default: the active backend.

    Returns
    -------
    Sequential
        The model, with every value verified (format, metadata, architecture, shapes, dtypes,
        SHA-256 digests, finiteness) before it is returned.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is truncated, corrupt, tampered with, or not an xpnet checkpoint. Nothing
        in the file is ever executed or unpickled.
    """
    from .model import Sequential

    target = get_backend() if backend is None else _resolve(backend)
    p = _resolve_path(path)
    meta, arrays = read_checkpoint(p)
    layers = _rebuild_layers(meta, p)
    try:
        model = Sequential(layers, dtype=meta["dtype"], backend=target)
    except ValueError as exc:
        raise _fail(p, f"the layers do not fit together ({exc})") from exc
    order = _parameter_names(model)
    if sorted(order) != sorted(n for n in arrays if n.startswith("layers.")):
        raise _fail(p, "the arrays do not match the rebuilt model's parameters")
    model.set_weights([arrays[n] for n in order])
    return model


def _parameter_names(model: Sequential) -> list[str]:
    """Array names of the model's parameters, in :meth:`~xpnet.Sequential.parameters` order."""
    model._build()
    return [
        f"layers.{i}.{p.name}" for i, layer in enumerate(model.layers) for p in layer.parameters()
    ]


# ----------------------------------------------------------------------------- training state
class TrainingCheckpointer:
    """Training state in one directory: ``state.safetensors`` (or ``state.npz``), atomically.

    Used by :meth:`~xpnet.Sequential.fit`; the file is also loadable by :func:`load_model`.
    At the end of every epoch the state is copied to the host; it is written every ``every``
    epochs, after the last epoch, and on a keyboard interrupt (the last completed epoch, never a
    partial one).
    """

    def __init__(
        self, directory: str | os.PathLike[str], every: int = 1, format: str | None = None
    ) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"xpnet: checkpoint path {str(directory)!r} is a file")
        self.every = every
        self.format = default_format() if format is None else format
        if self.format not in STATE_FILES:
            raise ValueError(f"xpnet: format must be 'safetensors' or 'npz', got {format!r}")
        self._pending: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    @property
    def path(self) -> Path:
        """The file this checkpointer writes."""
        return self.directory / STATE_FILES[self.format]

    # -------------------------------------------------------------- save
    def end_epoch(
        self,
        model: Sequential,
        optimizer: Optimizer,
        loss: Loss,
        rng: np.random.Generator,
        history: History,
        *,
        batch_size: int,
        shuffle: bool,
        final: bool,
    ) -> None:
        """Capture the state after a completed epoch; write it when due."""
        self._pending = self._capture(model, optimizer, loss, rng, history, batch_size, shuffle)
        completed = len(history.epoch)
        if final or completed % self.every == 0:
            self.write_pending()

    def write_pending(self) -> bool:
        """Write the last captured state if it is not on disk yet; return whether it wrote."""
        if self._pending is None:
            return False
        arrays, meta = self._pending
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, _encode(arrays, meta, self.format))
        self._pending = None
        for other in STATE_FILES.values():
            # A leftover of the other format (safetensors installed or removed since) would
            # be an older state; only one may remain so resume never picks the stale one.
            if other != self.path.name and (self.directory / other).exists():
                (self.directory / other).unlink()
        return True

    def _capture(
        self,
        model: Sequential,
        optimizer: Optimizer,
        loss: Loss,
        rng: np.random.Generator,
        history: History,
        batch_size: int,
        shuffle: bool,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = _weight_arrays(model)
        params = model.parameters()
        state = optimizer.state_dict(params)
        steps = []
        for j, entry in enumerate(state["state"]):
            steps.append(int(entry.get("step", 0)))
            for k, v in entry.items():
                if k != "step":
                    arrays[f"optimizer.{j}.{k}"] = np.array(v, dtype=model.dtype, copy=True)
        meta = _base_metadata(model)
        meta["training"] = {
            "epoch": len(history.epoch),
            "history": history.to_dict(),
            "optimizer": {
                "name": optimizer.name,
                "hyperparameters": _jsonable(optimizer.hyperparameters()),
                "steps": steps,
            },
            "loss": loss.name,
            "fit": {"batch_size": int(batch_size), "shuffle": bool(shuffle)},
            "rng_state": _jsonable(copy.deepcopy(rng.bit_generator.state)),
        }
        return arrays, meta

    # -------------------------------------------------------------- resume
    def restore(
        self,
        model: Sequential,
        optimizer: Optimizer,
        loss: Loss,
        rng: np.random.Generator,
        history: History,
        *,
        batch_size: int,
        shuffle: bool,
    ) -> int:
        """Load the directory's state into the model, optimizer, generator and history.

        Everything is checked before anything is changed. Returns the number of epochs the
        checkpoint had completed.

        Raises
        ------
        FileNotFoundError
            If the directory holds no checkpoint.
        CheckpointError
            If the file is damaged, or was written for another architecture, dtype, optimizer
            kind, loss or set of recorded metrics.
        """
        path = _find_state(self.directory)
        if path is None:
            raise FileNotFoundError(
                f"xpnet: resume=True but {str(self.directory)!r} holds no checkpoint "
                f"({' or '.join(STATE_FILES.values())}); run without resume to start fresh"
            )
        meta, arrays = read_checkpoint(path)
        if "training" not in meta:
            raise CheckpointError(
                f"xpnet: {path} holds a model but no training state (it was written by "
                "Sequential.save, not by fit(checkpoint=...)); use xpnet.load_model for it"
            )
        t = meta["training"]

        def refuse(what: str, saved: Any, now: Any) -> CheckpointError:
            return CheckpointError(
                f"xpnet: cannot resume from {path}: it was written for {what} {saved}, but this "
                f"fit uses {now}; resume with the same settings or start a new checkpoint "
                "directory"
            )

        mine = architecture(model)
        if meta["layers"] != mine:
            raise refuse("the architecture", _describe(meta["layers"]), _describe(mine))
        if meta["dtype"] != model.dtype:
            raise refuse("dtype", meta["dtype"], model.dtype)
        if t["optimizer"]["name"] != optimizer.name:
            raise refuse("optimizer", t["optimizer"]["name"], optimizer.name)
        if t["loss"] != loss.name:
            raise refuse("loss", t["loss"], loss.name)
        saved_keys = sorted(k for k in t["history"] if k != "epoch")
        if saved_keys != sorted(history.history):
            raise refuse("the metrics", saved_keys, sorted(history.history))
        names = set(getattr(optimizer, "state_names", ()))
        bad = sorted(
            n for n in arrays if n.startswith("optimizer.") and n.split(".")[2] not in names
        )
        if bad:
            raise CheckpointError(
                f"xpnet: cannot resume from {path}: optimizer state {bad} is not state of "
                f"{type(optimizer).__name__}"
            )
        bit_gen = type(rng.bit_generator)()
        try:
            bit_gen.state = t["rng_state"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"xpnet: cannot resume from {path}: its random generator state does not fit "
                f"this run's {type(rng.bit_generator).__name__} ({exc})"
            ) from exc
        saved_hp = t["optimizer"]["hyperparameters"]
        if saved_hp != _jsonable(optimizer.hyperparameters()):
            warnings.warn(
                f"xpnet: resuming with optimizer hyperparameters {optimizer.hyperparameters()} "
                f"instead of the checkpoint's {saved_hp}; the run will differ from an "
                "uninterrupted one",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )
        for key, now in (("batch_size", batch_size), ("shuffle", shuffle)):
            if t["fit"][key] != now:
                warnings.warn(
                    f"xpnet: resuming with {key}={now!r}, the checkpoint used "
                    f"{t['fit'][key]!r}; the run will differ from an uninterrupted one",
                    UserWarning,
                    stacklevel=_user_stacklevel(),
                )

        params = model.parameters()
        order = _parameter_names(model)
        model.set_weights([arrays[n] for n in order])
        entries: list[dict[str, Any]] = [{"step": s} for s in t["optimizer"]["steps"]]
        for name, a in arrays.items():
            if name.startswith("optimizer."):
                _, j, k = name.split(".")
                entries[int(j)][k] = a
        optimizer.load_state_dict(
            {"name": optimizer.name, "hyperparameters": saved_hp, "state": entries}, params
        )
        rng.bit_generator.state = bit_gen.state
        history.epoch = list(t["history"]["epoch"])
        for k in saved_keys:
            history.history[k] = [float(v) for v in t["history"][k]]
        return int(t["epoch"])


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside xpnet and NumPy
    (``fit`` is wrapped by ``np.errstate``, so a fixed level would name NumPy's wrapper)."""
    here = Path(__file__).resolve().parent
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        file = Path(frame.f_code.co_filename)
        if not (here in file.parents or "numpy" in file.parts):
            break
        frame = frame.f_back
        level += 1
    return level


def _find_state(directory: Path) -> Path | None:
    found = [directory / n for n in STATE_FILES.values() if (directory / n).is_file()]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def _describe(layers: list[dict[str, Any]]) -> str:
    parts = []
    for entry in layers:
        args = ", ".join(f"{k}={v!r}" for k, v in entry["config"].items() if v is not None)
        parts.append(f"{entry['kind']}({args})")
    return "[" + ", ".join(parts) + "]"


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (tuples to lists, NumPy scalars to Python numbers)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
