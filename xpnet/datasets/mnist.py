"""MNIST and Fashion-MNIST loaders with a verified on-disk cache.

Both data sets are read from their original gzip-compressed IDX files, kept in
``<data_dir>/mnist/`` and ``<data_dir>/fashion-mnist/``. Every file is checked against the
SHA-256 digest of its *decompressed* payload, which accepts every faithful mirror whatever gzip
settings it used, and rejects anything else.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xpnet.datasets.download import fetch_file
from xpnet.datasets.idx import decompress_if_gzip, parse_idx
from xpnet.errors import ChecksumError, DataError, DownloadError

__all__ = [
    "FASHION_MNIST_MIRRORS",
    "FASHION_MNIST_SHA256",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "load_fashion_mnist",
    "load_mnist",
    "resolve_data_dir",
]

#: The four files of MNIST-format data sets: (train images, train labels, test images, labels).
MNIST_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

# SHA-256 of the decompressed IDX payloads; the mirrors' gzip containers differ byte-wise.
# Mutable dicts looked up at call time, so tests can substitute digests of synthetic files.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    "train-labels-idx1-ubyte.gz": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}

FASHION_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "train-labels-idx1-ubyte.gz": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}

_N_CLASSES = 10
_IMAGE_SHAPE = (28, 28)

Split = tuple[np.ndarray, np.ndarray]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the root directory of xpnet's data sets.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Explicit directory; wins over everything else.

    Returns
    -------
    pathlib.Path
        ``data_dir`` if given, else ``$XPNET_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/xpnet``
        if ``XDG_CACHE_HOME`` is set to an absolute path, else ``~/.cache/xpnet``. The
        directory is not created here.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("XPNET_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "xpnet"
    return Path.home() / ".cache" / "xpnet"


def _read_verified(path: Path, expected_sha256: str) -> np.ndarray:
    """Decompress, checksum and parse one IDX file; raise DataError on any problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    payload = decompress_if_gzip(raw, source=str(path))
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected_sha256:
        raise ChecksumError(
            f"{path}: SHA-256 of the decompressed payload is {digest}, expected {expected_sha256}"
        )
    return parse_idx(payload, source=str(path))


def _location_hint(directory: Path, subdir: str, what: str | None = None) -> str:
    what = what or f"the original files ({', '.join(MNIST_FILES)})"
    return (
        f"Put {what} in {directory} yourself, or point the --data-dir option "
        f"(or the XPNET_DATA_DIR environment variable) at a directory whose {subdir}/ "
        "subdirectory holds them."
    )


def _check_split(images: np.ndarray, labels: np.ndarray, image_file: str, label_file: str) -> Split:
    """Validate one (images, labels) pair and return it as (X uint8 (n, 784), y int64)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise DataError(
            f"{image_file}: expected uint8 images of shape (n, 28, 28), "
            f"found {images.dtype} array of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{label_file}: expected a 1-D uint8 label array, "
            f"found {labels.dtype} array of shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{image_file} holds {images.shape[0]} images but {label_file} holds "
            f"{labels.shape[0]} labels; expected equal counts"
        )
    if labels.size and int(labels.max()) >= _N_CLASSES:
        raise DataError(
            f"{label_file}: expected labels in 0..{_N_CLASSES - 1}, found {int(labels.max())}"
        )
    X = np.ascontiguousarray(images.reshape(images.shape[0], -1))
    return X, labels.astype(np.int64)


def _load_idx_dataset(
    title: str,
    subdir: str,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    mirrors: Sequence[str],
    digests: Mapping[str, str],
    timeout: float,
) -> tuple[Split, Split]:
    if isinstance(mirrors, str):
        # A lone URL would otherwise be iterated character by character.
        mirrors = [mirrors]
    directory = resolve_data_dir(data_dir) / subdir
    missing = [name for name in MNIST_FILES if not (directory / name).is_file()]
    if missing and not download:
        raise DataError(
            f"{title} files not found in {directory}: {', '.join(missing)} "
            "(downloading is disabled). " + _location_hint(directory, subdir, "them")
        )

    arrays: dict[str, np.ndarray] = {}
    for name in MNIST_FILES:
        path = directory / name
        if name not in missing:
            try:
                arrays[name] = _read_verified(path, digests[name])
                continue
            except DataError as exc:
                if not download:
                    # Same class as the cause, so a ChecksumError stays catchable as such.
                    raise type(exc)(
                        f"cached {title} file {path} is corrupt ({exc}); delete it and "
                        "download again, or replace it with a good copy"
                    ) from exc
                warnings.warn(
                    f"cached {title} file {path} is corrupt and will be downloaded again: {exc}",
                    UserWarning,
                    stacklevel=3,
                )
                try:
                    path.unlink()
                except OSError as unlink_exc:
                    raise DataError(
                        f"cannot remove corrupt cached file {path}: {unlink_exc}"
                    ) from exc
        try:
            arrays[name] = fetch_file(
                name,
                directory,
                mirrors,
                functools.partial(_read_verified, expected_sha256=digests[name]),
                timeout=timeout,
            )
        except DownloadError as exc:
            raise DownloadError(f"{title}: {exc}\n" + _location_hint(directory, subdir)) from exc

    train = _check_split(arrays[MNIST_FILES[0]], arrays[MNIST_FILES[1]], *MNIST_FILES[:2])
    test = _check_split(arrays[MNIST_FILES[2]], arrays[MNIST_FILES[3]], *MNIST_FILES[2:])
    return train, test


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> tuple[Split, Split]:
    """Load MNIST, downloading and verifying the files if needed.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Data root (see :func:`resolve_data_dir`); files live in ``<data_dir>/mnist/``.
    download : bool, optional
        Fetch missing or corrupt files from the mirrors. When False, only local files are used.
    mirrors : sequence of str, optional
        Base URLs to try in order; default :data:`MNIST_MIRRORS`.
    timeout : float, optional
        Seconds allowed for connecting and for each read from a mirror.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X`` are C-contiguous uint8 arrays of shape ``(n, 784)`` (60,000 and 10,000 rows),
        ``y`` are int64 arrays of shape ``(n,)`` with values in 0..9.

    Raises
    ------
    DataError
        If files are missing and ``download`` is False, or a file is corrupt or inconsistent.
    DownloadError
        If a file could not be fetched from any mirror.
    """
    return _load_idx_dataset(
        "MNIST",
        "mnist",
        data_dir,
        download,
        MNIST_MIRRORS if mirrors is None else mirrors,
        MNIST_SHA256,
        timeout,
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> tuple[Split, Split]:
    """Load Fashion-MNIST, downloading and verifying the files if needed.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Data root (see :func:`resolve_data_dir`); files live in ``<data_dir>/fashion-mnist/``.
    download : bool, optional
        Fetch missing or corrupt files from the mirrors. When False, only local files are used.
    mirrors : sequence of str, optional
        Base URLs to try in order; default :data:`FASHION_MNIST_MIRRORS`.
    timeout : float, optional
        Seconds allowed for connecting and for each read from a mirror.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X`` are C-contiguous uint8 arrays of shape ``(n, 784)`` (60,000 and 10,000 rows),
        ``y`` are int64 arrays of shape ``(n,)`` with values in 0..9.

    Raises
    ------
    DataError
        If files are missing and ``download`` is False, or a file is corrupt or inconsistent.
    DownloadError
        If a file could not be fetched from any mirror.
    """
    return _load_idx_dataset(
        "Fashion-MNIST",
        "fashion-mnist",
        data_dir,
        download,
        FASHION_MNIST_MIRRORS if mirrors is None else mirrors,
        FASHION_MNIST_SHA256,
        timeout,
    )
