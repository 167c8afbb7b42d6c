"""IDX parser: round trips of every type code and a clear DataError for each malformed header."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from xpnet.datasets import parse_idx, read_idx
from xpnet.errors import DataError

try:
    from datasets_helpers import idx_bytes
except ImportError:  # tests/ imported as a package
    from tests.datasets_helpers import idx_bytes


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        (np.uint8, (3, 28, 28)),
        (np.uint8, (7,)),
        (np.int8, (2, 5)),
        (np.int16, (4, 3)),
        (np.int32, (2, 2, 2)),
        (np.float32, (5,)),
        (np.float64, (1, 3, 1, 2)),
    ],
)
def test_round_trip(dtype, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    else:
        a = rng.standard_normal(shape).astype(dtype)
    raw = idx_bytes(a)
    for out in (parse_idx(raw), read_idx(raw), read_idx(gzip.compress(raw))):
        assert out.dtype == np.dtype(dtype)
        assert out.dtype.isnative
        assert out.shape == shape
        assert out.flags.c_contiguous and out.flags.writeable
        np.testing.assert_array_equal(out, a)


def test_big_endian_values():
    raw = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(parse_idx(raw), [0x0102, -2])


def test_read_idx_from_path(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx.gz")), a)


def test_zero_length_dimension_is_empty():
    out = parse_idx(bytes([0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 5]))
    assert out.shape == (0, 5)


GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (b"", r"expected a 4-byte magic number, found only 0"),
        (b"\x00\x00\x08", r"found only 3"),
        (b"\x01\x00\x08\x01" + GOOD[4:], r"bad IDX magic.*expected .*00 00, found 01 00"),
        (b"\x00\x07\x08\x02" + GOOD[4:], r"bad IDX magic.*found 00 07"),
        (b"\x00\x00\x0a\x02" + GOOD[4:], r"unknown IDX type code.*0x08.*found 0x0A"),
        (b"\x00\x00\x08\x00", r"expected at least 1 dimension, found 0"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"truncated IDX header: expected 16 bytes.*found 8"),
        (GOOD[:-1], r"truncated payload: expected 6 bytes.*\(2, 3\).*found 5"),
        (GOOD + b"\x00\x00", r"trailing bytes after payload: expected 6 bytes.*found 8"),
        (
            bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + b"\x00" * 7,
            r"truncated payload: expected 8 bytes.*4 byte\(s\) per value.*found 7",
        ),
    ],
    ids=[
        "empty",
        "short-magic",
        "magic-byte0",
        "magic-byte1",
        "type-code",
        "zero-dims",
        "short-dims",
        "truncated",
        "trailing",
        "truncated-int32",
    ],
)
def test_malformed(raw, pattern):
    with pytest.raises(DataError, match=pattern):
        parse_idx(raw)


def test_gzip_given_to_parse_idx_is_named():
    with pytest.raises(DataError, match="gzip-compressed; use read_idx"):
        parse_idx(gzip.compress(GOOD))


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(GOOD)[:-6])
    with pytest.raises(DataError, match=r"bad\.gz: corrupt gzip stream"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope.gz")


def test_huge_declared_dims_do_not_allocate():
    raw = bytes([0, 0, 0x0E, 2]) + b"\xff\xff\xff\xff" * 2 + b"\x00" * 8
    with pytest.raises(DataError, match="truncated payload"):
        parse_idx(raw)
