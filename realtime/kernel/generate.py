"""The Numba CPU kernel: Fast WaveNet generation of a whole block per call, for one or N voices.

Thread: generator (releases the GIL). No allocation inside: every buffer is
preallocated by :class:`realtime.engine.numba_engine.NumbaEngine` /
:class:`realtime.engine.poly_engine.PolyEngine` and passed in.

Per sample and layer the dilated convolution needs two taps, x(t-d) and x(t);
x(t-d) comes from the layer's ring-buffer queue (d rows of R floats), and x(t)
replaces it there. Weights are (in, out) so inner loops are contiguous axpy
loops over the outputs, which LLVM vectorises. :func:`generate_voices` steps N
voices together (float32/int8/bf16: each weight row read once per step for all
of them, two voices per pass; bf16dot: voice by voice); :func:`generate_block`
is its one-voice form. The residual
stack's weights may be float32, int8 with per-output-column scales, or bfloat16
(see "weight formats"): one kernel source, one Numba specialisation per dtype.
Packed bf16 pairs (uint32, the ``bf16dot`` precision) take AVX-512 BF16 dot
products instead (see :mod:`realtime.kernel.bf16dot`), output head included; packed int8
quads (int32, ``int8dot``) take the compile target's int8 dot products (AVX-512 VNNI,
AVX-VNNI or AVX2, the same bits) on activations quantised per vector to 16-bit codes
(see :mod:`realtime.kernel.int8dot`).
The float32 arithmetic (order of every add) is the same for any number of
voices and identical to the original single-voice kernel; so is bf16dot's and
int8dot's, whose rounding differs from float32 (see realtime.engine.numba_engine.LOGIT_TOLERANCE).
"""
from __future__ import annotations

import warnings

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

from realtime.kernel import int8dot
from realtime.kernel.bf16dot import LANES, bf16_pair, bf16_to_float32, dot_acc, float32_to_bf16  # noqa: F401 (re-exported)
from realtime.kernel.float_bits import f32_bits as _f32_bits
from realtime.kernel.float_bits import f32_from_bits as _f32_from_bits
from realtime.kernel.int8dot import ZP_RELU, ZP_SIGNED, quantize_int8  # noqa: F401 (re-exported)
from realtime.kernel.loop_lowpass import step as loop_step
from realtime.model import source_filter as sf
from realtime.model.local_cond import LAG, LAG2, LAGAVG, LOOP_A, PERIOD, PRED, push_lag
from realtime.model.local_cond import fill as fill_local

# fast-math without nnan/ninf: NaN and Inf must stay visible to the watchdog.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
#: the generation kernels allocate nothing, so they run without Numba's reference counting: each
#: array view or array argument of an inlined helper would otherwise cost an atomic incref/decref
KERNEL = dict(JIT, _nrt=False)


@njit(inline="always", **JIT)
def fast_tanh(x):
    """Rational tanh approximation for float32 (max abs error ~1e-7 on the clamped range)."""
    x = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    p = p * x
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return p / q


# ------------------------------------------------------------------ weight formats
# The residual stack's weights can be stored as float32, as int8 with one float32
# scale per output column (w ~= w8 * scale[o], LPCNet style), or as bfloat16 (the
# high half of a float32, stored as uint16). ``widen`` turns one stored element
# into float32 inside the inner loops; Numba compiles one specialisation of the
# same kernel source per storage dtype.


def widen(x):
    """A stored weight element as float32 (float32: itself; int8: its value; uint16: bfloat16 bits)."""
    if np.asarray(x).dtype == np.uint16:
        return bf16_to_float32(x)
    return np.asarray(x).astype(np.float32)


@intrinsic
def _bf16_bits(typingctx, u):
    """uint16 bfloat16 bits -> float32 (zero-extend, shift into the high half, bitcast)."""
    if u != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        v = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(types.uint16), codegen


@overload(widen, jit_options=dict(fastmath=FASTMATH))
def _widen_impl(x):
    if x == types.float32:
        return lambda x: x
    if x == types.int8:
        return lambda x: np.float32(x)
    if x == types.uint16:
        return lambda x: _bf16_bits(x)
    return None


# The kernels run without Numba's reference counting (KERNEL flags), so array views
# such as ``h[v]`` or ``w[l]`` are free here; with it, each view would cost an atomic
# increment and decrement, more than the FMAs of a short row.

@njit(inline="always", **JIT)
def _axpy4(hv, w0, w1, w2, w3, a0, a1, a2, a3, n_out):
    """hv[:n_out] += (w0*a0 + w1*a1) + (w2*a2 + w3*a3), weights widened to float32."""
    for o in range(n_out):
        hv[o] += (widen(w0[o]) * a0 + widen(w1[o]) * a1) + (widen(w2[o]) * a2 + widen(w3[o]) * a3)


@njit(inline="always", **JIT)
def _axpy1(hv, w0, a0, n_out):
    """hv[:n_out] += w0 * a0, weights widened to float32."""
    for o in range(n_out):
        hv[o] += widen(w0[o]) * a0


@njit(inline="always", **JIT)
def _pass4(h, w0, w1, w2, w3, x, i, n_out, vidx):
    """h[v, :n_out] += (w0*x[v,i] + w1*x[v,i+1]) + (w2*x[v,i+2] + w3*x[v,i+3]) for each voice, two voices at a time."""
    nv = vidx.shape[0]
    j = 0
    while j + 2 <= nv:  # two voices per pass: each weight vector loaded (and widened) once for both
        v, u = vidx[j], vidx[j + 1]
        hv, hu = h[v], h[u]
        a0, a1, a2, a3 = x[v, i], x[v, i + 1], x[v, i + 2], x[v, i + 3]
        b0, b1, b2, b3 = x[u, i], x[u, i + 1], x[u, i + 2], x[u, i + 3]
        for o in range(n_out):
            f0, f1, f2, f3 = widen(w0[o]), widen(w1[o]), widen(w2[o]), widen(w3[o])
            hv[o] += (f0 * a0 + f1 * a1) + (f2 * a2 + f3 * a3)
            hu[o] += (f0 * b0 + f1 * b1) + (f2 * b2 + f3 * b3)
        j += 2
    if j < nv:
        v = vidx[j]
        _axpy4(h[v], w0, w1, w2, w3, x[v, i], x[v, i + 1], x[v, i + 2], x[v, i + 3], n_out)


@njit(inline="always", **JIT)
def _acc(h, w, l, row0, x, n_in, n_out, vidx, wbuf):
    """For each voice v in ``vidx``: h[v, :n_out] += sum_i widen(w[l, row0 + i, :n_out]) * x[v, i], i < n_in.

    Four input rows per pass (fewer loads/stores of h). The four weight rows of a
    pass are read once for all voices (they stay in L1), so for N voices the
    inner loop is a small matrix-matrix product; with narrow weights (int8,
    bf16) and more than two voices, the rows of a pass are first widened into
    ``wbuf`` (4, >= n_out) float32. The arithmetic of one voice does not depend
    on which other voices run.
    """
    nv = vidx.shape[0]
    wl = w[l]
    i = 0
    if nv == 1:  # one voice: its rows hoisted out of the loop (measurably faster)
        hv, xv = h[vidx[0]], x[vidx[0]]
        while i + 4 <= n_in:
            r = row0 + i
            _axpy4(hv, wl[r], wl[r + 1], wl[r + 2], wl[r + 3], xv[i], xv[i + 1], xv[i + 2], xv[i + 3], n_out)
            i += 4
        while i < n_in:
            _axpy1(hv, wl[row0 + i], xv[i], n_out)
            i += 1
        return
    stage = nv > 2 and wl.itemsize < 4
    while i + 4 <= n_in:
        r = row0 + i
        if stage:
            for k in range(4):
                for o in range(n_out):
                    wbuf[k, o] = widen(wl[r + k, o])
            _pass4(h, wbuf[0], wbuf[1], wbuf[2], wbuf[3], x, i, n_out, vidx)
        else:
            _pass4(h, wl[r], wl[r + 1], wl[r + 2], wl[r + 3], x, i, n_out, vidx)
        i += 4
    while i < n_in:
        for j in range(nv):
            _axpy1(h[vidx[j]], wl[row0 + i], x[vidx[j], i], n_out)
        i += 1


@njit(inline="always", **JIT)
def _acc_relu(h, w, x, col0, n_in, n_out, vidx):
    """For each voice v in ``vidx``: h[v, :n_out] += w[i, :n_out] * x[v, col0 + i] for the i where that is > 0
    or NaN.

    One input row at a time, rows with a non-positive input skipped (the relu of the output head;
    a NaN passes, as through torch's relu, so a poisoned voice shows in its logits and the
    watchdog sees it); two voices per pass where both use the row.
    """
    nv = vidx.shape[0]
    for i in range(n_in):
        wi = w[i]
        pend = -1  # a voice waiting for a partner
        for j in range(nv):
            v = vidx[j]
            s = x[v, col0 + i]
            if not s <= 0:  # > 0, or NaN
                if pend < 0:
                    pend = v
                    continue
                hu, hv = h[pend], h[v]
                r = x[pend, col0 + i]
                for o in range(n_out):
                    hu[o] += wi[o] * r
                    hv[o] += wi[o] * s
                pend = -1
        if pend >= 0:
            hu = h[pend]
            r = x[pend, col0 + i]
            for o in range(n_out):
                hu[o] += wi[o] * r


# ``bf16dot`` precision: packed uint32 weights (see realtime.kernel.bf16dot) take the vdpbf16ps path; the
# inputs are rounded to bf16 pairs into the group's staging row ``wbuf[0]`` first. Numba picks the
# path by the weights' dtype, so the float32/int8/bf16 specialisations never see the intrinsics.

# Numba's IR-level inlining of these overloads (whose bodies inline further helpers) trips a pedantic
# scope check that warns once per compilation; the code is right (the tests compare every precision with
# fp32) and inlining is 5-10 % faster than a call, so that one warning is silenced.
warnings.filterwarnings("ignore", message=r"variable '_(matvec|dilated|head)_acc_impl__locals",
                        category=NumbaIRAssumptionWarning)


@njit(inline="always", **JIT)
def _pack_pairs(xp, at, xv, col0, pairs, relu):
    """xp[at + k] = the bf16 pair (xv[col0 + 2k], xv[col0 + 2k + 1]) for k < pairs; ``relu``: max(x, 0) first
    (a NaN stays NaN)."""
    zero = np.float32(0.0)
    for k in range(pairs):
        a, b = xv[col0 + 2 * k], xv[col0 + 2 * k + 1]
        if relu:
            a, b = max(a, zero), max(b, zero)
        xp[at + k] = bf16_pair(a, b)


def matvec_acc(h, w, l, row0, x, n_in, n_out, vidx, wbuf):
    """For each voice v in ``vidx``: h[v, :n_out] += x[v, :n_in] @ W_l[row0:row0 + n_in] (see :func:`_acc`).

    Packed weights: ``n_out`` must be the matrix's whole output width and ``row0``, ``n_in`` even
    (bf16 pairs), or ``row0`` 0 and ``n_in`` the whole input width (int8 quads, whose scale rows
    follow the last input row); the model shapes guarantee it (see the modules' shape_error).
    """


@overload(matvec_acc, inline="always")
def _matvec_acc_impl(h, w, l, row0, x, n_in, n_out, vidx, wbuf):
    if w.dtype == types.int32:
        def packed8(h, w, l, row0, x, n_in, n_out, vidx, wbuf):
            u8 = wbuf[0].view(np.uint8)
            for j in range(vidx.shape[0]):
                v = vidx[j]
                int8dot.quantized_dot(h[v], w[l], x[v], 0, n_in, n_out // LANES, ZP_SIGNED, u8)
        return packed8
    if w.dtype != types.uint32:
        return lambda h, w, l, row0, x, n_in, n_out, vidx, wbuf: _acc(h, w, l, row0, x, n_in, n_out, vidx, wbuf)

    def packed(h, w, l, row0, x, n_in, n_out, vidx, wbuf):
        xp = wbuf[0]
        pairs = n_in >> 1
        for j in range(vidx.shape[0]):
            v = vidx[j]
            _pack_pairs(xp, 0, x[v], 0, pairs, False)
            dot_acc(h[v], 0, w[l], (row0 >> 1) * n_out, xp, pairs, n_out // LANES)
    return packed


def dilated_acc(h, w, l, xa, xb, n_half, n_out, vidx, wbuf):
    """For each voice v in ``vidx``: h[v, :n_out] += [xa[v, :n_half], xb[v, :n_half]] @ W_l (both taps).

    float32/int8/bf16: two :func:`_acc` passes (rows 0.. and n_half..); bf16dot: both halves packed
    side by side and one dot-product pass over all 2 * n_half rows; int8dot: the two taps as two
    matrices (w[l, 0], w[l, 1]), each tap's activations quantised with their own scale.
    """


@overload(dilated_acc, inline="always")
def _dilated_acc_impl(h, w, l, xa, xb, n_half, n_out, vidx, wbuf):
    if w.dtype == types.int32:
        def packed8(h, w, l, xa, xb, n_half, n_out, vidx, wbuf):
            u8 = wbuf[0].view(np.uint8)
            n_ob = n_out // LANES
            for j in range(vidx.shape[0]):
                v = vidx[j]
                int8dot.quantized_dot(h[v], w[l, 0], xa[v], 0, n_half, n_ob, ZP_SIGNED, u8)
                int8dot.quantized_dot(h[v], w[l, 1], xb[v], 0, n_half, n_ob, ZP_SIGNED, u8)
        return packed8
    if w.dtype != types.uint32:
        def two(h, w, l, xa, xb, n_half, n_out, vidx, wbuf):
            _acc(h, w, l, 0, xa, n_half, n_out, vidx, wbuf)
            _acc(h, w, l, n_half, xb, n_half, n_out, vidx, wbuf)
        return two

    def packed(h, w, l, xa, xb, n_half, n_out, vidx, wbuf):
        xp = wbuf[0]
        pairs = n_half >> 1
        for j in range(vidx.shape[0]):
            v = vidx[j]
            _pack_pairs(xp, 0, xa[v], 0, pairs, False)
            _pack_pairs(xp, pairs, xb[v], 0, pairs, False)
            dot_acc(h[v], 0, w[l], 0, xp, 2 * pairs, n_out // LANES)
    return packed


def head_acc(h, w, x, col0, n_in, n_out, vidx, wbuf):
    """For each voice v in ``vidx``: h[v, :n_out] += relu(x[v, col0:col0 + n_in]) @ W (see :func:`_acc_relu`)."""


@overload(head_acc, inline="always")
def _head_acc_impl(h, w, x, col0, n_in, n_out, vidx, wbuf):
    if w.dtype == types.int32:
        def packed8(h, w, x, col0, n_in, n_out, vidx, wbuf):
            u8 = wbuf[0].view(np.uint8)
            for j in range(vidx.shape[0]):
                v = vidx[j]
                int8dot.quantized_dot(h[v], w, x[v], col0, n_in, n_out // LANES, ZP_RELU, u8)
        return packed8
    if w.dtype != types.uint32:
        return lambda h, w, x, col0, n_in, n_out, vidx, wbuf: _acc_relu(h, w, x, col0, n_in, n_out, vidx)

    def packed(h, w, x, col0, n_in, n_out, vidx, wbuf):
        xp = wbuf[0]
        pairs = n_in >> 1
        for j in range(vidx.shape[0]):
            v = vidx[j]
            _pack_pairs(xp, 0, x[v], col0, pairs, True)
            dot_acc(h[v], 0, w, 0, xp, pairs, n_out // LANES)
    return packed


#: 2^-k for k = 0..127 (exact float32 powers of two)
POW2_NEG = np.asarray([2.0 ** -k for k in range(128)], dtype=np.float32)
#: 2^f on (-1, 0], degree-6 polynomial fitted for relative error (max 2.1e-7 in float32)
EXP2_POLY = (0.00010845304626371061, 0.0012728723516678697, 0.009576802343243578, 0.05548930914262167,
             0.24022393909849402, 0.6931470101900522, 0.9999999981040884)
LOG2E = 1.4426950408889634

# Strict IEEE (no fast-math): the TorchScript engine repeats these exact float32 operations,
# so both engines draw the same sample from the same logits and uniform.
STRICT = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)


@njit(**STRICT)
def sample_from_logits(logits, temperature, u, probs, pow2, floor=0.0):
    """Inverse-CDF sample of softmax(logits / temperature) with uniform ``u`` in [0, 1).

    exp is 2^(y) = 2^-k * poly(f) in float32 (vectorisable; relative error 2e-7); the
    CDF accumulates in float64 and is stored as float32 partial sums, like torch.cumsum.
    ``temperature <= 0`` is argmax. ``probs`` is (256,) float32 scratch; ``pow2`` is POW2_NEG.
    ``floor`` > 0: LPCNet's probability floor, every class's probability lowered by ``floor`` (and
    at least 0) before the draw, so the improbable tail, a noise floor when drawn, is never drawn.
    Returns -1 if the logits hold NaN/Inf.
    """
    n = logits.shape[0]
    return sample_row(logits.reshape((1, n)), 0, temperature, u, probs.reshape((1, n)), pow2, floor)


#: order-preserving int32 keys of +Inf / -Inf: a key outside [KEY_NEG_INF, KEY_POS_INF] is a NaN
KEY_POS_INF = 0x7F800000
KEY_NEG_INF = -0x7F800001


@njit(inline="always", **STRICT)
def _key(x):
    """An int32 ordered like the float32 ``x`` (-0 just below +0; NaNs outside the infinities)."""
    b = _f32_bits(x)
    return b if b >= 0 else b ^ np.int32(0x7FFFFFFF)


@njit(**STRICT)
def sample_row(logits, v, temperature, u, probs, pow2, floor):
    """:func:`sample_from_logits` of row ``v`` of (V, 256) ``logits`` with (V, 256) ``probs`` scratch (no views).

    Written so the loops vectorise without changing a single result: the max via
    integer keys (the NaN case takes the plain loop), 2^-k built from its bits
    (the same float32 as ``pow2[k]``), and a binary search of the CDF.
    """
    n = logits.shape[1]
    kmax = kmin = _key(logits[v, 0])
    for k in range(1, n):
        b = _key(logits[v, k])
        kmax = max(kmax, b)
        kmin = min(kmin, b)
    if kmax <= KEY_POS_INF and kmin >= KEY_NEG_INF:  # no NaN: the first index holding the max
        mk = _f32_from_bits(kmax if kmax >= 0 else kmax ^ np.int32(0x7FFFFFFF))
        arg = 0
        while not logits[v, arg] == mk:
            arg += 1
        m = logits[v, arg]
    else:  # a NaN: first strict maximum, NaNs skipped unless at index 0
        m = logits[v, 0]
        arg = 0
        for k in range(1, n):
            if logits[v, k] > m:
                m = logits[v, k]
                arg = k
    if not np.isfinite(m):
        return -1
    if temperature <= 0.0:
        return arg
    scale = np.float32(LOG2E / temperature)
    c6, c5, c4, c3, c2, c1, c0 = (np.float32(EXP2_POLY[0]), np.float32(EXP2_POLY[1]), np.float32(EXP2_POLY[2]),
                                  np.float32(EXP2_POLY[3]), np.float32(EXP2_POLY[4]), np.float32(EXP2_POLY[5]),
                                  np.float32(EXP2_POLY[6]))
    for k in range(n):
        y = (logits[v, k] - m) * scale
        if y < np.float32(-126.0):
            y = np.float32(-126.0)
        ki = min(max(np.int32(-y), np.int32(0)), np.int32(127))  # in range even for a NaN logit
        f = y + np.float32(ki)
        p = c6 * f + c5
        p = p * f + c4
        p = p * f + c3
        p = p * f + c2
        p = p * f + c1
        p = p * f + c0
        probs[v, k] = p * _f32_from_bits((np.int32(127) - ki) << np.int32(23))  # == pow2[ki] (ki <= 126)
    if floor > 0.0:  # p_k - floor of the normalised probabilities: the unnormalised ones less floor x their sum
        c = 0.0
        for k in range(n):
            c += np.float64(probs[v, k])
        thr = np.float32(floor * c)
        for k in range(n):
            probs[v, k] = max(probs[v, k] - thr, np.float32(0.0))
    c = 0.0
    for k in range(n):
        c += np.float64(probs[v, k])
        probs[v, k] = np.float32(c)
    if not c == c:
        return -1
    target = u * np.float64(probs[v, n - 1])
    # first k with cdf[k] > target; the cdf is non-decreasing (partial sums of terms >= 0, rounded
    # monotonically), so a binary search finds the same k as a linear scan
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if np.float64(probs[v, mid]) > target:
            hi = mid
        else:
            lo = mid + 1
    return lo if lo < n else arg


#: the source filter's arithmetic is training's, bit for bit: no fast-math, said explicitly (a callee otherwise
#: inherits the calling kernel's flags, and contracts multiply-adds into FMAs)
SF_STRICT = dict(STRICT, fastmath=False)


@njit(**SF_STRICT)
def sf_predict(a, ring, ints, fs):
    """A source-filter step's short-term prediction p_t from the filter ring (kept in ``fs[2]`` for
    :func:`sf_emit`); returns the network's PRED input, compand(p_t). Strict float64 (no fast-math), as
    realtime.model.source_filter.teacher_forced computes it in training."""
    p = sf.predict(a, ring, ints[2])
    fs[2] = p
    return sf.compand(p)


@njit(**SF_STRICT)
def sf_emit(k, decode, g, ring, ints, fs):
    """The step's excitation class ``k`` (< 0: none, the logits were not finite) through the filter: s = p +
    max(g, GAIN_FLOOR) EXC_SCALE decode(k) into the ring; returns (the played sample, de-emphasised, float32; the
    class of s, the next input)."""
    p = fs[2]
    s = p
    if k >= 0:
        s += max(g, sf.GAIN_FLOOR) * sf.EXC_SCALE * np.float64(decode[k])
    pos = (ints[2] + 1) & (ring.shape[0] - 1)
    ring[pos] = s
    ints[2] = pos
    x = s + sf.EMPHASIS * fs[3]
    fs[3] = x
    return np.float32(x), sf.encode1(s)


#: voice index list of the single-voice wrapper (a read-only constant, like the engines' index lists)
_VOICE0 = np.zeros(1, np.int64)


@njit(**KERNEL)
def generate_voices(n, w, st, vidx, uniforms, forced, out, logits_out):
    """Generate ``n`` samples for each voice ``v`` in ``vidx`` into ``out[v, :n]`` (float32, decoded mu-law).

    ``w``: weights tuple (embed, w_dil, s_dil, w_loc, loc_idx, w_rs, s_rs, b_res,
    b_skip, w_out1, b_out1, w_out2, b_out2, decode, dilations, q_off,
    sample_rate, pow2). ``w_dil`` (L, 2R, 2R) and ``w_rs`` (L, R, R+S) are
    float32, int8 or uint16 (bfloat16); ``s_dil`` (L, 2R) / ``s_rs`` (L, R+S)
    are the int8 per-output-column scales, or (L, 0) for unscaled weights.
    ``st``: state tuple, every array with a leading voice axis: (queues,
    q_pos, bias, bias_target, bias_step, ints, ctrl, temperature, hist, sf_f, sf_i, sf_ring, feats, h, z,
    acc, o1, logits, probs, xq, tmp, wb, sf_a, sf_g), where ints[v] = [next input class, glide
    samples left, NaN count, lag ring position] and hist[v] the ring of past inputs the
    lag channel reads (realtime.model.local_cond.push_lag); feats..wb are scratch (wb: (V, 4, max(2R, R+S))).
    Packed weights (bf16dot, int8dot) and their
    shapes: see realtime.engine.numba_engine.kernel_weights.
    ``uniforms`` (V, n); ``forced`` (V, n) int64 teacher-forces the inputs when
    its second axis is non-empty; ``logits_out`` (V, n, 256) receives the
    logits when its second axis is non-empty. Voices not in ``vidx`` are not
    touched; each voice's numbers do not depend on the others.
    A source-filter model (realtime.model.source_filter) has ``sf_a`` (V, n, ORDER + 1) float64, each sample's LPC
    row, and ``sf_g`` (V, n) its excitation gain (realtime.engine.sf_tracks.play_tracks), and its filter state in
    ``sf_f`` (V, 4), ``sf_i`` (V, 3), ``sf_ring`` (V, RING) (realtime.engine.base.allocate_state); otherwise
    ``sf_a`` has no samples (V, 0, ORDER + 1) and those go unread. Each step then reads the prediction p_t as its
    PRED input, its sampled class k is the excitation e = g EXC_SCALE decode(k), the step plays the de-emphasised
    s = p + e and the next input is the class of s (:func:`sf_predict`, :func:`sf_emit`); ``forced`` then forces
    the excitation's class (each step's logits still from the model's own inputs).
    Returns the number of samples whose logits were not finite.
    """
    (embed, w_dil, s_dil, w_loc, loc_idx, w_rs, s_rs, b_res, b_skip, w_out1, b_out1, w_out2, b_out2,
     decode, dilations, q_off, sample_rate, pow2) = w
    (queues, q_pos, bias, bias_target, bias_step, ints, ctrl, temperature, hist, sf_f, sf_i, sf_ring,
     feats, h, z, acc, o1, logits, probs, xq, tmp, wb, sf_a, sf_g) = st
    nv = vidx.shape[0]
    n_layers = w_dil.shape[0]
    R = embed.shape[1]
    R2 = 2 * R
    RS = acc.shape[1]
    S = RS - R
    C = loc_idx.shape[0]
    Q = logits.shape[1]
    source_filter = sf_a.shape[1] > 0
    forcing = forced.shape[1] > 0 and not source_filter  # a source filter's forced classes are its excitation's
    forcing_exc = forced.shape[1] > 0 and source_filter
    keep_logits = logits_out.shape[1] > 0
    scaled = s_dil.shape[1] > 0
    hd = tmp if scaled else h  # int8: accumulate w8 @ x unscaled into tmp, then h += scale * tmp
    ar = tmp if scaled else acc
    wbuf = wb[vidx[0]] if nv > 0 else wb[0]  # this voice group's staging rows
    bad = 0
    for j in range(nv):
        v = vidx[j]
        fill_local(ctrl[v], sample_rate, feats[v, :n])
    for t in range(n):
        for j in range(nv):
            v = vidx[j]
            if forcing:
                ints[v, 0] = forced[v, t]
            # conditioning glide (per-layer bias, float32)
            if ints[v, 1] > 0:
                ints[v, 1] -= 1
                for l in range(n_layers):
                    for o in range(R2):
                        bias[v, l, o] = bias_target[v, l, o] if ints[v, 1] == 0 else bias[v, l, o] + bias_step[v, l, o]
            inp = ints[v, 0]
            if source_filter:
                feats[v, t, PRED] = sf_predict(sf_a[v, t], sf_ring[v], sf_i[v], sf_f[v])
            pos, lag, lag2, lagavg = push_lag(hist[v], ints[v, 3], inp, feats[v, t, PERIOD])
            ints[v, 3] = pos
            feats[v, t, LAG] = lag
            feats[v, t, LAG2] = lag2
            feats[v, t, LAGAVG] = lagavg
            for o in range(R):
                acc[v, o] = embed[inp, o]
            for o in range(S):
                acc[v, R + o] = b_skip[o]
        for l in range(n_layers):
            for j in range(nv):
                v = vidx[j]
                hv = h[v]
                bl = bias[v, l]
                for o in range(R2):
                    hv[o] = bl[o]
                for c in range(C):
                    fc = feats[v, t, loc_idx[c]]
                    wc = w_loc[l, c]
                    for o in range(R2):
                        hv[o] += wc[o] * fc
                q = queues[v, q_off[l] + q_pos[v, l]]
                xv = xq[v]
                for i in range(R):
                    xv[i] = q[i]
                if scaled:
                    tv = tmp[v]
                    for o in range(R2):
                        tv[o] = 0
            # taps x(t - d) from the queue and x(t), the residual stream
            dilated_acc(hd, w_dil, l, xq, acc, R, R2, vidx, wbuf)
            br = b_res[l]
            for j in range(nv):
                v = vidx[j]
                av = acc[v]
                hv = h[v]
                q = queues[v, q_off[l] + q_pos[v, l]]
                for i in range(R):
                    q[i] = av[i]
                p = q_pos[v, l] + 1
                q_pos[v, l] = 0 if p >= dilations[l] else p
                if scaled:
                    sd = s_dil[l]
                    tv = tmp[v]
                    for o in range(R2):
                        hv[o] += sd[o] * tv[o]
                    for o in range(RS):
                        tv[o] = 0
                zv = z[v]
                for o in range(R):
                    th = fast_tanh(hv[o])
                    sg = np.float32(0.5) + np.float32(0.5) * fast_tanh(np.float32(0.5) * hv[R + o])
                    zv[o] = th * sg
                for o in range(R):
                    av[o] += br[o]
            matvec_acc(ar, w_rs, l, 0, z, R, RS, vidx, wbuf)
            if scaled:
                sr = s_rs[l]
                for j in range(nv):
                    v = vidx[j]
                    av = acc[v]
                    tv = tmp[v]
                    for o in range(RS):
                        av[o] += sr[o] * tv[o]
        # output head: relu -> 1x1 -> relu -> 1x1 (each weight row read once for all voices)
        for j in range(nv):
            v = vidx[j]
            for o in range(S):
                o1[v, o] = b_out1[o]
            for o in range(Q):
                logits[v, o] = b_out2[o]
        head_acc(o1, w_out1, acc, R, S, S, vidx, wbuf)
        head_acc(logits, w_out2, o1, 0, S, Q, vidx, wbuf)
        for j in range(nv):
            v = vidx[j]
            if keep_logits:
                for o in range(Q):
                    logits_out[v, t, o] = logits[v, o]
            k = forced[v, t] if forcing_exc else sample_row(logits, v, temperature[v, 0], uniforms[v, t], probs, pow2,
                                                            temperature[v, 1])
            if source_filter:
                if k < 0:
                    bad += 1
                    ints[v, 2] += 1
                x, k = sf_emit(k, decode, sf_g[v, t], sf_ring[v], sf_i[v], sf_f[v])
                out[v, t] = x
            elif k < 0:
                bad += 1
                ints[v, 2] += 1
                k = ints[v, 0]  # hold the last value; the watchdog sees the count
                out[v, t] = decode[k]
            elif ctrl[v, LOOP_A] > 0.0:  # the loop low-pass: heard and fed back filtered
                f, k = loop_step(ctrl[v], np.float64(decode[k]))
                out[v, t] = f
            else:
                out[v, t] = decode[k]
            ints[v, 0] = k
    return bad


@njit(**KERNEL)
def generate_block(n, w, st, uniforms, forced, out, logits_out):
    """Single-voice :func:`generate_voices`: the same tuples without the voice axis.

    ``st`` = (queues, q_pos, bias, bias_target, bias_step, ints, ctrl,
    temperature, hist, sf_f, sf_i, sf_ring, feats, h, z, acc, o1, logits, probs, xq, tmp, wb, sf_a, sf_g);
    ``uniforms``,
    ``out`` (n,); ``forced`` (n,) or empty; ``logits_out`` (n, 256) or empty.
    All contiguous. Returns the number of samples whose logits were not finite.
    """
    (queues, q_pos, bias, bias_target, bias_step, ints, ctrl, temperature, hist, sf_f, sf_i, sf_ring,
     feats, h, z, acc, o1, logits, probs, xq, tmp, wb, sf_a, sf_g) = st
    st1 = (queues.reshape((1,) + queues.shape), q_pos.reshape((1,) + q_pos.shape),
           bias.reshape((1,) + bias.shape), bias_target.reshape((1,) + bias_target.shape),
           bias_step.reshape((1,) + bias_step.shape), ints.reshape((1,) + ints.shape),
           ctrl.reshape((1,) + ctrl.shape), temperature.reshape((1,) + temperature.shape),
           hist.reshape((1,) + hist.shape), sf_f.reshape((1,) + sf_f.shape), sf_i.reshape((1,) + sf_i.shape),
           sf_ring.reshape((1,) + sf_ring.shape), feats.reshape((1,) + feats.shape), h.reshape((1,) + h.shape),
           z.reshape((1,) + z.shape),
           acc.reshape((1,) + acc.shape), o1.reshape((1,) + o1.shape), logits.reshape((1,) + logits.shape),
           probs.reshape((1,) + probs.shape), xq.reshape((1,) + xq.shape), tmp.reshape((1,) + tmp.shape),
           wb.reshape((1,) + wb.shape), sf_a.reshape((1,) + sf_a.shape), sf_g.reshape((1,) + sf_g.shape))
    return generate_voices(n, w, st1, _VOICE0, uniforms.reshape((1,) + uniforms.shape),
                           forced.reshape((1,) + forced.shape), out.reshape((1,) + out.shape),
                           logits_out.reshape((1,) + logits_out.shape))


@njit(parallel=True, nogil=True, cache=True)
def generate_groups(n, w, st, groups, counts, uniforms, forced, out, logits_out):
    """:func:`generate_voices` for each voice group ``groups[g, :counts[g]]``, the groups in parallel (prange).

    The groups must be disjoint (each voice's state and scratch rows are touched by one group only).
    """
    bad = 0
    for g in prange(groups.shape[0]):
        bad += generate_voices(n, w, st, groups[g, :counts[g]], uniforms, forced, out, logits_out)
    return bad
