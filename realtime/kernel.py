"""The Numba CPU kernel: Fast WaveNet generation of a whole block per call.

Thread: generator (releases the GIL). No allocation inside: every buffer is
preallocated by :class:`realtime.numba_engine.NumbaEngine` and passed in.

Per sample and layer the dilated convolution needs two taps, x(t-d) and x(t);
x(t-d) comes from the layer's ring-buffer queue (d rows of R floats), and x(t)
replaces it there. Weights are float32 (in, out) so inner loops are contiguous
axpy loops over the outputs, which LLVM vectorises.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from models.local_cond import fill as fill_local

# fast-math without nnan/ninf: NaN and Inf must stay visible to the watchdog.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)


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


@njit(inline="always", **JIT)
def _acc(h, w, row0, x, n_out):
    """h[:n_out] += sum_i w[row0 + i, :n_out] * x[i], four input rows per pass (fewer loads/stores of h)."""
    n_in = x.shape[0]
    i = 0
    while i + 4 <= n_in:
        a0, a1, a2, a3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        w0, w1, w2, w3 = w[row0 + i], w[row0 + i + 1], w[row0 + i + 2], w[row0 + i + 3]
        for o in range(n_out):
            h[o] += (w0[o] * a0 + w1[o] * a1) + (w2[o] * a2 + w3[o] * a3)
        i += 4
    while i < n_in:
        a0 = x[i]
        w0 = w[row0 + i]
        for o in range(n_out):
            h[o] += w0[o] * a0
        i += 1


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
def sample_from_logits(logits, temperature, u, probs, pow2):
    """Inverse-CDF sample of softmax(logits / temperature) with uniform ``u`` in [0, 1).

    exp is 2^(y) = 2^-k * poly(f) in float32 (vectorisable; relative error 2e-7); the
    CDF accumulates in float64 and is stored as float32 partial sums, like torch.cumsum.
    ``temperature <= 0`` is argmax. ``probs`` is (256,) float32 scratch; ``pow2`` is POW2_NEG.
    Returns -1 if the logits hold NaN/Inf.
    """
    n = logits.shape[0]
    m = logits[0]
    arg = 0
    for k in range(1, n):
        if logits[k] > m:
            m = logits[k]
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
        y = (logits[k] - m) * scale
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
        probs[k] = p * pow2[ki]
    c = 0.0
    for k in range(n):
        c += np.float64(probs[k])
        probs[k] = np.float32(c)
    if not c == c:
        return -1
    target = u * np.float64(probs[n - 1])
    for k in range(n):
        if np.float64(probs[k]) > target:
            return k
    return arg


@njit(**JIT)
def generate_block(n, w, st, uniforms, forced, out, logits_out):
    """Generate ``n`` samples into ``out`` (float32, decoded mu-law).

    ``w``: weights tuple (embed, w_dil, w_loc, loc_idx, w_rs, b_res, b_skip,
    w_out1, b_out1, w_out2, b_out2, decode, dilations, q_off, sample_rate, pow2).
    ``st``: state tuple (queues, q_pos, bias, bias_target, bias_step, ints,
    ctrl, temperature, feats, h, z, acc, o1, logits, probs), where ints =
    [next input class, glide samples left, NaN count].
    ``forced`` (n,) int64 teacher-forces the inputs when non-empty.
    ``logits_out`` (n, 256) receives the logits when non-empty.
    Returns the number of samples whose logits were not finite.
    """
    (embed, w_dil, w_loc, loc_idx, w_rs, b_res, b_skip, w_out1, b_out1, w_out2, b_out2,
     decode, dilations, q_off, sample_rate, pow2) = w
    (queues, q_pos, bias, bias_target, bias_step, ints, ctrl, temperature,
     feats, h, z, acc, o1, logits, probs) = st
    n_layers = w_dil.shape[0]
    R = embed.shape[1]
    R2 = 2 * R
    RS = acc.shape[0]
    S = RS - R
    C = loc_idx.shape[0]
    Q = w_out2.shape[1]
    forcing = forced.shape[0] > 0
    keep_logits = logits_out.shape[0] > 0
    temp = temperature[0]
    bad = 0
    fill_local(ctrl, sample_rate, feats[:n])
    inp = ints[0]
    for t in range(n):
        if forcing:
            inp = forced[t]
        # conditioning glide (per-layer bias, float32)
        if ints[1] > 0:
            ints[1] -= 1
            if ints[1] == 0:
                bias[:, :] = bias_target
            else:
                for l in range(n_layers):
                    for o in range(R2):
                        bias[l, o] += bias_step[l, o]
        for o in range(R):
            acc[o] = embed[inp, o]
        for o in range(S):
            acc[R + o] = b_skip[o]
        for l in range(n_layers):
            wl = w_dil[l]
            bl = bias[l]
            for o in range(R2):
                h[o] = bl[o]
            for c in range(C):
                fc = feats[t, loc_idx[c]]
                wc = w_loc[l, c]
                for o in range(R2):
                    h[o] += wc[o] * fc
            row = q_off[l] + q_pos[l]
            q = queues[row]
            _acc(h, wl, 0, q, R2)
            x = acc[:R]
            _acc(h, wl, R, x, R2)
            for i in range(R):
                q[i] = x[i]
            p = q_pos[l] + 1
            q_pos[l] = 0 if p >= dilations[l] else p
            for o in range(R):
                th = fast_tanh(h[o])
                sg = np.float32(0.5) + np.float32(0.5) * fast_tanh(np.float32(0.5) * h[R + o])
                z[o] = th * sg
            br = b_res[l]
            for o in range(R):
                acc[o] += br[o]
            _acc(acc, w_rs[l], 0, z, RS)
        # output head: relu -> 1x1 -> relu -> 1x1
        for o in range(S):
            o1[o] = b_out1[o]
        for i in range(S):
            s = acc[R + i]
            if s > 0:
                wi = w_out1[i]
                for o in range(S):
                    o1[o] += wi[o] * s
        for o in range(Q):
            logits[o] = b_out2[o]
        for i in range(S):
            s = o1[i]
            if s > 0:
                wi = w_out2[i]
                for o in range(Q):
                    logits[o] += wi[o] * s
        if keep_logits:
            for o in range(Q):
                logits_out[t, o] = logits[o]
        k = sample_from_logits(logits, temp, uniforms[t], probs, pow2)
        if k < 0:
            bad += 1
            k = inp  # hold the last value; the watchdog sees the count
        out[t] = decode[k]
        inp = k
    ints[0] = inp
    ints[2] += bad
    return bad
