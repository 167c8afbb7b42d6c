"""Shared helpers for the dataset tests: IDX writers, synthetic MNIST files, a local HTTP server."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def mnist_root() -> Path | None:
    """$XPNET_DATA_DIR when its mnist/ folder holds the four MNIST files, else None."""
    root = os.environ.get("XPNET_DATA_DIR")
    if root and all((Path(root) / "mnist" / name).is_file() for name in MNIST_FILES):
        return Path(root)
    return None


_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as uncompressed IDX bytes."""
    array = np.asarray(array)
    code = _TYPE_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def synthetic_mnist(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Small random arrays shaped like the four MNIST files."""
    rng = np.random.default_rng(seed)
    return {
        MNIST_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        MNIST_FILES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        MNIST_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        MNIST_FILES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_gz_idx(directory: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Write each array as a gzip IDX file; return SHA-256 of each decompressed payload."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, array in arrays.items():
        payload = idx_bytes(array)
        (directory / name).write_bytes(gzip.compress(payload, mtime=0))
        digests[name] = hashlib.sha256(payload).hexdigest()
    return digests


def copy_files(src: Path, dst: Path, names: tuple[str, ...] = MNIST_FILES) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / name, dst / name)


class MirrorServer:
    """A local HTTP server whose first path segment selects a misbehaviour.

    ``/<mode>/<file>`` serves ``<root>/<mode>/<file>`` (or ``<root>/<file>`` if that does
    not exist) according to ``mode``:

    ``ok``        the file, normally;
    ``missing``   404 Not Found;
    ``truncated`` a Content-Length larger than the body, then the connection is closed;
    ``stall``     the headers and half the body, then silence until the server stops;
    ``hang``      nothing at all (not even headers) until the server stops;
    any other     served like ``ok`` from ``<root>/<mode>/`` (e.g. a directory of bad copies).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stop = threading.Event()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                _, mode, name = self.path.split("/", 2)
                path = server.root / mode / name
                if not path.is_file():
                    path = server.root / name
                if mode == "missing" or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                if mode == "hang":
                    server.stop.wait(10)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                extra = 1000 if mode == "truncated" else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                with contextlib.suppress(OSError):
                    if mode == "stall":
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        server.stop.wait(10)
                        return
                    self.wfile.write(body)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, mode: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def mirror_server(root: Path) -> Iterator[MirrorServer]:
    """Run a :class:`MirrorServer` on 127.0.0.1 for the duration of the block."""
    server = MirrorServer(root)
    server.thread.start()
    try:
        yield server
    finally:
        server.close()


def leftover_files(directory: Path) -> list[str]:
    """Names of the entries in ``directory`` (hidden temporaries included), sorted."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir())
