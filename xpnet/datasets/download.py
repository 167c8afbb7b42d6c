"""Download a file from a list of mirrors, verifying it before it enters the cache.

The file is streamed into a temporary file in the destination directory, checked by a
caller-supplied ``verify`` function, and only then moved into place with :func:`os.replace`
(atomic on one file system). Whatever fails, the temporary file is deleted, so the cache never
holds a partial or unverified file, and a concurrent reader sees either nothing or the whole file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from xpnet.errors import DataError, DownloadError
from xpnet.validation import check_positive

__all__ = ["RETRIES", "RETRY_BACKOFF", "USER_AGENT", "fetch_file", "mirror_url"]

T = TypeVar("T")

#: Extra attempts per mirror after the first one fails (transient network errors are common).
RETRIES = 1
#: Seconds to wait before retry ``k`` is ``RETRY_BACKOFF * k``.
RETRY_BACKOFF = 1.0
#: Some mirrors refuse urllib's default agent string.
USER_AGENT = "xpnet-datasets (Python urllib)"

_CHUNK = 1 << 20
_TMP_SUFFIX = ".tmp"


def mirror_url(mirror: str, filename: str) -> str:
    """Join a mirror's base URL and a file name.

    Parameters
    ----------
    mirror : str
        Base URL, with or without a trailing slash.
    filename : str
        File name to append.

    Returns
    -------
    str
        The file's URL.
    """
    return mirror.rstrip("/") + "/" + filename


def _describe(exc: BaseException, timeout: float) -> str:
    """One-line reason for a failed attempt, for the final error message."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, TimeoutError):
            return f"timed out after {timeout:g} s"
        return f"connection failed ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s (no data received)"
    if isinstance(exc, (DataError, http.client.HTTPException)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _is_permanent(exc: BaseException) -> bool:
    """Whether retrying the same mirror is pointless (e.g. 404 Not Found)."""
    return (
        isinstance(exc, urllib.error.HTTPError)
        and 400 <= exc.code < 500
        and exc.code
        not in (
            408,
            429,
        )
    )


def _stream_to(url: str, fh: IO[bytes], timeout: float) -> None:
    """Copy the body at ``url`` into ``fh``; fail on a short body."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    # The timeout applies to every socket operation, so a server that stops sending
    # mid-body raises TimeoutError instead of hanging.
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        received = 0
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            fh.write(chunk)
            received += len(chunk)
        # http.client's read(amt) reports a connection closed early as a plain EOF,
        # so a truncated body has to be caught here.
        if expected is not None and received != expected:
            raise DownloadError(
                f"truncated body: expected {expected} bytes (Content-Length), received {received}"
            )


def fetch_file(
    filename: str,
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str],
    verify: Callable[[Path], T],
    *,
    timeout: float = 30.0,
    retries: int | None = None,
    backoff: float | None = None,
) -> T:
    """Download ``filename`` from the first mirror that serves a valid copy.

    Parameters
    ----------
    filename : str
        Name of the file, both on the mirrors and in ``dest_dir``.
    dest_dir : str or os.PathLike
        Directory the verified file is moved into (created if missing).
    mirrors : sequence of str
        Base URLs, tried in order.
    verify : callable
        Called with the path of the downloaded temporary file; raises :class:`DataError`
        (for example :class:`ChecksumError`) if the content is not acceptable. Its return
        value is returned, so the caller need not read the file twice.
    timeout : float, optional
        Seconds allowed for connecting and for each read from the socket.
    retries : int, optional
        Extra attempts per mirror; default :data:`RETRIES`. Client errors such as
        404 are not retried.
    backoff : float, optional
        Seconds before retry ``k`` is ``backoff * k``; default :data:`RETRY_BACKOFF`.

    Returns
    -------
    object
        What ``verify`` returned for the accepted file.

    Raises
    ------
    DownloadError
        If no mirror delivered a file that passed ``verify``; the message lists every
        mirror's failure. Nothing is left in ``dest_dir`` in that case.
    """
    timeout = check_positive("timeout", timeout)
    if not mirrors:
        raise DownloadError(f"cannot download {filename}: no mirrors given")
    retries = RETRIES if retries is None else retries
    backoff = RETRY_BACKOFF if backoff is None else backoff
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create directory {dest_dir}: {exc}") from exc
    target = dest_dir / filename

    failures: list[str] = []
    for mirror in mirrors:
        url = mirror_url(mirror, filename)
        reasons: list[str] = []
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * attempt)
            try:
                tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed before verify
                    delete=False, dir=dest_dir, prefix=f".{filename}.", suffix=_TMP_SUFFIX
                )
            except OSError as exc:
                raise DownloadError(f"cannot write to {dest_dir}: {exc}") from exc
            tmp_path = Path(tmp.name)
            try:
                with tmp:
                    _stream_to(url, tmp, timeout)
                result = verify(tmp_path)
                os.replace(tmp_path, target)
                return result
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # DataError (failed verification) is a ValueError; URLError and
                # TimeoutError are OSErrors.
                reasons.append(_describe(exc, timeout))
                if _is_permanent(exc):
                    break
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp_path.unlink()
        shown = reasons if len(set(reasons)) > 1 else reasons[:1]
        tries = f" ({len(reasons)} attempts)" if len(reasons) > 1 else ""
        failures.append(f"  - {url}: {'; '.join(shown)}{tries}")
    raise DownloadError(f"could not download {filename} from any mirror:\n" + "\n".join(failures))
