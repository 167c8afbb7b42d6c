"""Reader for the IDX file format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), then one big-endian uint32 per dimension, then the values in C order, big-endian.
The distributed files are gzip-compressed; :func:`read_idx` decompresses them transparently.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from xpnet.errors import DataError

__all__ = ["IDX_DTYPES", "decompress_if_gzip", "parse_idx", "read_idx"]

#: IDX type code -> big-endian NumPy dtype of the stored values.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def decompress_if_gzip(data: bytes, *, source: str = "data") -> bytes:
    """Return ``data`` gunzipped if it starts with the gzip magic, else unchanged.

    Parameters
    ----------
    data : bytes
        Raw file content.
    source : str, optional
        How to name the content in error messages (usually the file path).

    Returns
    -------
    bytes
        The decompressed payload, or ``data`` itself when it is not gzip-compressed.

    Raises
    ------
    DataError
        If the content looks like gzip but cannot be decompressed (truncated or corrupt).
    """
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: corrupt gzip stream ({exc})") from exc


def parse_idx(data: bytes, *, source: str = "IDX data") -> np.ndarray:
    """Parse uncompressed IDX bytes into an array.

    Parameters
    ----------
    data : bytes
        The IDX payload (not gzip-compressed; use :func:`read_idx` for ``.gz`` content).
    source : str, optional
        How to name the content in error messages (usually the file path).

    Returns
    -------
    numpy.ndarray
        A writable, C-contiguous array in native byte order, of the shape given by the header
        and the dtype given by the type code.

    Raises
    ------
    DataError
        If the magic number, the type code or the number of dimensions is invalid, or if the
        payload is shorter or longer than the header says.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    if len(data) < 4:
        raise DataError(
            f"{source}: not an IDX file: expected a 4-byte magic number, found only "
            f"{len(data)} byte(s)"
        )
    if data[0] != 0 or data[1] != 0:
        hint = " (this looks gzip-compressed; use read_idx)" if data.startswith(_GZIP_MAGIC) else ""
        raise DataError(
            f"{source}: bad IDX magic number: expected the first two bytes to be 00 00, "
            f"found {data[0]:02x} {data[1]:02x}{hint}"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DataError(
            f"{source}: unknown IDX type code: expected one of {known}, found 0x{type_code:02X}"
        )
    if ndim == 0:
        raise DataError(f"{source}: bad IDX header: expected at least 1 dimension, found 0")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{source}: truncated IDX header: expected {header_len} bytes for {ndim} "
            f"dimension(s), found {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    # Python ints, so a hostile header cannot overflow the size computation.
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        problem = "truncated payload" if found < expected else "trailing bytes after payload"
        raise DataError(
            f"{source}: {problem}: expected {expected} bytes of data for shape {dims} "
            f"({dtype.itemsize} byte(s) per value), found {found}"
        )
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header_len)
    # astype copies, which also makes the result writable (frombuffer over bytes is not).
    return values.astype(dtype.newbyteorder("="), order="C").reshape(dims)


def read_idx(path_or_bytes: str | os.PathLike[str] | bytes) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not.

    Parameters
    ----------
    path_or_bytes : str, os.PathLike or bytes
        A file path, or the file's content. Content starting with the gzip magic is
        decompressed first.

    Returns
    -------
    numpy.ndarray
        The parsed array (see :func:`parse_idx`).

    Raises
    ------
    DataError
        If the file cannot be read, decompressed or parsed.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        raw, source = bytes(path_or_bytes), "IDX data"
    else:
        path = Path(path_or_bytes)
        source = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read IDX file {source}: {exc}") from exc
    return parse_idx(decompress_if_gzip(raw, source=source), source=source)
