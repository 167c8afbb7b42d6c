"""Counter-based random bits, computed in any array namespace on the arrays' own device.

A counter-based generator has no state to carry from call to call: the random word of one
position is a hash of its coordinates and a key. Dropout uses it so that a mask costs no host
draw and no host-to-device copy, is the same bits on NumPy, CuPy and array-api-strict, and a
data-parallel rank can compute exactly the rows it holds.

The hash is written once, here, with uint32 arithmetic that every namespace wraps the same way
(multiplication modulo 2**32, logical shifts, XOR). :func:`hash_bits_reference` is the same
computation for one position in pure Python integers: a fused or compiled kernel must
reproduce it bit for bit.

The construction, for a batch position (row ``r``, column ``c``) under ``(seed, step)``:

1. two 32-bit key words ``k_row``, ``k_col`` are absorbed on the host from the seed's two
   halves and the step, each from its own starting constant (:func:`key_words`);
2. ``row_hash = mix32(r ^ k_row)`` per global row and ``col_hash = mix32(c ^ k_col)`` per
   column (cheap: one value per row and per column);
3. ``bits = mix32(row_hash ^ col_hash)`` per element,

where ``mix32`` is the ``lowbias32`` integer finaliser (xorshift-multiply, from Chris
Wellons' hash prospector: two multiplications, low avalanche bias). The row is the *global*
row ``row_offset + r``, so the rows of a batch do not depend on how the batch is split.
A unit is kept when ``bits >= keep_threshold(p)``, an integer comparison with no float
rounding, which keeps it with probability ``1 - round(p * 2**32) / 2**32``.

>>> import numpy as np
>>> import array_api_compat.numpy as xp
>>> from xpnet.random import hash_bits, hash_bits_reference, keep_threshold
>>> bits = hash_bits(xp, (4, 3), seed=7, step=2, row_offset=10)
>>> int(bits[1, 2]) == hash_bits_reference(7, 2, row=11, col=2)
True
>>> keep_threshold(0.25) == 2**30
True
"""

from __future__ import annotations

import math
import operator
from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import device as _device_of

__all__ = [
    "hash_bits",
    "hash_bits_reference",
    "keep_mask",
    "keep_threshold",
    "key_words",
    "mix32",
    "mix32_int",
]

MASK32 = 0xFFFFFFFF
#: Multipliers of the lowbias32 finaliser.
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
#: Starting values of the two key words (the first digits of pi and of e, in hex), so that
#: the row and column keys of one (seed, step) are unrelated.
ROW_IV, COL_IV = 0x243F6A88, 0xB7E15162


def _check_word(name: str, value: Any, limit: int) -> int:
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        value = operator.index(value)  # NumPy integers are fine; floats are not
    except TypeError:
        raise TypeError(f"xpnet: {name} must be an integer, got {type(value).__name__}") from None
    if not 0 <= value < limit:
        raise ValueError(f"xpnet: {name} must be in [0, {limit}), got {value}")
    return int(value)


def mix32_int(x: int) -> int:
    """``mix32`` of one unsigned 32-bit Python integer (the host half of the hash)."""
    m1, m2 = MIX_MULTIPLIERS
    x &= MASK32
    x ^= x >> 16
    x = (x * m1) & MASK32
    x ^= x >> 15
    x = (x * m2) & MASK32
    return x ^ (x >> 16)


def mix32(x: Any) -> Any:
    """``mix32`` element-wise of a uint32 array, in its own namespace and on its own device.

    Returns a new array; ``x`` is not modified. Multiplications wrap modulo 2**32 and shifts
    are logical, identically on NumPy, CuPy and array-api-strict.
    """
    m1, m2 = MIX_MULTIPLIERS
    # In-place updates of a private copy: one temporary per shift instead of one per step.
    x = x ^ (x >> 16)
    x *= m1
    x ^= x >> 15
    x *= m2
    x ^= x >> 16
    return x


def key_words(seed: int, step: int) -> tuple[int, int]:
    """The two 32-bit key words ``(k_row, k_col)`` of ``(seed, step)``, on the host.

    Parameters
    ----------
    seed : int
        In ``[0, 2**64)``; the training loop draws one per epoch and layer.
    step : int
        In ``[0, 2**32)``: the batch's index in the epoch (or a call counter).
    """
    seed = _check_word("seed", seed, 1 << 64)
    step = _check_word("step", step, 1 << 32)
    words = (seed & MASK32, seed >> 32, step)
    keys = []
    for h in (ROW_IV, COL_IV):
        for w in words:
            h = mix32_int(h ^ w)
        keys.append(h)
    return keys[0], keys[1]


def keep_threshold(p: float) -> int:
    """The integer a unit's hash must reach to be kept by dropout of rate ``p``.

    ``round(p * 2**32)``, at most ``2**32 - 1``: a uniform 32-bit word is at least this
    with probability ``1 - p`` to within ``2**-32``.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"xpnet: a dropout rate must be a number in [0, 1), got {p!r}")
    return min(math.floor(float(p) * 4294967296.0 + 0.5), MASK32)


def hash_bits_reference(seed: int, step: int, row: int, col: int) -> int:
    """The 32-bit hash of one position, in pure Python: what :func:`hash_bits` computes.

    ``row`` is the global row (``row_offset`` included). Slow; meant for checking kernels.
    """
    row = _check_word("row", row, 1 << 32)
    col = _check_word("col", col, 1 << 32)
    k_row, k_col = key_words(seed, step)
    return mix32_int(mix32_int(row ^ k_row) ^ mix32_int(col ^ k_col))


def _checked_block(shape: tuple[int, int], row_offset: int) -> tuple[int, int, int]:
    """``(rows, cols, row_offset)`` of a block, checked (shared with the compiled kernels)."""
    rows, cols = (int(n) for n in shape)
    row_offset = _check_word("row_offset", row_offset, 1 << 32)
    if rows < 0 or cols < 0 or row_offset + rows > 1 << 32 or cols > 1 << 32:
        raise ValueError(
            f"xpnet: counter-based random bits need 0 <= rows, cols and global rows below "
            f"2**32, got shape {shape} at row_offset {row_offset}"
        )
    return rows, cols, row_offset


def _mask_block(shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``(rows, cols)`` block a dropout mask of an array of ``shape`` is hashed over:
    rows along the first axis, the trailing axes flattened into columns (a 1-d array has one
    column, a 0-d one is one row of one column)."""
    shape = tuple(int(n) for n in shape)
    return (shape[0] if shape else 1), math.prod(shape[1:])


def hash_bits(
    xp: Any,
    shape: tuple[int, int],
    seed: int,
    step: int,
    row_offset: int = 0,
    device: Any = None,
) -> Any:
    """uint32 hashes of the positions of a ``(rows, cols)`` block, computed by ``xp``.

    Parameters
    ----------
    xp : namespace
        The array namespace to compute in (``namespace_of`` an input array).
    shape : (int, int)
        ``(rows, cols)`` of the block.
    seed, step : int
        The key (see :func:`key_words`).
    row_offset : int
        Global row of the block's first row; rows ``row_offset .. row_offset + rows - 1``.
    device : optional
        Device to create the arrays on (that of the input, so nothing moves).

    Returns
    -------
    array
        uint32 of shape ``(rows, cols)``; element ``[r, c]`` equals
        ``hash_bits_reference(seed, step, row_offset + r, c)``.
    """
    rows, cols, row_offset = _checked_block(shape, row_offset)
    k_row, k_col = key_words(seed, step)
    r = xp.arange(row_offset, row_offset + rows, dtype=xp.uint32, device=device)
    c = xp.arange(cols, dtype=xp.uint32, device=device)
    row_hash = xp.reshape(mix32(r ^ k_row), (rows, 1))
    col_hash = xp.reshape(mix32(c ^ k_col), (1, cols))
    return mix32(row_hash ^ col_hash)


def keep_mask(x: Any, p: float, seed: int, step: int, row_offset: int = 0, xp: Any = None) -> Any:
    """Boolean dropout keep-mask of ``x``'s shape, on ``x``'s device: ``True`` = keep.

    Row ``r`` of ``x`` is global row ``row_offset + r``; the trailing dimensions are
    flattened into columns (a 1-d ``x`` has one column). Only ``x``'s shape, namespace and
    device are used.
    """
    if xp is None:
        # array_api_compat's lookup, not xpnet.backend's: the kernels import this module, and
        # the backend imports the kernels.
        xp = array_api_compat.array_namespace(x)
    shape = tuple(int(n) for n in x.shape)
    rows, cols = _mask_block(shape)
    bits = hash_bits(xp, (rows, cols), seed, step, row_offset, device=_device_of(x))
    return xp.reshape(bits >= keep_threshold(p), shape)
