"""bfloat16 dot products on AVX-512 BF16 (``vdpbf16ps``), for the ``bf16dot`` precision of the Numba kernel.

Weights *and* activations are rounded to bfloat16; products accumulate in
float32. One ``vdpbf16ps`` does 32 multiply-adds, twice the work of a float32
FMA, and reads half the bytes, so a matrix-vector product runs at ~80 GFLOP/s on
one Emerald Rapids core where the widening bf16 kernel reaches ~30.

Layout ("packed"): a weight matrix ``W`` (n_in, n_out) float32 becomes uint32
``P`` (n_in / 2, n_out / 16, 16) with ``P[k, b, j] = bf16(W[2k, 16b + j]) |
bf16(W[2k + 1, 16b + j]) << 16`` (rows in pairs, 16 output lanes); the input
vector becomes n_in / 2 pairs in the same form, stored as float32 bit patterns
so they fit the kernel's float32 scratch. Needs n_in even and n_out a multiple
of 16.

Thread: generator (these run inside the kernel, which holds no GIL).
Only usable when :func:`available` (the compile target has AVX-512 BF16 and LLVM >= 17);
Numba compiles them only for the kernel specialisation that uses packed weights.
"""
from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from realtime.kernel import isa
from realtime.kernel.dot_loop import LANES, as_i64, broadcast_i32, data_ptr, emit_blocked_dot


def available() -> tuple[bool, str]:
    """``(usable, reason)``: do the compile target (realtime.kernel.isa) and this LLVM support the ``bf16dot``
    kernel?"""
    if llvm_binding.llvm_version_info < (17,):
        return False, f"LLVM {'.'.join(map(str, llvm_binding.llvm_version_info))} < 17 has no bfloat vectors"
    if not isa.has("avx512bf16"):
        return False, f"the compile target ({isa.describe()}) has no AVX-512 BF16"
    return True, f"AVX-512 BF16 on {isa.describe()}"


def shape_error(r: int, s: int) -> str | None:
    """Why a model with R residual and S skip channels cannot use packed weights, or None."""
    if r % LANES or s % LANES:
        return f"bf16dot needs residual and skip channels that are multiples of {LANES} (R{r}/S{s})"
    return None


class _BFloat(ir.Type):
    """LLVM's ``bfloat`` (llvmlite has no class for it)."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other) -> bool:
        return isinstance(other, _BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


_F32V = ir.VectorType(ir.FloatType(), LANES)
_BFV = ir.VectorType(_BFloat(), 2 * LANES)
_I64 = ir.IntType(64)


# ------------------------------------------------------------------ numpy side (packing, reference)
def float32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even; a NaN stays a (quiet) NaN of its sign."""
    x = np.ascontiguousarray(x, np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    b = np.where(np.isnan(x), (b & 0x8000) | 0x7FC0, b)
    return b.astype(np.uint16)


def bf16_to_float32(b: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32."""
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to the nearest bfloat16, as float32."""
    return bf16_to_float32(float32_to_bf16(x))


def pack_matrix(w: np.ndarray) -> np.ndarray:
    """(..., n_in, n_out) float32 -> (..., n_in / 2, n_out / 16, 16) uint32 packed bf16 pairs."""
    w = np.asarray(w, np.float32)
    *lead, n_in, n_out = w.shape
    if n_in % 2 or n_out % LANES:
        raise ValueError(f"packed bf16 needs an even input width and outputs in multiples of {LANES}, "
                         f"got {n_in} x {n_out}")
    b = float32_to_bf16(w).astype(np.uint32)
    p = b[..., 0::2, :] | (b[..., 1::2, :] << 16)
    return np.ascontiguousarray(p.reshape(*lead, n_in // 2, n_out // LANES, LANES))


def unpack_matrix(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_matrix` (the bf16-rounded weights as float32)."""
    *lead, n_kp, n_ob, lanes = p.shape
    p = p.reshape(*lead, n_kp, n_ob * lanes)
    lo = ((p & 0xFFFF) << 16).view(np.float32)
    hi = (p & 0xFFFF0000).view(np.float32)
    out = np.empty((*lead, 2 * n_kp, n_ob * lanes), np.float32)
    out[..., 0::2, :], out[..., 1::2, :] = lo, hi
    return out


# ------------------------------------------------------------------ kernel side (Numba intrinsics)
@intrinsic
def bf16_pair(typingctx, a, b):
    """Two float32 -> one float32 whose bits are ``bf16(a) | bf16(b) << 16`` (hardware rounding)."""
    if a != types.float32 or b != types.float32:
        return None

    def codegen(context, builder, signature, args):
        v = ir.Constant(ir.VectorType(ir.FloatType(), 2), ir.Undefined)
        v = builder.insert_element(v, args[0], ir.Constant(ir.IntType(32), 0))
        v = builder.insert_element(v, args[1], ir.Constant(ir.IntType(32), 1))
        t = builder.fptrunc(v, ir.VectorType(_BFloat(), 2))
        return builder.bitcast(t, ir.FloatType())

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def dot_acc(typingctx, h, hoff, w, woff, xp, n_kp, n_ob):
    """``h[hoff + 16b + j] += sum_k P[k, b, j] . xp[k]`` for output blocks b < n_ob, pairs k < n_kp.

    ``h`` float32 (C-contiguous), ``w`` packed uint32 (C-contiguous; block (k, b) at flat
    ``woff + (k * n_ob + b) * 16``), ``xp`` float32 holding packed input pairs. Blocks run in
    groups of 8/4/2/1 so several ``vdpbf16ps`` chains are in flight per input pair.
    """
    arrays_ok = all(isinstance(a, types.Array) and a.layout == "C" for a in (h, w, xp))
    if not arrays_ok or h.dtype != types.float32 or w.dtype != types.uint32 or xp.dtype != types.float32:
        return None
    sig = types.void(h, hoff, w, woff, xp, n_kp, n_ob)

    def codegen(context, builder, signature, args):
        a = signature.args
        hbase, wbase, xbase = (data_ptr(context, builder, a[i], args[i], t)
                               for i, t in ((0, ir.FloatType()), (2, ir.IntType(32)), (4, ir.IntType(32))))
        ho, wo, nkp, nob = (as_i64(context, builder, args[i], a[i]) for i in (1, 3, 5, 6))
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32V, [_F32V, _BFV, _BFV]),
                                            f"llvm.x86.avx512bf16.dpbf16ps.{32 * LANES}")

        def hptr(b):
            off = builder.add(ho, builder.mul(b, ir.Constant(_I64, LANES)))
            return builder.bitcast(builder.gep(hbase, [off]), ir.PointerType(_F32V))

        emit_blocked_dot(
            builder, nkp, nob, wbase, wo,
            init=lambda b: [builder.load(hptr(b), align=4)],
            step=lambda accs, wv, x: [builder.call(dp, [accs[0], builder.bitcast(wv, _BFV), x])],
            finish=lambda b, accs: builder.store(accs[0], hptr(b), align=4),
            load_x=lambda k: builder.bitcast(broadcast_i32(builder, xbase, k), _BFV))
        return context.get_dummy_value()

    return sig, codegen
