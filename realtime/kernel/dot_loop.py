"""The LLVM loop nest shared by the dot-product matrix-vector routines (bf16dot, and int8dot's
AVX-512 VNNI, AVX-VNNI and AVX2 routines).

All multiply a packed weight matrix (input groups ``k`` x output blocks of 16
lanes, 64 bytes) by an input vector whose ``k``-th group (a bf16 pair, or four
activation codes) is broadcast to every lane. Output blocks run in groups (8/4/2/1
for 512-bit vectors; fewer for 256-bit ones, which have 16 registers and more
accumulators per block) so several accumulator chains are in flight per input
group; each chain lives in a stack slot that LLVM promotes to a register. Only the
instruction, how a block's 64 bytes are loaded, the accumulators' start values and
what happens to them at the end differ between the routines.

Thread: generator (emitted into the kernel, which holds no GIL).
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir
from numba import types
from numba.core import cgutils

#: float32 / int32 lanes of one 512-bit vector; output widths must be multiples of this
LANES = 16
#: output blocks accumulated together (independent dependency chains), largest first
GROUPS = (8, 4, 2, 1)

I32V = ir.VectorType(ir.IntType(32), LANES)
I64 = ir.IntType(64)


def data_ptr(context, builder, arrty, arr, elem):
    """Pointer to the first element of Numba array ``arr`` (of type ``arrty``), as ``elem*``."""
    return builder.bitcast(context.make_array(arrty)(context, builder, arr).data, ir.PointerType(elem))


def as_i64(context, builder, value, typ):
    """A Numba integer value as i64."""
    return context.cast(builder, value, typ, types.int64)


def splat(builder, value, vtype: ir.VectorType):
    """The scalar ``value`` in every lane of a ``vtype`` vector."""
    v = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vtype, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), vtype.count), [0] * vtype.count))


def broadcast_i32(builder, base, k):
    """The 32-bit element ``base[k]`` (an i32 pointer) in all 16 lanes."""
    return splat(builder, builder.load(builder.gep(base, [k])), I32V)


def load_block(builder, ptr):
    """The default block load: the 64 bytes at i32 pointer ``ptr`` as one 16 x i32 vector."""
    return builder.load(builder.bitcast(ptr, ir.PointerType(I32V)), align=4)


def emit_blocked_dot(builder, n_groups_in, n_ob, wbase, woff,
                     init: Callable, step: Callable, finish: Callable, load_x: Callable,
                     groups: tuple[int, ...] = GROUPS, load_w: Callable = load_block) -> None:
    """Emit ``for each output block b < n_ob: accs = init(b); for k < n_groups_in: accs = step(accs, W[k, b], x_k);
    finish(b, accs)``, where ``accs`` is a list of accumulator values (one chain each).

    ``wbase`` is an i32 pointer to the packed weights, block (k, b) at element ``woff + (k * n_ob + b) * 16``;
    ``load_w(ptr)`` loads a block from its i32 pointer (any value ``step`` understands; default: one
    16 x i32 vector); ``load_x(k)`` returns the broadcast input group k (computed once per k for all blocks
    of a group); ``n_groups_in``, ``n_ob``, ``woff`` are i64 values; ``b`` is passed to init/finish as an i64
    value; ``groups``: the block counts run together, largest first (ending in 1). Each block is loaded once
    per k, whatever ``step`` does with it. The weights should start on a 64-byte boundary
    (realtime.kernel.aligned): then no load straddles two cache lines.
    """
    lanes = ir.Constant(I64, LANES)
    row = builder.mul(n_ob, lanes)  # i32 elements per input group
    first = cgutils.alloca_once_value(builder, ir.Constant(I64, 0))
    for g in groups:
        ob0 = builder.load(first)
        n_outer = builder.udiv(builder.sub(n_ob, ob0), ir.Constant(I64, g))
        with cgutils.for_range(builder, n_outer) as outer:
            base = builder.add(ob0, builder.mul(outer.index, ir.Constant(I64, g)))
            blocks = [builder.add(base, ir.Constant(I64, i)) for i in range(g)]
            slots = [[cgutils.alloca_once_value(builder, v) for v in init(b)] for b in blocks]
            with cgutils.for_range(builder, n_groups_in) as inner:
                k = inner.index
                x = load_x(k)
                rowbase = builder.add(woff, builder.mul(k, row))
                for b, bslots in zip(blocks, slots):
                    off = builder.add(rowbase, builder.mul(b, lanes))
                    wv = load_w(builder, builder.gep(wbase, [off]))
                    for slot, acc in zip(bslots, step([builder.load(sl) for sl in bslots], wv, x)):
                        builder.store(acc, slot)
            for b, bslots in zip(blocks, slots):
                finish(b, [builder.load(sl) for sl in bslots])
        builder.store(builder.add(ob0, builder.mul(n_outer, ir.Constant(I64, g))), first)
