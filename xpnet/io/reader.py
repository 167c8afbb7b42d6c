"""Reading and verifying checkpoint files, without rebuilding a model.

:func:`read_checkpoint` checks everything a file holds (format, metadata schema, both digests,
array names, shapes and dtypes against the recorded architecture, finiteness) and returns plain
metadata and host arrays; building a :class:`~xpnet.Sequential` from them is the loader's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .codec import CodecError, arrays_sha256, decode, metadata_sha256
from .schema import NAME_RE, check_arrays, check_metadata, fail

__all__ = ["STATE_FILES", "find_state", "read_checkpoint", "resolve_path"]

#: The file a training-state directory holds, by format.
STATE_FILES = {"safetensors": "state.safetensors", "npz": "state.npz"}


def find_state(directory: Path) -> Path | None:
    """The newest state file in a checkpoint directory, or None."""
    found = [directory / n for n in STATE_FILES.values() if (directory / n).is_file()]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the state file of the checkpoint directory ``path``.

    Raises
    ------
    FileNotFoundError
        If there is no such file, or the directory holds no state file.
    """
    p = Path(path)
    if p.is_dir():
        found = find_state(p)
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
    p = resolve_path(path)
    try:
        meta, arrays = decode(p.read_bytes())
    except CodecError as exc:
        raise fail(p, str(exc)) from exc
    check_metadata(meta, p)
    if meta["metadata_sha256"] != metadata_sha256(meta):
        raise fail(p, "the metadata's SHA-256 does not match (the file was modified)")
    for name in arrays:
        if not NAME_RE.fullmatch(name):
            raise fail(p, f"unexpected array name {name!r}")
    if meta["weights_sha256"] != arrays_sha256(arrays):
        raise fail(p, "the arrays' SHA-256 does not match (the file was modified or damaged)")
    check_arrays(meta, arrays, p)
    return meta, arrays
