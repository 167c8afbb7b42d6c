"""Subnormal numbers flushed to zero inside the compiled optimizer updates (x86-64).

Arithmetic that reads or writes a subnormal float takes a microcode assist on x86, about a
hundred cycles instead of one. Training with an L2 term drives the weights of inputs that
are always zero (MNIST's border pixels) and of dead units geometrically toward zero, so
after a few epochs their gradients' squares and products underflow at every step: measured
on the scikit-learn estimator's Adam (MNIST, 256-128, batch 200), the update went from
0.22 ms a step in the first epochs to 0.78 ms by the seventh, with 15,000 subnormal moments
(``benchmarks/NOTES.md`` §15). A GPU flushes them in hardware; here the update loops set
x86's flush-to-zero (FTZ: a subnormal result is written as zero) and denormals-are-zero
(DAZ: a subnormal input is read as zero) bits of MXCSR for their own duration, and restore
the caller's bits after, so NumPy, OpenBLAS and every other loop keep IEEE subnormals.

Only values below the smallest normal float change (to zero), which cannot move a weight
by more than that: far below float32 rounding of any weight that matters. Away from x86-64
both calls compile to nothing, and the updates keep the NumPy kernels' flush of the moments
every few steps (which runs here too).

MXCSR is per thread: a parallel loop sets it in each of its workers' chunks.
"""

from __future__ import annotations

import platform
from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["FLUSHES_SUBNORMALS", "subnormals_flushed_begin", "subnormals_flushed_end"]

#: Whether the compiled updates run with FTZ and DAZ set (x86-64 only).
FLUSHES_SUBNORMALS = platform.machine().lower() in ("x86_64", "amd64")
# MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
_FTZ_DAZ = 0x8040
_I32 = ir.IntType(32)


def _mxcsr(builder: Any, op: str, slot: Any) -> None:
    # stmxcsr/ldmxcsr take the address of a 32-bit slot.
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.x86.sse.{op}")
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def subnormals_flushed_begin(typingctx: Any) -> Any:
    """Set FTZ and DAZ for this thread; return the control word to restore (0 off x86-64)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if not FLUSHES_SUBNORMALS:
            return ir.Constant(_I32, 0)
        slot = cgutils.alloca_once(builder, _I32)
        _mxcsr(builder, "stmxcsr", slot)
        previous = builder.load(slot)
        builder.store(builder.or_(previous, ir.Constant(_I32, _FTZ_DAZ)), slot)
        _mxcsr(builder, "ldmxcsr", slot)
        return previous

    return types.uint32(), codegen


@intrinsic
def subnormals_flushed_end(typingctx: Any, previous: Any) -> Any:
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
