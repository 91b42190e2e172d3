"""int8 dot products for the ``int8dot`` precision of the Numba kernel: the format, the activation quantiser,
and which routine the compile target gets.

Weights are int8 with one float32 scale per output column (``w ~= q * scale``,
LPCNet style). Activations are quantised per vector at run time to 16-bit codes
``u`` (scale = max |x| / 32767 around a zero point of 32768, or max x / 65535 from 0
for the output head's relu inputs, which are never negative). Every routine sums
``sum_i (u_i - 256 zp) q[i, o]`` exactly in int32, so all of them give the same
bits (tested); only the weights' 8-bit and the activations' 16-bit roundings
differ from float32 (8-bit activation codes doubled the logit error and cost pitch
accuracy). The routines (:func:`path` picks the widest the compile target has):

* ``avx512vnni`` (realtime.kernel.int8dot_vnni): the codes split into a high and a
  low byte plane; one ``vpdpbusd`` multiplies 64 unsigned activation bytes by 64
  signed weight bytes and adds them in groups of four into 16 int32 lanes, so each
  weight vector, loaded once, takes two of them: ``sum u q = 256 sum hi q + sum lo q``;
* ``avxvnni``: the same on 256-bit vectors (Intel client CPUs since 2021);
* ``avx2`` (realtime.kernel.int8dot_avx2): the codes as int16 ``u - 32768``, the
  weights sign-extended to int16 as they are loaded (``vpmovsxbw``), ``vpmaddwd``
  multiplies and adds pairs into int32 (``vpmaddubsw`` on the byte planes would
  saturate at int16: 255 * 127 * 2 > 32767).

Layout ("packed"): a weight matrix ``W`` (n_in, n_out) float32 becomes int32
``P`` (n_in / 4 + 3, n_out / 16, 16): for k < n_in / 4, ``P[k, b, j]`` holds the
four int8 ``q[4k + i, 16b + j]`` (i = 0..3, byte i); then three float32 rows (as bit
patterns): the column scales, the byte planes' zero-point correction ``zp * sum_i q[i, o]``
(zp = the high byte's zero point, 128 or 0) and the int16 codes' offset
``256 (128 - zp) sum_i q[i, o]``. For activations ``x[i] ~= (u_i - 256 zp) * sx`` the
routines compute ``h[o] += (sum_i (u_i - 256 zp) q[i, o]) * (scale[o] * sx)``. The
dilated convolution is two such matrices, one per tap, so x(t - d) and x(t) each
get their own scale.

Speed (R64/S128/L20, one Emerald Rapids core, AVX-512 VNNI): ~95k samples/s, ~1.9x
bf16dot: the weight bytes, not the instructions, bound it. The weights must start on a
cache line (realtime.kernel.aligned): at a 16-byte offset every 64-byte load straddles
two lines and the routine runs 1.7x slower. The other targets: realtime/README.md.

Thread: generator (these run inside the kernel, which holds no GIL).
Only usable when :func:`available` (the compile target has AVX2 at least).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from realtime.kernel import int8dot_avx2, int8dot_vnni, isa
from realtime.kernel.dot_loop import I32V, I64, LANES, as_i64, data_ptr, splat
from realtime.kernel.float_bits import f32_from_bits

#: below this max |x| a vector quantises to all zero-point codes (levels / max |x| would overflow float32)
TINY = np.float32(1e-30)
#: the widest input the exact integer arithmetic allows: the high bytes' sums must stay below 2^24 to
#: convert to float32 exactly (255 * 127 * n_in < 2^24), the int16 codes' below 2^31 (32768 * 127 * n_in)
MAX_INPUTS = 512
#: the high byte's zero points: inputs of either sign (residual stream, gate outputs) / relu outputs (head)
ZP_SIGNED, ZP_RELU = 128, 0
#: float32 rows after the int8 quads: scale, zero-point correction, int16 offset
TAIL_ROWS = 3
#: the routines, fastest first, and what the compile target needs for each (realtime.kernel.isa)
PATHS = {"avx512vnni": ("avx512vnni",), "avxvnni": ("avxvnni",), "avx2": ("avx2",)}
#: the instructions of each routine, for messages
INSTRUCTIONS = {"avx512vnni": "AVX-512 VNNI (512-bit vpdpbusd)", "avxvnni": "AVX-VNNI (256-bit vpdpbusd)",
                "avx2": "AVX2 (vpmovsxbw + vpmaddwd)"}
_F32V = ir.VectorType(ir.FloatType(), LANES)


def path() -> str | None:
    """The int8dot routine the compile target gets (a key of :data:`PATHS`), or None (no AVX2)."""
    return next((p for p, needs in PATHS.items() if isa.has(*needs)), None)


def available() -> tuple[bool, str]:
    """``(usable, reason)``: does the compile target support the ``int8dot`` kernel, and with which routine?"""
    p = path()
    if p is None:
        return False, f"the compile target ({isa.describe()}) has no AVX2"
    return True, f"{INSTRUCTIONS[p]} on {isa.describe()}"


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
    """(..., n_in, n_out) float32 -> (..., n_in / 4 + 3, n_out / 16, 16) int32 (see the module docstring)
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
    qsum = q.astype(np.int64).sum(axis=-2)
    # exact in float32: |zp * qsum| < 2^24 (n_in <= MAX_INPUTS), and the offset is 0 or qsum * 2^15
    corr, offset = (zero_point * qsum).astype(np.float32), (256 * (128 - zero_point) * qsum).astype(np.float32)
    tail = np.stack([scale, corr, offset], axis=-2).view(np.int32)
    out = np.concatenate([packed, tail], axis=-2)
    return np.ascontiguousarray(out.reshape(*lead, n_in // 4 + TAIL_ROWS, n_out // LANES, LANES))


def unpack_matrix(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_matrix`: (q int8 (..., n_in, n_out), scale, corr, offset (..., n_out) float32)."""
    *lead, rows, n_ob, lanes = p.shape
    p = np.ascontiguousarray(p).reshape(*lead, rows, n_ob * lanes)
    n_kq = rows - TAIL_ROWS
    q = p[..., :n_kq, :].view(np.int8).reshape(*lead, n_kq, n_ob * lanes, 4)
    q = np.moveaxis(q, -1, -2).reshape(*lead, 4 * n_kq, n_ob * lanes)
    tail = np.ascontiguousarray(p[..., n_kq:, :]).view(np.float32)
    return q, tail[..., 0, :], tail[..., 1, :], tail[..., 2, :]


def quantize_activations(x: np.ndarray, zero_point: int) -> tuple[np.ndarray, np.float32]:
    """numpy reference of the kernel's activation quantisation: (uint16 codes, scale) with
    ``x ~= (u - 256 zero_point) * scale`` (relu first when ``zero_point`` is 0); the kernel stores the
    codes' high bytes then their low bytes (:func:`quantize`), or ``u - 32768`` as int16 (:func:`quantize16`)."""
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


def _codes_intrinsic(name, store):
    """An intrinsic named ``name``, ``(u8, x, col0, n16, inv, off, relu)``: 16-bit codes
    ``c_i = trunc(f(x[col0 + i]) * inv + off)`` for i < n = 16 n16 (f = max(., 0) if ``relu`` else identity),
    stored by ``store(builder, ubase, n, i16, codes)`` (ubase an i8 pointer, codes a 16 x i32 vector of lanes
    i16..i16+15)."""

    def typer(typingctx, u8, x, col0, n16, inv, off, relu):
        ok = (isinstance(u8, types.Array) and u8.layout == "C" and u8.dtype == types.uint8
              and isinstance(x, types.Array) and x.layout == "C" and x.dtype == types.float32
              and inv == types.float32 and off == types.float32 and isinstance(relu, types.Boolean))
        if not ok:
            return None
        sig = types.void(u8, x, col0, n16, inv, off, relu)

        def codegen(context, builder, signature, args):
            a = signature.args
            ubase = data_ptr(context, builder, a[0], args[0], ir.IntType(8))
            xbase = data_ptr(context, builder, a[1], args[1], ir.FloatType())
            c0, n = as_i64(context, builder, args[2], a[2]), as_i64(context, builder, args[3], a[3])
            n_codes = builder.mul(n, ir.Constant(I64, LANES))
            invv, offv = splat(builder, args[4], _F32V), splat(builder, args[5], _F32V)
            lo = builder.select(args[6], ir.Constant(_F32V, [0.0] * LANES), ir.Constant(_F32V, [-3.0e38] * LANES))
            maxnum = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32V, [_F32V, _F32V]),
                                                    "llvm.maxnum.v16f32")
            with cgutils.for_range(builder, n) as loop:
                i16 = builder.mul(loop.index, ir.Constant(I64, LANES))
                v = builder.load(builder.bitcast(builder.gep(xbase, [builder.add(c0, i16)]), ir.PointerType(_F32V)),
                                 align=4)
                v = builder.fadd(builder.fmul(builder.call(maxnum, [v, lo]), invv), offv)
                # in [0, 65536): the same as an unsigned conversion, and one instruction on AVX2 too
                store(builder, ubase, n_codes, i16, builder.fptosi(v, I32V))
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


def _store_planes(builder, ubase, n, i16, codes):
    bytes16 = ir.VectorType(ir.IntType(8), LANES)
    hi = builder.trunc(builder.lshr(codes, ir.Constant(I32V, [8] * LANES)), bytes16)
    builder.store(hi, builder.bitcast(builder.gep(ubase, [i16]), ir.PointerType(bytes16)), align=1)
    builder.store(builder.trunc(codes, bytes16),
                  builder.bitcast(builder.gep(ubase, [builder.add(n, i16)]), ir.PointerType(bytes16)), align=1)


def _store_int16(builder, ubase, n, i16, codes):
    words = ir.VectorType(ir.IntType(16), LANES)
    c = builder.trunc(builder.xor(codes, ir.Constant(I32V, [0x8000] * LANES)), words)  # u - 32768 as int16
    ptr = builder.bitcast(builder.gep(ubase, [builder.add(i16, i16)]), ir.PointerType(words))
    builder.store(c, ptr, align=2)


to_codes = _codes_intrinsic("to_codes", _store_planes)
to_codes.__doc__ = """16-bit codes ``c_i = trunc(f(x[col0 + i]) * inv + off)`` for i < n = 16 n16, f = max(., 0) if
``relu`` else identity, stored as two byte planes: ``u8[i] = c_i >> 8``, ``u8[n + i] = c_i & 255``.
The caller guarantees the codes land in [0, 65536) (no NaN, |x| * inv <= 32767 or x * inv <= 65535)."""
to_codes16 = _codes_intrinsic("to_codes16", _store_int16)
to_codes16.__doc__ = """The codes of :func:`to_codes` stored as int16 ``c_i - 32768`` (bytes 2i, 2i + 1 of ``u8``)."""


@njit(inline="always", nogil=True, error_model="numpy", boundscheck=False)
def _scale(x, col0, n, zero_point):
    """``(inv, sx, bad)`` of x[col0:col0 + n] (see :func:`quantize`); ``bad``: x holds a NaN or Inf (sx is then NaN)."""
    relu = zero_point == 0
    amax_bits, pmax_bits = max_bits(x, col0, n >> 4)
    if amax_bits >= np.int32(0x7F800000):
        return np.float32(0.0), np.float32(np.nan), True
    levels = np.float32(65535.0) if relu else np.float32(32767.0)
    amax = f32_from_bits(pmax_bits if relu else amax_bits)
    inv = levels / amax if amax > TINY else np.float32(0.0)  # all-zero or denormal: codes at the zero point
    return inv, amax / levels, False


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
    inv, sx, bad = _scale(x, col0, n, zero_point)
    if bad:
        for i in range(n):
            u8[i] = zero_point
            u8[n + i] = 0
        return sx
    to_codes(u8, x, col0, n >> 4, inv, np.float32(256 * zero_point) + np.float32(0.5), zero_point == 0)  # trunc rounds
    return sx


@njit(inline="always", nogil=True, error_model="numpy", boundscheck=False)
def quantize16(u8, x, col0, n, zero_point):
    """:func:`quantize` for the AVX2 routine: the same codes, stored as int16 ``code - 32768`` in ``u8[:2n]``
    (a NaN or Inf: every code at the zero point, sx = NaN). Generator thread."""
    inv, sx, bad = _scale(x, col0, n, zero_point)
    if bad:
        c = np.uint8(0 if zero_point == ZP_SIGNED else 128)  # 256 zp - 32768 = 0 or -32768, little-endian
        for i in range(n):
            u8[2 * i] = 0
            u8[2 * i + 1] = c
        return sx
    to_codes16(u8, x, col0, n >> 4, inv, np.float32(256 * zero_point) + np.float32(0.5), zero_point == 0)
    return sx


_JIT = dict(inline="always", nogil=True, error_model="numpy", boundscheck=False)


@njit(**_JIT)
def _quantized_dot_vnni512(hv, wm, x, col0, n_in, n_ob, zero_point, u8):
    sx = quantize(u8, x, col0, n_in, zero_point)
    int8dot_vnni.dot_acc(hv, 0, wm, 0, u8, n_in >> 2, n_ob, sx)


@njit(**_JIT)
def _quantized_dot_vnni256(hv, wm, x, col0, n_in, n_ob, zero_point, u8):
    sx = quantize(u8, x, col0, n_in, zero_point)
    int8dot_vnni.dot_acc_256(hv, 0, wm, 0, u8, n_in >> 2, n_ob, sx)


@njit(**_JIT)
def _quantized_dot_avx2(hv, wm, x, col0, n_in, n_ob, zero_point, u8):
    sx = quantize16(u8, x, col0, n_in, zero_point)
    int8dot_avx2.dot_acc(hv, 0, wm, 0, u8, n_in >> 2, n_ob, sx)


#: each path's routines: (quantise and multiply, multiply codes already quantised)
ROUTINES = {"avx512vnni": (_quantized_dot_vnni512, int8dot_vnni.dot_acc),
            "avxvnni": (_quantized_dot_vnni256, int8dot_vnni.dot_acc_256),
            "avx2": (_quantized_dot_avx2, int8dot_avx2.dot_acc)}
#: the compile target's path, fixed when this module is imported (Numba reads its target when it is imported;
#: its cache keys every compiled function on the target, so a cached kernel always has its target's routine)
PATH = path()
#: ``quantized_dot(hv, wm, x, col0, n_in, n_ob, zero_point, u8)``: hv[:16 n_ob] += x[col0:col0 + n_in] @ W for one
#: packed matrix ``wm``: quantise the inputs (codes into the scratch bytes ``u8``, at least 2 n_in of them), then
#: multiply with the compile target's routine (:data:`PATH`); only that routine's instructions are emitted.
#: ``dot_acc(h, hoff, w, woff, xq, n_kq, n_ob, sx)``: that routine alone, on codes already in ``xq`` (byte planes
#: from :func:`quantize`, or int16 codes from :func:`quantize16` for ``avx2``). Generator thread.
quantized_dot, dot_acc = ROUTINES[PATH or "avx2"]
