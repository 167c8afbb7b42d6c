"""Mirror download against a real local HTTP server: success, failures, and cache integrity."""

from __future__ import annotations

import gzip
import re
import time

import numpy as np
import pytest

from xpnet.datasets import download, load_fashion_mnist, load_mnist, mnist, resolve_data_dir
from xpnet.errors import ChecksumError, DataError, DownloadError

try:
    from datasets_helpers import (
        MNIST_FILES,
        leftover_files,
        mirror_server,
        synthetic_mnist,
        write_gz_idx,
    )
except ImportError:  # tests/ imported as a package
    from tests.datasets_helpers import (
        MNIST_FILES,
        leftover_files,
        mirror_server,
        synthetic_mnist,
        write_gz_idx,
    )


@pytest.fixture(autouse=True)
def _fast_retry(monkeypatch):
    monkeypatch.setattr(download, "RETRY_BACKOFF", 0.01)


@pytest.fixture
def arrays():
    return synthetic_mnist()


@pytest.fixture
def served(tmp_path, arrays, monkeypatch):
    """A running mirror server with synthetic MNIST files whose digests the loader expects.

    ``<root>/wrong/`` holds valid IDX files with different content (checksum mismatch).
    """
    root = tmp_path / "www"
    digests = write_gz_idx(root, arrays)
    write_gz_idx(root / "wrong", synthetic_mnist(seed=1))
    for name, digest in digests.items():
        monkeypatch.setitem(mnist.MNIST_SHA256, name, digest)
        monkeypatch.setitem(mnist.FASHION_MNIST_SHA256, name, digest)
    with mirror_server(root) as server:
        yield server


def _check_result(result, arrays):
    (X, y), (Xt, yt) = result
    assert X.shape == (20, 784) and Xt.shape == (10, 784)
    assert X.dtype == np.uint8 and X.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (20,) and yt.shape == (10,)
    np.testing.assert_array_equal(X, arrays[MNIST_FILES[0]].reshape(20, 784))
    np.testing.assert_array_equal(y, arrays[MNIST_FILES[1]])
    np.testing.assert_array_equal(Xt, arrays[MNIST_FILES[2]].reshape(10, 784))
    np.testing.assert_array_equal(yt, arrays[MNIST_FILES[3]])


def test_success_then_cached(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    _check_result(load_mnist(data_dir, mirrors=[served.url()], timeout=5), arrays)
    assert leftover_files(data_dir / "mnist") == sorted(MNIST_FILES)
    n_requests = len(served.requests)
    assert n_requests == 4
    # Second call is served from the cache, without touching the network.
    _check_result(load_mnist(data_dir, download=False), arrays)
    _check_result(load_mnist(data_dir, mirrors=[served.url()], timeout=5), arrays)
    assert len(served.requests) == n_requests


def test_fashion_mnist_uses_its_own_directory(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    _check_result(load_fashion_mnist(data_dir, mirrors=[served.url()], timeout=5), arrays)
    assert leftover_files(data_dir / "fashion-mnist") == sorted(MNIST_FILES)
    assert not (data_dir / "mnist").exists()


def test_404_then_second_mirror(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    mirrors = [served.url("missing"), served.url("ok")]
    _check_result(load_mnist(data_dir, mirrors=mirrors, timeout=5), arrays)
    # 404 is permanent: one request per file on the first mirror, no retry.
    assert sum(r.startswith("/missing/") for r in served.requests) == 4
    assert leftover_files(data_dir / "mnist") == sorted(MNIST_FILES)


def test_truncated_body_then_second_mirror(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    mirrors = [served.url("truncated"), served.url("ok")]
    _check_result(load_mnist(data_dir, mirrors=mirrors, timeout=5), arrays)
    # Retried once, then moved on.
    assert sum(r.startswith("/truncated/") for r in served.requests) == 8
    assert leftover_files(data_dir / "mnist") == sorted(MNIST_FILES)


def test_all_mirrors_fail_lists_each_reason(tmp_path, served):
    data_dir = tmp_path / "data"
    mirrors = [served.url("missing"), served.url("truncated"), served.url("wrong")]
    with pytest.raises(DownloadError) as info:
        load_mnist(data_dir, mirrors=mirrors, timeout=5)
    msg = str(info.value)
    assert "MNIST" in msg and MNIST_FILES[0] in msg
    assert re.search(r"/missing/train-images-idx3-ubyte\.gz: HTTP 404", msg)
    assert re.search(r"/truncated/\S+: truncated body: expected \d+ bytes", msg)
    assert re.search(r"/wrong/\S+: .*SHA-256 .* expected [0-9a-f]{64}", msg)
    assert str(data_dir / "mnist") in msg
    assert "--data-dir" in msg and "XPNET_DATA_DIR" in msg
    # Nothing partial or unverified, and no temporaries, stays in the cache.
    assert leftover_files(data_dir / "mnist") == []


def test_wrong_payload_then_good_mirror(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    _check_result(
        load_mnist(data_dir, mirrors=[served.url("wrong"), served.url("ok")], timeout=5), arrays
    )
    assert leftover_files(data_dir / "mnist") == sorted(MNIST_FILES)


@pytest.mark.parametrize("mode", ["stall", "hang"])
def test_stalled_server_times_out(tmp_path, served, mode):
    data_dir = tmp_path / "data"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=rf"/{mode}/\S+: timed out after 0.5 s") as info:
        load_mnist(data_dir, mirrors=[served.url(mode)], timeout=0.5)
    # Two attempts of 0.5 s each, plus slack; without the timeout it would wait 10 s.
    assert time.monotonic() - start < 4
    assert "2 attempts" in str(info.value)
    assert leftover_files(data_dir / "mnist") == []


def test_stalled_mirror_is_skipped(tmp_path, served, arrays):
    # Three files already cached, so only one download goes through the stalling mirror.
    data_dir = tmp_path / "data"
    write_gz_idx(data_dir / "mnist", {k: v for k, v in arrays.items() if k != MNIST_FILES[3]})
    result = load_mnist(data_dir, mirrors=[served.url("stall"), served.url("ok")], timeout=0.5)
    _check_result(result, arrays)
    assert leftover_files(data_dir / "mnist") == sorted(MNIST_FILES)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated-gzip"),
        pytest.param(lambda raw: gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"), id="sha"),
        pytest.param(lambda raw: b"not a gzip file at all", id="garbage"),
    ],
)
def test_corrupt_cache_is_warned_removed_and_replaced(tmp_path, served, arrays, corrupt):
    data_dir = tmp_path / "data"
    load_mnist(data_dir, mirrors=[served.url()], timeout=5)
    path = data_dir / "mnist" / MNIST_FILES[1]
    path.write_bytes(corrupt(path.read_bytes()))
    n_requests = len(served.requests)
    with pytest.warns(UserWarning, match=r"train-labels-idx1-ubyte\.gz is corrupt"):
        result = load_mnist(data_dir, mirrors=[served.url()], timeout=5)
    _check_result(result, arrays)
    assert served.requests[n_requests:] == ["/ok/" + MNIST_FILES[1]]
    assert leftover_files(data_dir / "mnist") == sorted(MNIST_FILES)


def test_corrupt_cache_without_download_raises(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    write_gz_idx(data_dir / "mnist", arrays)
    path = data_dir / "mnist" / MNIST_FILES[0]
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz is corrupt.*SHA-256"):
        load_mnist(data_dir, download=False)


def test_corrupt_cache_and_no_good_mirror(tmp_path, served, arrays):
    data_dir = tmp_path / "data"
    write_gz_idx(data_dir / "mnist", arrays)
    (data_dir / "mnist" / MNIST_FILES[2]).write_bytes(b"junk")
    with (
        pytest.warns(UserWarning, match="is corrupt"),
        pytest.raises(DownloadError, match="HTTP 404"),
    ):
        load_mnist(data_dir, mirrors=[served.url("missing")], timeout=5)
    # The corrupt file is gone rather than kept around to be used later.
    assert MNIST_FILES[2] not in leftover_files(data_dir / "mnist")


def test_offline_missing_files(tmp_path, arrays):
    data_dir = tmp_path / "data"
    write_gz_idx(data_dir / "mnist", {MNIST_FILES[0]: arrays[MNIST_FILES[0]]})
    with pytest.raises(DataError) as info:
        load_mnist(data_dir, download=False)
    msg = str(info.value)
    assert str(data_dir / "mnist") in msg
    for name in MNIST_FILES[1:]:
        assert name in msg
    assert MNIST_FILES[0] + "," not in msg
    assert "--data-dir" in msg and "XPNET_DATA_DIR" in msg
    assert not isinstance(info.value, DownloadError)


def test_inconsistent_counts(tmp_path, served, arrays, monkeypatch):
    bad = dict(arrays)
    bad[MNIST_FILES[1]] = arrays[MNIST_FILES[1]][:-1]
    digests = write_gz_idx(tmp_path / "data" / "mnist", bad)
    for name, digest in digests.items():
        monkeypatch.setitem(mnist.MNIST_SHA256, name, digest)
    with pytest.raises(DataError, match=r"holds 20 images but .* holds 19 labels"):
        load_mnist(tmp_path / "data", download=False)


@pytest.mark.parametrize(
    ("name", "array", "pattern"),
    [
        (MNIST_FILES[0], np.zeros((20, 28, 27), np.uint8), r"shape \(n, 28, 28\).*\(20, 28, 27\)"),
        (MNIST_FILES[1], np.full(20, 10, np.uint8), r"labels in 0\.\.9, found 10"),
        (MNIST_FILES[1], np.zeros(20, np.int32), r"1-D uint8 label array, found int32"),
    ],
)
def test_bad_content(tmp_path, arrays, monkeypatch, name, array, pattern):
    bad = dict(arrays)
    bad[name] = array
    digests = write_gz_idx(tmp_path / "mnist", bad)
    for file, digest in digests.items():
        monkeypatch.setitem(mnist.MNIST_SHA256, file, digest)
    with pytest.raises(DataError, match=pattern):
        load_mnist(tmp_path, download=False)


def test_fetch_file_no_mirrors(tmp_path):
    with pytest.raises(DownloadError, match="no mirrors"):
        download.fetch_file("x", tmp_path, [], lambda p: None)


def test_fetch_file_connection_refused(tmp_path):
    # Port 9 on localhost: nothing listens there, so the connection is refused at once.
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9/x: connection failed"):
        download.fetch_file("x", tmp_path, ["http://127.0.0.1:9/"], lambda p: None, timeout=2)
    assert leftover_files(tmp_path) == []


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("XPNET_DATA_DIR")
    assert resolve_data_dir() == tmp_path / "xdg" / "xpnet"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "xpnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "xpnet"


def test_default_mirror_constants():
    assert mnist.MNIST_MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert len(mnist.MNIST_MIRRORS) == 3 and len(mnist.FASHION_MNIST_MIRRORS) == 2
    for table in (mnist.MNIST_SHA256, mnist.FASHION_MNIST_SHA256):
        assert sorted(table) == sorted(MNIST_FILES)
        assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in table.values())
