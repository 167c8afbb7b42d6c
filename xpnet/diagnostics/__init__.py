"""Diagnostics behind ``xpnet info`` and ``xpnet check``: what runs here, and does it agree.

>>> from xpnet.diagnostics import collect_info
>>> info = collect_info()
>>> [b["name"] for b in info["backends"]][:1]
['numpy']
"""

from __future__ import annotations

from .check import (
    CHECK_TF32_RTOL,
    BackendCheck,
    CheckReport,
    DtypeCheck,
    check_backends,
    format_check,
    run_check,
)
from .info import collect_info, format_info

__all__ = [
    "CHECK_TF32_RTOL",
    "BackendCheck",
    "CheckReport",
    "DtypeCheck",
    "check_backends",
    "collect_info",
    "format_check",
    "format_info",
    "run_check",
]
