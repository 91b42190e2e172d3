"""int8dot's VNNI routines: ``vpdpbusd`` on 512-bit (AVX-512 VNNI) or 256-bit (AVX-VNNI) vectors.

The activations' 16-bit codes come as two byte planes (realtime.kernel.int8dot.quantize);
one ``vpdpbusd`` multiplies unsigned activation bytes by signed weight bytes and adds
them in groups of four into int32 lanes, so each weight vector, loaded once, takes two
of them (high and low bytes): ``sum u q = 256 sum hi q + sum lo q``, exact (the format:
realtime.kernel.int8dot). The 256-bit routine splits each 64-byte block into two
vectors: four accumulators per block, and only 16 vector registers on a CPU without
AVX-512, so it runs fewer blocks together. Both give the same bits.

Thread: generator (inside the kernel, which holds no GIL). The compile target must have
AVX-512 VNNI (512) or AVX-VNNI / AVX-512 VNNI + VL (256): realtime.kernel.int8dot.path.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from realtime.kernel.dot_loop import GROUPS, I64, LANES, as_i64, data_ptr, emit_blocked_dot, splat

#: blocks run together by the 256-bit routine: 4 accumulators each, so 12 plus the 2 broadcast inputs and the
#: weights fill the 16 vector registers of a CPU without AVX-512 (matrix in L1, AVX-VNNI target: 3 blocks
#: ~205 GOP/s, 2 blocks ~190, 4 blocks spill: ~115)
GROUPS_256 = (3, 2, 1)


def _dot_acc_intrinsic(lanes: int, groups: tuple[int, ...], name: str):
    """The ``dot_acc`` intrinsic on ``lanes``-lane (16: 512-bit, 8: 256-bit) vectors."""
    vt = ir.VectorType(ir.IntType(32), lanes)
    f32v = ir.VectorType(ir.FloatType(), lanes)
    parts = LANES // lanes  # vectors per 16-lane block

    def typer(typingctx, h, hoff, w, woff, xq, n_kq, n_ob, sx):
        arrays_ok = all(isinstance(a, types.Array) and a.layout == "C" for a in (h, w, xq))
        if (not arrays_ok or h.dtype != types.float32 or w.dtype != types.int32 or xq.dtype != types.uint8
                or sx != types.float32):
            return None
        sig = types.void(h, hoff, w, woff, xq, n_kq, n_ob, sx)

        def codegen(context, builder, signature, args):
            a = signature.args
            hbase, wbase, xbase = (data_ptr(context, builder, a[i], args[i], t)
                                   for i, t in ((0, ir.FloatType()), (2, ir.IntType(32)), (4, ir.IntType(32))))
            ho, wo, nkq, nob = (as_i64(context, builder, args[i], a[i]) for i in (1, 3, 5, 6))
            sxv = splat(builder, args[7], f32v)
            dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                f"llvm.x86.avx512.vpdpbusd.{32 * lanes}")
            block = ir.Constant(I64, LANES)
            tail = builder.add(wo, builder.mul(nkq, builder.mul(nob, block)))  # the scale row

            def vec(base, off, typ, align=4):
                return builder.load(builder.bitcast(builder.gep(base, [off]), ir.PointerType(typ)), align=align)

            def finish(b, accs):
                for i in range(parts):
                    col = builder.add(builder.mul(b, block), ir.Constant(I64, i * lanes))
                    scale = vec(wbase, builder.add(tail, col), f32v)
                    corr = vec(wbase, builder.add(builder.add(tail, builder.mul(nob, block)), col), f32v)
                    hp = builder.bitcast(builder.gep(hbase, [builder.add(ho, col)]), ir.PointerType(f32v))
                    hi = builder.fmul(builder.fsub(builder.sitofp(accs[i], f32v), corr),
                                      ir.Constant(f32v, [256.0] * lanes))
                    # exact up to here (n_in <= MAX_INPUTS) but for this add
                    total = builder.fadd(hi, builder.sitofp(accs[parts + i], f32v))
                    prod = builder.fmul(total, builder.fmul(scale, sxv))
                    builder.store(builder.fadd(builder.load(hp, align=4), prod), hp, align=4)

            def load_w(builder, ptr):
                return [vec(ptr, ir.Constant(I64, i * lanes), vt) for i in range(parts)]

            def broadcast(k):
                return splat(builder, builder.load(builder.gep(xbase, [k])), vt)

            zero = ir.Constant(vt, [0] * lanes)
            emit_blocked_dot(
                builder, nkq, nob, wbase, wo,
                init=lambda b: [zero] * (2 * parts),  # high-byte accumulators, then low-byte ones
                # (acc, unsigned bytes, signed bytes), for the high and the low bytes of each part
                step=lambda accs, ws, x: ([builder.call(dp, [accs[i], x[0], ws[i]]) for i in range(parts)]
                                          + [builder.call(dp, [accs[parts + i], x[1], ws[i]]) for i in range(parts)]),
                finish=finish,
                load_x=lambda k: (broadcast(k), broadcast(builder.add(k, nkq))),
                groups=groups, load_w=load_w)
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


_DOC = """``h[hoff + o] += ((sum_k P[k, o] . hi[k] - corr[o]) * 256 + sum_k P[k, o] . lo[k]) * (scale[o] * sx)``
for outputs o < 16 n_ob, with {}.

``h`` float32 (C-contiguous); ``w`` packed int32 (C-contiguous), the matrix starting at flat
element ``woff`` with ``n_kq`` quad rows then the tail rows (realtime.kernel.int8dot); ``xq`` uint8:
the activations' high bytes (4 ``n_kq`` of them) then their low bytes; ``sx`` the activations'
float32 scale. Each weight vector is loaded once for both byte planes.
"""
dot_acc = _dot_acc_intrinsic(16, GROUPS, "dot_acc")
dot_acc.__doc__ = _DOC.format("512-bit vpdpbusd (AVX-512 VNNI)")
dot_acc_256 = _dot_acc_intrinsic(8, GROUPS_256, "dot_acc_256")
dot_acc_256.__doc__ = _DOC.format("256-bit vpdpbusd (AVX-VNNI)")
