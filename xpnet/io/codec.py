"""Checkpoint bytes: safetensors and ``.npz`` encoding, digests, format sniffing, strict parsing.

This module knows the byte layouts and nothing of models or of the rest of xpnet (it imports
none of it), so that everything else can use it without an import cycle. Its errors are
:class:`CodecError`, a :class:`ValueError` that says what is wrong with the bytes; the caller
knows which file they came from and wraps the error into a :class:`~xpnet.CheckpointError`.

Both formats are parsed with NumPy alone: no pickle, no ``eval``, bounded header sizes, exact
byte accounting, so a file of either format loads whether or not ``safetensors`` is installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Literal

import numpy as np

__all__ = [
    "FORMATS",
    "FORMAT_NAME",
    "MAX_HEADER_BYTES",
    "CodecError",
    "arrays_sha256",
    "canonical_json",
    "decode",
    "default_format",
    "encode",
    "is_int_list",
    "metadata_sha256",
    "sniff",
]

FORMAT_NAME = "xpnet"
FORMATS = ("safetensors", "npz")
#: Largest JSON header accepted (the safetensors header, or the .npz metadata member). A real
#: header is a few kilobytes plus ~20 bytes per recorded epoch metric.
MAX_HEADER_BYTES = 16 * 1024 * 1024
_NPY_MAX_HEADER = 10_000
_NPZ_META = "__xpnet__"
_DTYPES = ("float32", "float64")
_ST_DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}

# What a parser of untrusted bytes (zipfile, numpy's .npy header reader, json) may raise on
# garbage; each becomes a CodecError that says why.
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


class CodecError(ValueError):
    """The bytes are not a well-formed xpnet checkpoint; the message says why."""


def default_format() -> str:
    """``"safetensors"`` when the package is installed, else ``"npz"``."""
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError:
        return "npz"
    return "safetensors"


# ----------------------------------------------------------------------------- digests
def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys and no whitespace: one text per value, to hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over name, dtype, shape and little-endian C-order bytes of each array, by name."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        # Always "<": a native array reports "=", which is big-endian on a big-endian host.
        dtype = a.dtype.newbyteorder("<")
        # A JSON line per array makes the stream unambiguous (no two different sets of
        # names/shapes/bytes can hash the same concatenation).
        h.update(canonical_json([name, dtype.name, list(a.shape), a.nbytes]).encode())
        h.update(b"\n")
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return h.hexdigest()


def metadata_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``meta`` without its own ``metadata_sha256`` field."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


# ----------------------------------------------------------------------------- writing
def encode(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], fmt: str
) -> Callable[[BinaryIO], Any]:
    """Return a ``write(f)`` callable producing the file's bytes.

    ``meta`` gets the two digests (``weights_sha256``, ``metadata_sha256``) added.

    Raises
    ------
    ValueError
        If ``fmt`` is not ``"safetensors"`` or ``"npz"``.
    ImportError
        If ``fmt`` is ``"safetensors"`` and the package is not installed.
    """
    meta = dict(meta)
    meta["weights_sha256"] = arrays_sha256(arrays)
    meta["metadata_sha256"] = metadata_sha256(meta)
    text = canonical_json(meta)
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


# ----------------------------------------------------------------------------- parsing
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"{what} is not valid JSON ({exc})") from exc


def is_int_list(v: Any, min_len: int = 0, max_len: int = 8) -> bool:
    """Whether ``v`` is a list of ``min_len`` to ``max_len`` non-negative ints (no bools)."""
    return (
        isinstance(v, list)
        and min_len <= len(v) <= max_len
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**62 for x in v)
    )


def _read_safetensors(data: bytes) -> tuple[Any, dict[str, np.ndarray]]:
    if len(data) < 8:  # pragma: no mutate
        raise CodecError(f"truncated: {len(data)} bytes, shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise CodecError(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(data):
        raise CodecError(f"truncated: the header needs {8 + n} bytes, the file has {len(data)}")
    header = _parse_json(data[8 : 8 + n], "the safetensors header")
    if not isinstance(header, dict):
        raise CodecError("the safetensors header is not a JSON object")
    extra = header.pop("__metadata__", None)
    if not isinstance(extra, dict) or extra.get("format") != FORMAT_NAME:
        raise CodecError("a safetensors file without xpnet metadata (not written by xpnet)")
    text = extra.get(FORMAT_NAME)
    if not isinstance(text, str) or set(extra) != {"format", FORMAT_NAME}:
        raise CodecError("the safetensors __metadata__ is not xpnet's")
    meta = _parse_json(text.encode("utf-8", "surrogatepass"), "the xpnet metadata")
    buffer = memoryview(data)[8 + n :]
    entries: list[tuple[int, int, str, np.dtype[Any], tuple[int, ...]]] = []
    for name, spec in header.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise CodecError(f"tensor {name!r}: entry must have dtype, shape and data_offsets")
        dtype = _ST_DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
        if dtype is None:
            raise CodecError(f"tensor {name!r}: dtype {spec['dtype']!r} is not F32 or F64")
        shape, offsets = spec["shape"], spec["data_offsets"]
        if not is_int_list(shape, max_len=8) or not is_int_list(offsets, min_len=2, max_len=2):
            raise CodecError(f"tensor {name!r}: shape/data_offsets must be non-negative ints")
        entries.append((offsets[0], offsets[1], name, dtype, tuple(shape)))
    arrays = {}
    pos = 0
    for begin, end, name, dtype, shape in sorted(entries):
        nbytes = math.prod(shape) * dtype.itemsize
        if begin != pos or end - begin != nbytes:
            raise CodecError(
                f"tensor {name!r}: data_offsets [{begin}, {end}] do not match its shape {shape} "
                f"and the tensors before it"
            )
        pos = end
        if end > len(buffer):
            raise CodecError(f"truncated: tensor {name!r} ends past the end of the file")
        arrays[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape).copy()
    if pos != len(buffer):
        raise CodecError(f"{len(buffer) - pos} bytes after the last tensor")
    return meta, arrays


def _read_npy(f: Any, size: int, name: str) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=_NPY_MAX_HEADER)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=_NPY_MAX_HEADER)
    else:
        raise CodecError(f"member {name!r}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise CodecError(f"member {name!r} is an object array (it would need pickle)")
    allowed = ("float32", "float64", "uint8") if name == _NPZ_META else _DTYPES
    if dtype.name not in allowed or dtype.byteorder == ">" or dtype.names is not None:
        raise CodecError(f"member {name!r} has dtype {dtype}, expected one of {allowed}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > size:
        raise CodecError(f"member {name!r} claims shape {shape}, larger than its data")
    raw = f.read(nbytes + 1)
    if len(raw) != nbytes:
        raise CodecError(f"member {name!r} holds {len(raw)} data bytes, its shape needs {nbytes}")
    order: Literal["C", "F"] = "F" if fortran else "C"
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy()


def _read_npz(data: bytes) -> tuple[Any, dict[str, np.ndarray]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise CodecError("the archive has duplicate members")
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise CodecError(f"member {info.filename!r} is not a .npy array")
            if info.compress_type != zipfile.ZIP_STORED:
                raise CodecError(f"member {info.filename!r} is compressed (xpnet writes stored)")
        # Stored members cannot be bigger than the archive: no zip bomb gets past this.
        if sum(i.file_size for i in infos) > len(data):
            raise CodecError("the archive's members claim more bytes than the file holds")
        if f"{_NPZ_META}.npy" not in names:
            raise CodecError("a .npz file without xpnet metadata (not written by xpnet)")
        arrays = {}
        for info in infos:
            name = info.filename[: -len(".npy")]
            with zf.open(info) as f:
                arrays[name] = _read_npy(f, info.file_size, name)
    raw = arrays.pop(_NPZ_META)
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_HEADER_BYTES:
        raise CodecError("the metadata member is not a 1-D byte array within the size limit")
    meta = _parse_json(raw.tobytes(), "the xpnet metadata")
    return meta, arrays


def sniff(data: bytes) -> str:
    """The format of ``data`` from its first bytes (never from a file name).

    Raises
    ------
    CodecError
        If the bytes are empty, too short, or another format (a lone ``.npy``, a pickle).
    """
    if not data:
        raise CodecError("the file is empty")
    if len(data) <= 8:
        raise CodecError(f"truncated: only {len(data)} bytes, too short for any checkpoint")
    if data[:4] == b"PK\x03\x04":
        return "npz"
    if data[8:9] == b"{":
        return "safetensors"
    if data[:6] == b"\x93NUMPY":
        raise CodecError("a single .npy array, not a checkpoint")
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}") or data.rstrip().endswith(b"."):
        raise CodecError("it looks like a Python pickle, which xpnet never loads")
    raise CodecError("unrecognised format (expected safetensors or .npz)")


def decode(data: bytes) -> tuple[Any, dict[str, np.ndarray]]:
    """Parse a checkpoint's bytes into its (unchecked) metadata and host arrays.

    Only the byte layout is verified here; the metadata's schema, the digests and the
    architecture are checked by the caller.

    Raises
    ------
    CodecError
        If the bytes are not a well-formed safetensors or ``.npz`` file with xpnet metadata.
    """
    fmt = sniff(data)
    try:
        return _read_safetensors(data) if fmt == "safetensors" else _read_npz(data)
    except CodecError:
        raise
    except _PARSE_ERRORS as exc:
        raise CodecError(f"corrupt {fmt} data ({type(exc).__name__}: {exc})") from exc
