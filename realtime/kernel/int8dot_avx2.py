"""int8dot's AVX2 routine: int16 activation codes times int8 weights sign-extended to int16, ``vpmaddwd``.

For CPUs with AVX2 but no VNNI (Intel 2013-2020 client CPUs, AMD Zen 1-3). ``vpmaddubsw``
(unsigned bytes x signed bytes, pairs summed into int16) would read the byte planes of the
VNNI routines, but its pair sums saturate (255 * 127 * 2 > 32767), and 7-bit planes cost
the codes two bits. So the codes come as int16 ``u - 32768`` (realtime.kernel.int8dot.quantize16),
each 16-byte quarter of a packed block is sign-extended to 16 int16 as it is loaded
(``vpmovsxbw``), and ``vpmaddwd`` multiplies them by the broadcast codes of the input quad and
adds neighbouring pairs into 8 int32 lanes: lane 2m + p of quarter i holds output 4i + m, inputs
4k + 2p and 4k + 2p + 1. Four accumulators per block; the finish adds each lane pair. The sums
are exact in int32 (|code| <= 32768, |q| <= 127, n_in <= 512), and ``+ offset`` (the codes'
zero point, realtime.kernel.int8dot) is added in float64, exactly, before one rounding to
float32: the same bits as the VNNI routines.

Thread: generator (inside the kernel, which holds no GIL). The compile target must have AVX2.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from realtime.kernel.dot_loop import I64, LANES, as_i64, data_ptr, emit_blocked_dot, splat

#: blocks run together (four accumulators each; ``vpmaddwd`` is off the accumulators' dependency chains, so
#: few are needed: 1, 2 and 3 blocks ran within 10 % of each other; 3 was fastest, ~97 GOP/s in L1)
GROUPS_AVX2 = (3, 2, 1)

_I16 = ir.IntType(16)
_W16 = ir.VectorType(_I16, 16)  # one quarter block, widened
_B16 = ir.VectorType(ir.IntType(8), 16)
_I32X8 = ir.VectorType(ir.IntType(32), 8)
_F32X8 = ir.VectorType(ir.FloatType(), 8)
_F64X8 = ir.VectorType(ir.DoubleType(), 8)
_EVEN = ir.Constant(_I32X8, list(range(0, 16, 2)))
_ODD = ir.Constant(_I32X8, list(range(1, 16, 2)))


@intrinsic
def dot_acc(typingctx, h, hoff, w, woff, xc, n_kq, n_ob, sx):
    """``h[hoff + o] += (sum_k P[k, o] . c[k] + offset[o]) * (scale[o] * sx)`` for outputs o < 16 n_ob
    (``c`` the int16 codes ``u - 32768``; the module docstring says how).

    ``h`` float32 (C-contiguous); ``w`` packed int32 (C-contiguous), the matrix starting at flat element
    ``woff`` with ``n_kq`` quad rows then the tail rows (realtime.kernel.int8dot); ``xc`` uint8: the
    4 ``n_kq`` int16 codes (realtime.kernel.int8dot.quantize16); ``sx`` the activations' float32 scale.
    """
    arrays_ok = all(isinstance(a, types.Array) and a.layout == "C" for a in (h, w, xc))
    if (not arrays_ok or h.dtype != types.float32 or w.dtype != types.int32 or xc.dtype != types.uint8
            or sx != types.float32):
        return None
    sig = types.void(h, hoff, w, woff, xc, n_kq, n_ob, sx)

    def codegen(context, builder, signature, args):
        a = signature.args
        hbase, wbase = (data_ptr(context, builder, a[i], args[i], t)
                        for i, t in ((0, ir.FloatType()), (2, ir.IntType(32))))
        xbase = data_ptr(context, builder, a[4], args[4], ir.IntType(64))  # one input quad's codes per i64
        ho, wo, nkq, nob = (as_i64(context, builder, args[i], a[i]) for i in (1, 3, 5, 6))
        sxv = splat(builder, args[7], _F32X8)
        madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32X8, [_W16, _W16]),
                                              "llvm.x86.avx2.pmadd.wd")
        block = ir.Constant(I64, LANES)
        tail = builder.add(wo, builder.mul(nkq, builder.mul(nob, block)))  # the scale row
        row = builder.mul(nob, block)

        def vec(base, off, typ, align=4):
            return builder.load(builder.bitcast(builder.gep(base, [off]), ir.PointerType(typ)), align=align)

        def load_w(builder, ptr):  # the four quarters (16 bytes: outputs 4i..4i+3 x 4 inputs), widened
            return [builder.sext(vec(ptr, ir.Constant(I64, 4 * i), _B16), _W16) for i in range(4)]

        def finish(b, accs):
            for half in range(2):  # outputs 8 half .. 8 half + 7: quarters 2 half, 2 half + 1
                lo, hi = accs[2 * half], accs[2 * half + 1]
                sums = builder.add(builder.shuffle_vector(lo, hi, _EVEN), builder.shuffle_vector(lo, hi, _ODD))
                col = builder.add(builder.mul(b, block), ir.Constant(I64, 8 * half))
                scale = vec(wbase, builder.add(tail, col), _F32X8)
                offset = vec(wbase, builder.add(builder.add(tail, builder.add(row, row)), col), _F32X8)
                exact = builder.fadd(builder.sitofp(sums, _F64X8), builder.fpext(offset, _F64X8))  # |.| < 2^53
                total = builder.fptrunc(exact, _F32X8)
                hp = builder.bitcast(builder.gep(hbase, [builder.add(ho, col)]), ir.PointerType(_F32X8))
                prod = builder.fmul(total, builder.fmul(scale, sxv))
                builder.store(builder.fadd(builder.load(hp, align=4), prod), hp, align=4)

        def load_x(k):  # codes 4k..4k+3 in every 64-bit lane
            quad = splat(builder, builder.load(builder.gep(xbase, [k]), align=8), ir.VectorType(I64, 4))
            return builder.bitcast(quad, _W16)

        zero = ir.Constant(_I32X8, [0] * 8)
        emit_blocked_dot(
            builder, nkq, nob, wbase, wo,
            init=lambda b: [zero] * 4,
            step=lambda accs, ws, x: [builder.add(acc, builder.call(madd, [wq, x])) for acc, wq in zip(accs, ws)],
            finish=finish, load_x=load_x, groups=GROUPS_AVX2, load_w=load_w)
        return context.get_dummy_value()

    return sig, codegen
