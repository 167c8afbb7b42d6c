"""The real MNIST files: known statistics, and a download of them through the real code.

Skipped unless ``$XPNET_DATA_DIR/mnist/`` holds the four original gzip IDX files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from xpnet.datasets import download, load_mnist

try:
    from datasets_helpers import MNIST_FILES, copy_files, leftover_files, mirror_server
except ImportError:  # tests/ imported as a package
    from tests.datasets_helpers import MNIST_FILES, copy_files, leftover_files, mirror_server

pytestmark = pytest.mark.mnist


@pytest.fixture(scope="module")
def data_dir() -> Path:
    env = os.environ.get("XPNET_DATA_DIR")
    if not env:
        pytest.skip("XPNET_DATA_DIR is not set; it should name a directory holding mnist/")
    root = Path(env)
    missing = [name for name in MNIST_FILES if not (root / "mnist" / name).is_file()]
    if missing:
        pytest.skip(f"MNIST files missing from {root / 'mnist'}: {', '.join(missing)}")
    return root


def _check_known_statistics(result):
    (X, y), (Xt, yt) = result
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == Xt.dtype == np.uint8 and X.flags.c_contiguous
    assert y.shape == (60000,) and yt.shape == (10000,) and y.dtype == np.int64
    assert abs(X.mean() - 33.3184) < 1e-3
    assert abs(Xt.mean() - 33.7912) < 1e-3
    expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    np.testing.assert_array_equal(np.bincount(y, minlength=10), expected)
    assert yt.min() == 0 and yt.max() == 9


def test_known_statistics(data_dir):
    _check_known_statistics(load_mnist(data_dir, download=False))


def test_download_real_files_with_real_digests(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "RETRY_BACKOFF", 0.01)
    root = tmp_path / "www"
    copy_files(data_dir / "mnist", root)
    cache = tmp_path / "cache"
    with mirror_server(root) as server:
        result = load_mnist(cache, mirrors=[server.url("missing"), server.url("ok")], timeout=10)
    _check_known_statistics(result)
    assert leftover_files(cache / "mnist") == sorted(MNIST_FILES)
