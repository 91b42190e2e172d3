"""int8 dot products on AVX-512 VNNI (``vpdpbusd``), for the ``int8dot`` precision of the Numba kernel.

Weights are int8 with one float32 scale per output column (``w ~= q * scale``,
LPCNet style). Activations are quantised per vector at run time to 16-bit codes
(scale = max |x| / 32767 around a zero point of 32768, or max x / 65535 from 0
for the output head's relu inputs, which are never negative) and split into a
high and a low byte plane. One ``vpdpbusd`` multiplies 64 unsigned activation
bytes by 64 signed weight bytes and adds them in groups of four into 16 int32
lanes, so each weight vector, loaded once, takes two of them (high and low
bytes): ``sum u q = 256 sum hi q + sum lo q``. All sums are exact integers; only
the weights' 8-bit and the activations' 16-bit roundings differ from float32 (8-bit
activations, tried first, doubled the logit error and cost pitch accuracy).

Layout ("packed"): a weight matrix ``W`` (n_in, n_out) float32 becomes int32
``P`` (n_in / 4 + 2, n_out / 16, 16): for k < n_in / 4, ``P[k, b, j]`` holds the
four int8 ``q[4k + i, 16b + j]`` (i = 0..3, byte i); row n_in / 4 holds the
column scales and row n_in / 4 + 1 the zero-point correction ``zp * sum_i q[i, o]``
(zp = the high byte's zero point, 128 or 0), both as float32 bit patterns. The
routine then computes ``h[o] += ((sum_i hi[i] q[i, o] - corr[o]) * 256 + sum_i lo[i] q[i, o])
* (scale[o] * sx)`` for activations ``x[i] ~= (256 hi[i] + lo[i] - 256 zp) * sx``. The
dilated convolution is two such matrices, one per tap, so x(t - d) and x(t) each
get their own scale.

Speed (R64/S128/L20, one Emerald Rapids core): ~95k samples/s, ~1.9x bf16dot: the
weight bytes, not the instructions, bound it. The weights must start on a cache
line (realtime.kernel.aligned): at a 16-byte offset every 64-byte load straddles two
lines and the routine runs 1.7x slower.

Thread: generator (these run inside the kernel, which holds no GIL).
Only usable when :func:`available` (the CPU has AVX-512 VNNI).
"""
from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from realtime.kernel.dot_loop import I32V, I64, LANES, as_i64, broadcast_i32, data_ptr, emit_blocked_dot, splat
from realtime.kernel.float_bits import f32_from_bits

#: below this max |x| a vector quantises to all zero-point codes (levels / max |x| would overflow float32)
TINY = np.float32(1e-30)
#: the widest input the exact integer arithmetic allows: the high bytes' sums must stay below 2^24 to
#: convert to float32 exactly (255 * 127 * n_in < 2^24)
MAX_INPUTS = 512
#: the high byte's zero points: inputs of either sign (residual stream, gate outputs) / relu outputs (head)
ZP_SIGNED, ZP_RELU = 128, 0
_F32V = ir.VectorType(ir.FloatType(), LANES)


def available() -> tuple[bool, str]:
    """``(usable, reason)``: does this CPU support the ``int8dot`` kernel?"""
    if not llvm_binding.get_host_cpu_features().get("avx512vnni", False):
        return False, f"this CPU ({llvm_binding.get_host_cpu_name()}) has no AVX-512 VNNI"
    return True, f"AVX-512 VNNI on {llvm_binding.get_host_cpu_name()}"


def shape_error(r: int, s: int) -> str | None:
    """Why a model with R residual and S skip channels cannot use packed int8 weights, or None."""
    if r % LANES or s % LANES:
        return f"int8dot needs residual and skip channels that are multiples of {LANES} (R{r}/S{s})"
    if max(r, s) > MAX_INPUTS:
        return f"int8dot needs at most {MAX_INPUTS} residual and skip channels (R{r}/S{s})"
    return None


# ------------------------------------------------------------------ numpy side (packing, reference)
def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one scale per output column (last axis): ``w ~= q * scale``.

    ``w`` (..., n_in, n_out) float32 -> (q int8 same shape, scale (..., n_out) float32);
    q = round(w / scale), scale = max |w| over the column / 127 (1 for an all-zero column).
    """
    w = np.asarray(w, np.float32)
    amax = np.abs(w).max(axis=-2)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[..., None, :]), -127, 127).astype(np.int8)
    return q, scale


def pack_matrix(w: np.ndarray, zero_point: int) -> np.ndarray:
    """(..., n_in, n_out) float32 -> (..., n_in / 4 + 2, n_out / 16, 16) int32 (see the module docstring)
    for inputs quantised around ``zero_point`` (:data:`ZP_SIGNED` or :data:`ZP_RELU`)."""
    w = np.asarray(w, np.float32)
    *lead, n_in, n_out = w.shape
    if n_in % 4 or n_out % LANES or n_in > MAX_INPUTS:
        raise ValueError(f"packed int8 needs an input width in multiples of 4 (at most {MAX_INPUTS}) and "
                         f"outputs in multiples of {LANES}, got {n_in} x {n_out}")
    q, scale = quantize_int8(w)
    quads = q.reshape(*lead, n_in // 4, 4, n_out).transpose(*range(len(lead)), len(lead), len(lead) + 2,
                                                            len(lead) + 1)
    packed = np.ascontiguousarray(quads).view(np.int32)[..., 0]  # byte i of each int32 = q[4k + i]
    corr = (zero_point * q.astype(np.int64).sum(axis=-2)).astype(np.float32)  # exact: |corr| < 2^24 (n_in <= MAX_INPUTS)
    tail = np.stack([scale, corr], axis=-2).view(np.int32)
    out = np.concatenate([packed, tail], axis=-2)
    return np.ascontiguousarray(out.reshape(*lead, n_in // 4 + 2, n_out // LANES, LANES))


def unpack_matrix(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_matrix`: (q int8 (..., n_in, n_out), scale, corr (..., n_out) float32)."""
    *lead, rows, n_ob, lanes = p.shape
    p = np.ascontiguousarray(p).reshape(*lead, rows, n_ob * lanes)
    q = p[..., :-2, :].view(np.int8).reshape(*lead, rows - 2, n_ob * lanes, 4)
    q = np.moveaxis(q, -1, -2).reshape(*lead, 4 * (rows - 2), n_ob * lanes)
    tail = np.ascontiguousarray(p[..., -2:, :]).view(np.float32)
    return q, tail[..., 0, :], tail[..., 1, :]


def quantize_activations(x: np.ndarray, zero_point: int) -> tuple[np.ndarray, np.float32]:
    """numpy reference of the kernel's activation quantisation: (uint16 codes, scale) with
    ``x ~= (u - 256 zero_point) * scale`` (relu first when ``zero_point`` is 0); the kernel stores the
    codes' high bytes then their low bytes."""
    x = np.asarray(x, np.float32)
    if zero_point == ZP_RELU:
        x = np.maximum(x, 0)
    amax = np.float32(np.abs(x).max())
    levels = np.float32(65535 if zero_point == ZP_RELU else 32767)
    inv = levels / amax if amax > TINY else np.float32(0)
    u = np.floor(x * inv + np.float32(256 * zero_point + 0.5)).astype(np.uint16)
    return u, np.float32(amax / levels)


# ------------------------------------------------------------------ kernel side (Numba)
@intrinsic
def max_bits(typingctx, x, col0, n16):
    """``(max |x|, max(x, 0))`` over ``x[col0:col0 + 16 n16]`` (float32, C-contiguous), as int32 float bits.

    The bits of a float >= 0 order like the float, and a negative float's bits are a negative int32,
    so both are integer maxima of 16-lane vectors; a NaN or Inf shows as ``max |x| >= 0x7F800000``.
    """
    if not (isinstance(x, types.Array) and x.layout == "C" and x.dtype == types.float32):
        return None
    sig = types.UniTuple(types.int32, 2)(x, col0, n16)

    def codegen(context, builder, signature, args):
        a = signature.args
        base = data_ptr(context, builder, a[0], args[0], ir.IntType(32))
        c0, n = as_i64(context, builder, args[1], a[1]), as_i64(context, builder, args[2], a[2])
        smax = cgutils.get_or_insert_function(builder.module, ir.FunctionType(I32V, [I32V, I32V]), "llvm.smax.v16i32")
        red = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [I32V]),
                                             "llvm.vector.reduce.smax.v16i32")
        zero = ir.Constant(I32V, [0] * LANES)
        amax, pmax = cgutils.alloca_once_value(builder, zero), cgutils.alloca_once_value(builder, zero)
        with cgutils.for_range(builder, n) as loop:
            off = builder.add(c0, builder.mul(loop.index, ir.Constant(I64, LANES)))
            v = builder.load(builder.bitcast(builder.gep(base, [off]), ir.PointerType(I32V)), align=4)
            absv = builder.and_(v, ir.Constant(I32V, [0x7FFFFFFF] * LANES))
            builder.store(builder.call(smax, [builder.load(amax), absv]), amax)
            builder.store(builder.call(smax, [builder.load(pmax), v]), pmax)
        return context.make_tuple(builder, signature.return_type,
                                  [builder.call(red, [builder.load(amax)]), builder.call(red, [builder.load(pmax)])])

    return sig, codegen


@intrinsic
def to_codes(typingctx, u8, x, col0, n16, inv, off, relu):
    """16-bit codes ``c_i = trunc(f(x[col0 + i]) * inv + off)`` for i < n = 16 n16, f = max(., 0) if ``relu``
    else identity, stored as two byte planes: ``u8[i] = c_i >> 8``, ``u8[n + i] = c_i & 255``.

    The caller guarantees the codes land in [0, 65536) (no NaN, |x| * inv <= 32767 or x * inv <= 65535).
    """
    ok = (isinstance(u8, types.Array) and u8.layout == "C" and u8.dtype == types.uint8 and isinstance(x, types.Array)
          and x.layout == "C" and x.dtype == types.float32 and inv == types.float32 and off == types.float32
          and isinstance(relu, types.Boolean))
    if not ok:
        return None
    sig = types.void(u8, x, col0, n16, inv, off, relu)

    def codegen(context, builder, signature, args):
        a = signature.args
        ubase = data_ptr(context, builder, a[0], args[0], ir.IntType(8))
        xbase = data_ptr(context, builder, a[1], args[1], ir.FloatType())
        c0, n = as_i64(context, builder, args[2], a[2]), as_i64(context, builder, args[3], a[3])
        plane = builder.mul(n, ir.Constant(I64, LANES))
        invv, offv = splat(builder, args[4], _F32V), splat(builder, args[5], _F32V)
        lo = builder.select(args[6], ir.Constant(_F32V, [0.0] * LANES), ir.Constant(_F32V, [-3.0e38] * LANES))
        maxnum = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32V, [_F32V, _F32V]),
                                                "llvm.maxnum.v16f32")
        bytes16 = ir.VectorType(ir.IntType(8), LANES)
        with cgutils.for_range(builder, n) as loop:
            i16 = builder.mul(loop.index, ir.Constant(I64, LANES))
            v = builder.load(builder.bitcast(builder.gep(xbase, [builder.add(c0, i16)]), ir.PointerType(_F32V)),
                             align=4)
            v = builder.fadd(builder.fmul(builder.call(maxnum, [v, lo]), invv), offv)
            codes = builder.fptoui(v, I32V)
            hi = builder.trunc(builder.lshr(codes, ir.Constant(I32V, [8] * LANES)), bytes16)
            low = builder.trunc(codes, bytes16)
            builder.store(hi, builder.bitcast(builder.gep(ubase, [i16]), ir.PointerType(bytes16)), align=1)
            builder.store(low, builder.bitcast(builder.gep(ubase, [builder.add(plane, i16)]),
                                               ir.PointerType(bytes16)), align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", nogil=True, error_model="numpy", boundscheck=False)
def quantize(u8, x, col0, n, zero_point):
    """16-bit codes of x[col0:col0 + n] (n a multiple of 16) into ``u8[:2n]``: their high bytes, then their low
    bytes; returns the scale ``sx`` (float32), with x ~= (code - 256 zero_point) * sx.

    zero point 128: sx = max |x| / 32767; zero point 0 (relu inputs): x clamped at 0 and sx = max x / 65535.
    A NaN or Inf anywhere gives sx = NaN (the codes are then all the zero point), so the dot product's
    outputs are NaN and the voice's logits show it, as in float32 (one difference: float32's relu drops
    a -Inf skip sum in the output head, here it poisons the logits, which errs towards the watchdog).
    Explicit 512-bit vector code
    (:func:`max_bits`, :func:`to_codes`): 5x faster than what LLVM made of scalar loops. Generator thread.
    """
    relu = zero_point == 0
    amax_bits, pmax_bits = max_bits(x, col0, n >> 4)
    if amax_bits >= np.int32(0x7F800000):
        for i in range(n):
            u8[i] = zero_point
            u8[n + i] = 0
        return np.float32(np.nan)
    levels = np.float32(65535.0) if relu else np.float32(32767.0)
    amax = f32_from_bits(pmax_bits if relu else amax_bits)
    inv = levels / amax if amax > TINY else np.float32(0.0)  # all-zero or denormal: codes at the zero point
    to_codes(u8, x, col0, n >> 4, inv, np.float32(256 * zero_point) + np.float32(0.5), relu)  # trunc rounds
    return amax / levels


@intrinsic
def dot_acc(typingctx, h, hoff, w, woff, xq, n_kq, n_ob, sx):
    """``h[hoff + o] += ((sum_k P[k, o] . hi[k] - corr[o]) * 256 + sum_k P[k, o] . lo[k]) * (scale[o] * sx)``
    for outputs o < 16 n_ob.

    ``h`` float32 (C-contiguous); ``w`` packed int32 (C-contiguous), the matrix starting at flat
    element ``woff`` with ``n_kq`` quad rows then the scale and correction rows; ``xq`` uint8: the
    activations' high bytes (4 ``n_kq`` of them) then their low bytes (:func:`quantize`); ``sx``
    the activations' float32 scale. Each weight vector is loaded once for both byte planes.
    """
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
        sxv = splat(builder, args[7], _F32V)
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(I32V, [I32V, I32V, I32V]),
                                            "llvm.x86.avx512.vpdpbusd.512")
        lanes = ir.Constant(I64, LANES)
        tail = builder.add(wo, builder.mul(nkq, builder.mul(nob, lanes)))  # the scale row

        def vec(ptr_base, off, typ):
            return builder.bitcast(builder.gep(ptr_base, [off]), ir.PointerType(typ))

        def finish(b, accs):
            col = builder.mul(b, lanes)
            scale = builder.load(vec(wbase, builder.add(tail, col), _F32V), align=4)
            corr = builder.load(vec(wbase, builder.add(builder.add(tail, builder.mul(nob, lanes)), col), _F32V),
                                align=4)
            hp = vec(hbase, builder.add(ho, col), _F32V)
            hi = builder.fmul(builder.fsub(builder.sitofp(accs[0], _F32V), corr), ir.Constant(_F32V, [256.0] * LANES))
            # exact up to here (n_in <= MAX_INPUTS) but for this add
            total = builder.fadd(hi, builder.sitofp(accs[1], _F32V))
            prod = builder.fmul(total, builder.fmul(scale, sxv))
            builder.store(builder.fadd(builder.load(hp, align=4), prod), hp, align=4)

        zero = ir.Constant(I32V, [0] * LANES)
        emit_blocked_dot(
            builder, nkq, nob, wbase, wo,
            init=lambda b: [zero, zero],
            # (acc, unsigned bytes, signed bytes), for the high and the low bytes
            step=lambda accs, wv, x: [builder.call(dp, [accs[0], x[0], wv]), builder.call(dp, [accs[1], x[1], wv])],
            finish=finish,
            load_x=lambda k: (broadcast_i32(builder, xbase, k), broadcast_i32(builder, xbase, builder.add(k, nkq))))
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", nogil=True, error_model="numpy", boundscheck=False)
def quantized_dot(hv, wm, x, col0, n_in, n_ob, zero_point, u8):
    """hv[:16 n_ob] += x[col0:col0 + n_in] @ W for one packed matrix ``wm``: :func:`quantize` the inputs
    (codes into the scratch bytes ``u8``), then :func:`dot_acc`. Generator thread."""
    sx = quantize(u8, x, col0, n_in, zero_point)
    dot_acc(hv, 0, wm, 0, u8, n_in >> 2, n_ob, sx)
