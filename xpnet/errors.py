"""Exception types raised by xpnet.

Every error a user can cause derives from :class:`XpnetError`, and also from the builtin
type a caller would naturally catch (``ValueError`` for bad values, ``RuntimeError`` for an
environment that cannot do what was asked), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class XpnetError(Exception):
    """Base class of every error raised on purpose by xpnet."""


class BackendUnavailableError(XpnetError, RuntimeError):
    """The requested array backend cannot run here (package or device missing)."""


class DataError(XpnetError, ValueError):
    """A data set or data file is missing, malformed or inconsistent."""


class DownloadError(DataError):
    """A data set file could not be fetched from any mirror."""


class ChecksumError(DataError):
    """A file's content does not match its published SHA-256 digest."""


class CheckpointError(XpnetError, ValueError):
    """A saved model file is unreadable, inconsistent or was tampered with."""


class DivergenceError(XpnetError, FloatingPointError):
    """Training produced a non-finite loss."""
