"""Crash-safe file writes.

A file written with :func:`atomic_write` is, at every instant, either the complete previous
version or the complete new one: the bytes go to a temporary file in the same directory
(``os.replace`` is only atomic within one file system), are flushed and fsynced, the temporary
file is renamed over the target, and the directory is fsynced so the rename itself survives a
power cut.

Stale temporary files: a process killed between creating its temporary file and the rename
leaves that file behind (nothing can delete it at that moment). Temporary files are named
``.<target>.<pid>.<random>.tmp``; every later write to the same target first deletes the ones
whose process is no longer alive on this host, so at most one stale file per target outlives a
crash, and only until the next successful write. (On Windows, where there is no harmless probe
for a process id, stale files are left for the user to delete.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "fsync_directory", "stale_temp_files"]

_TMP_SUFFIX = ".tmp"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        # os.kill(pid, 0) would send CTRL_C_EVENT there; without a safe probe, keep the file.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        # Exists but belongs to someone else (or the platform cannot tell): keep the file.
        return True
    return True


def stale_temp_files(target: str | os.PathLike[str]) -> list[Path]:
    """Temporary files left next to ``target`` by writers that are no longer running."""
    target = Path(target)
    prefix = _temp_prefix(target)
    stale = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        middle = name[len(prefix) : -len(_TMP_SUFFIX)].split(".")
        if len(middle) != 2 or not middle[0].isdigit():
            continue
        if not _pid_alive(int(middle[0])):
            stale.append(entry)
    return stale


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a directory; its renames are journaled by NTFS.
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file that then replaces ``path``.

    Parameters
    ----------
    path : str or PathLike
        The file to create or replace. Its directory must exist.
    write : callable
        Receives a binary file object open for writing.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"xpnet: directory {str(directory)!r} does not exist")
    for stale in stale_temp_files(target):
        with contextlib.suppress(OSError):
            stale.unlink()
    tmp = directory / f"{_temp_prefix(target)}{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
    # O_EXCL: never write through a file (or symlink) someone else put there; 0o666 lets the
    # umask decide the final permissions, as for any ordinary file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        # Includes KeyboardInterrupt: the previous file is untouched, the partial one goes.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(directory)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """:func:`atomic_write` of a bytes object."""
    return atomic_write(path, lambda f: f.write(data))
