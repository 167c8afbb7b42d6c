"""Subnormal numbers flushed to zero inside the compiled optimizer updates (x86-64).

Arithmetic that reads or writes a subnormal float takes a microcode assist on x86, about a
hundred cycles instead of one. Training with an L2 term drives the weights of inputs that
are always zero (MNIST's border pixels) and of dead units geometrically toward zero, so
after a few epochs their gradients' squares and products underflow at every step: measured
on the scikit-learn estimator's Adam (MNIST, 256-128, batch 200), the update went from
0.22 ms a step in the first epochs to 0.78 ms by the seventh, with 15,000 subnormal moments
(``benchmarks/NOTES.md`` §15). So the update loops set x86's flush-to-zero (FTZ: a subnormal
result is written as zero) and denormals-are-zero (DAZ: a subnormal input is read as zero)
bits of MXCSR for their own duration, and give the caller's two bits back after, so NumPy,
OpenBLAS and every other loop keep IEEE subnormals. (xpnet's CuPy kernels keep subnormals:
a GPU handles them at full speed.)

What changes: inside these loops a subnormal input counts as zero and a subnormal result is
written as zero, each an absolute change below the smallest normal float ``tiny``. Adam and
RMSProp then divide by ``sqrt(second moment) + eps``: a subnormal first moment read as zero
moves a weight by at most about ``step_size * tiny / eps`` (Adam's ``step_size`` is
``lr / (1 - beta1**t)``, up to 10 lr; 1e-33 for float32 at lr 1e-3 and eps 1e-8 once ``t``
is large: a weight that small reaches no output), and a square dropped from a second moment
``s`` moves ``sqrt(s)`` by at most ``sqrt(tiny)``. Where that could show beside ``eps``,
those loops run with IEEE arithmetic instead (:func:`flush_is_invisible`): for RMSProp an
``eps`` below ``sqrt(tiny) * 2**25`` (about 4e-12 in float32), for xpnet's Adam, whose
``eps`` is added to the bias-corrected root, ``eps * sqrt(1 - beta2**t)`` below it (so a
small ``eps`` may switch to the flush as ``t`` grows), for scikit-learn's Adam its own
``eps``. Centered RMSProp never flushes: its root is of ``s - a*a``, which a flush lowering
``s`` can turn negative (a NaN where the reference has 0). In every other case the flushed
values are the only change.
Away from x86-64 the calls do nothing, and the updates keep the NumPy kernels' flush of the
moments every few steps (which runs here too).

The element-wise work of a loop runs with the bits set; numba may hoist loop-invariant
scalar work (``1 / root_bc2``) above the setting, which is harmless for normal scalars. A
loop body must never raise between the two calls (the restore would be skipped): the loops
have no raising path (``error_model="numpy"``, shapes checked before the call). MXCSR is per
thread: a parallel loop sets it in each of its workers' chunks. numba's cache is keyed on
the calling loop's file, so an edit here needs an edit (or a cache clear) there to take
effect. Called from Python (``NUMBA_DISABLE_JIT=1``) the two functions do nothing.
"""

from __future__ import annotations

import math
import platform
from typing import Any

import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = [
    "FLUSHES_SUBNORMALS",
    "flush_is_invisible",
    "subnormals_flushed_begin",
    "subnormals_flushed_end",
]


def _compiles_for_x86_64() -> bool:
    # The target numba compiles for, which is what the MXCSR intrinsics need.
    try:
        arch = binding.get_process_triple().split("-")[0]
    except Exception:  # pragma: no cover - an llvmlite without the call
        arch = platform.machine()
    return arch.lower() in ("x86_64", "amd64")


#: Whether the compiled updates run with FTZ and DAZ set (x86-64 only).
FLUSHES_SUBNORMALS = _compiles_for_x86_64()
# MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
_FTZ_DAZ = 0x8040
_I32 = ir.IntType(32)


def _mxcsr(builder: Any, op: str, slot: Any) -> None:
    # stmxcsr/ldmxcsr take the address of a 32-bit slot.
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.x86.sse.{op}")
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _begin(typingctx: Any, flush: Any) -> Any:
    """Set FTZ and DAZ for this thread if ``flush``; return the control word to restore (0
    off x86-64)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if not FLUSHES_SUBNORMALS:
            return ir.Constant(_I32, 0)
        slot = cgutils.alloca_once(builder, _I32)
        _mxcsr(builder, "stmxcsr", slot)
        previous = builder.load(slot)
        flushed = builder.or_(previous, ir.Constant(_I32, _FTZ_DAZ))
        builder.store(builder.select(args[0], flushed, previous), slot)
        _mxcsr(builder, "ldmxcsr", slot)
        return previous

    return types.uint32(types.boolean), codegen


@intrinsic
def _end(typingctx: Any, previous: Any) -> Any:
    """Give FTZ and DAZ back the values :func:`subnormals_flushed_begin` found (the
    exception flags the loop raised stay raised, as after any other loop)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if FLUSHES_SUBNORMALS:
            slot = cgutils.alloca_once(builder, _I32)
            _mxcsr(builder, "stmxcsr", slot)
            mode = ir.Constant(_I32, _FTZ_DAZ)
            others = builder.and_(builder.load(slot), ir.Constant(_I32, ~_FTZ_DAZ & 0xFFFFFFFF))
            builder.store(builder.or_(others, builder.and_(args[0], mode)), slot)
            _mxcsr(builder, "ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen


def subnormals_flushed_begin(flush: bool) -> int:
    """Set FTZ and DAZ for this thread if ``flush`` (a loop that must keep IEEE arithmetic
    passes False); return the control word to give back to :func:`subnormals_flushed_end`
    (in compiled code; from Python, nothing and 0)."""
    return 0


def subnormals_flushed_end(previous: int) -> None:
    """Give FTZ and DAZ back the values :func:`subnormals_flushed_begin` found (in compiled
    code; from Python, nothing)."""


# numba compares the typing and implementation signatures, annotations included.
@overload(subnormals_flushed_begin)
def _begin_compiled(flush):  # type: ignore[no-untyped-def]
    return lambda flush: _begin(flush)


@overload(subnormals_flushed_end)
def _end_compiled(previous):  # type: ignore[no-untyped-def]
    return lambda previous: _end(previous)


def flush_is_invisible(eps: float, dtype: Any) -> bool:
    """Whether a loop dividing by ``sqrt(s) + eps``, with ``s`` a running mean of squares,
    may flush subnormals: a value below ``tiny`` dropped from ``s`` moves its root by at most
    ``sqrt(tiny)``, which must stay below a quarter of ``eps``'s last bit (always False off
    x86-64, where nothing is flushed)."""
    info = np.finfo(dtype)
    return FLUSHES_SUBNORMALS and float(eps) * 2.0 ** -(info.nmant + 2) >= math.sqrt(info.tiny)
