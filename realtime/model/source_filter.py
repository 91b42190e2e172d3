"""Source-filter arithmetic that training and the engines share bit for bit: pre-emphasis, linear prediction
coefficients (LPC) <-> line spectral frequencies (LSF), their interpolation, the short-term prediction and the
gain-normalised excitation.

The source-filter model (LPCNet's structure): on the pre-emphasised signal s, each sample is a prediction
from the last ``ORDER`` samples plus an excitation, s_t = p_t + e_t with p_t = -sum_k a_k s_(t-k), where
A(z) = 1 + sum_k a_k z^-k is the frame's LPC polynomial (librosa.lpc's sign convention). The network models
e_t / g (g: the frame's excitation RMS); the spectral envelope (A) and the level (g) come from the envelope
bank, driven by the conditioning, so the network cannot drift away from them.

Frames carry LSFs (ascending angles in (0, pi), radians), which interpolate stably: any monotone LSF vector
gives a minimum-phase A(z). Units: samples, radians. Pure functions; the per-sample ones compile with Numba.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

#: LPC order (taps of the short-term predictor)
ORDER = 16
#: pre-emphasis coefficient: x_t - EMPHASIS * x_(t-1) before analysis and prediction; its inverse after
EMPHASIS = 0.85
#: the smallest distance between neighbouring LSFs (radians) kept when LSFs are interpolated or read from a bank
LSF_MIN_GAP = 1e-3


def pre_emphasis(x: np.ndarray, coeff: float = EMPHASIS, prev: float = 0.0) -> np.ndarray:
    """y_t = x_t - coeff * x_(t-1) (float64); ``prev``: the sample before ``x[0]``."""
    x = np.asarray(x, np.float64)
    y = x.copy()
    y[0] -= coeff * prev
    y[1:] -= coeff * x[:-1]
    return y


def de_emphasis(y: np.ndarray, coeff: float = EMPHASIS, prev: float = 0.0) -> np.ndarray:
    """The inverse of :func:`pre_emphasis`: x_t = y_t + coeff * x_(t-1); ``prev``: the output before ``y[0]``."""
    return _de_emphasis(np.asarray(y, np.float64), float(coeff), float(prev))


@njit(cache=True, nogil=True)
def _de_emphasis(y: np.ndarray, coeff: float, prev: float) -> np.ndarray:
    out = np.empty_like(y)
    for t in range(y.shape[0]):
        prev = y[t] + coeff * prev
        out[t] = prev
    return out


def lpc_to_lsf(a: np.ndarray) -> np.ndarray:
    """LPC polynomial ``a`` = [1, a_1 .. a_p] (p even, minimum phase) -> its p LSFs, ascending, in (0, pi).

    P(z) = A(z) + z^-(p+1) A(1/z) and Q(z) = A(z) - z^-(p+1) A(1/z) have their roots on the unit circle,
    interlaced; the LSFs are their angles (P's trivial root at z = -1 and Q's at z = 1 left out)."""
    a = np.asarray(a, np.float64)
    p = a.shape[0] - 1
    if p % 2:
        raise ValueError(f"LPC order {p}: must be even")
    ext = np.append(a, 0.0)
    rev = ext[::-1]
    P, Q = ext + rev, ext - rev
    P = np.polydiv(P, [1.0, 1.0])[0]  # drop the root at z = -1
    Q = np.polydiv(Q, [1.0, -1.0])[0]  # and at z = 1
    w = np.concatenate([np.angle(np.roots(P)), np.angle(np.roots(Q))])
    w = np.sort(w[w > 0])
    if w.shape[0] != p:
        raise ValueError(f"LPC polynomial not minimum phase: {w.shape[0]} LSFs for order {p}")
    return w


@njit(cache=True, nogil=True)
def lsf_to_lpc_into(lsf: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """LSFs (p ascending angles, p even) -> LPC [1, a_1 .. a_p] written into ``out`` (p + 1,). ``work``: scratch of
    shape (2, p + 2). The odd-numbered LSFs (1st, 3rd, ..) are P's roots, the even-numbered Q's; A = (P + Q) / 2.
    No allocation: the engines call it at every envelope update."""
    p = lsf.shape[0]
    m = p // 2
    for j in range(2):  # j = 0: P's sections, j = 1: Q's
        poly = work[j]
        for i in range(p + 2):
            poly[i] = 0.0
        poly[0] = 1.0
        n = 0  # degree so far
        for i in range(m):
            c = -2.0 * np.cos(lsf[2 * i + j])
            # multiply by (1 + c z^-1 + z^-2)
            for k in range(n + 2, 1, -1):
                poly[k] = poly[k] + c * poly[k - 1] + poly[k - 2]
            poly[1] = poly[1] + c * poly[0]
            n += 2
    # P(z) * (1 + z^-1), Q(z) * (1 - z^-1), summed and halved
    out[0] = 1.0
    for k in range(1, p + 1):
        pk = work[0, k] + work[0, k - 1]
        qk = work[1, k] - work[1, k - 1]
        out[k] = 0.5 * (pk + qk)


def lsf_to_lpc(lsf: np.ndarray) -> np.ndarray:
    """LSFs (ascending, p even) -> LPC polynomial [1, a_1 .. a_p] (float64)."""
    lsf = np.asarray(lsf, np.float64)
    out = np.empty(lsf.shape[0] + 1)
    lsf_to_lpc_into(lsf, out, np.empty((2, lsf.shape[0] + 2)))
    return out


@njit(cache=True, nogil=True)
def tidy_lsf(lsf: np.ndarray) -> None:
    """Keep LSFs ascending within (LSF_MIN_GAP, pi - LSF_MIN_GAP) with at least LSF_MIN_GAP between neighbours
    (in place): the filter they make is then minimum phase."""
    p = lsf.shape[0]
    lo = LSF_MIN_GAP
    for i in range(p):
        if lsf[i] < lo:
            lsf[i] = lo
        lo = lsf[i] + LSF_MIN_GAP
    hi = np.pi - LSF_MIN_GAP
    for i in range(p - 1, -1, -1):
        if lsf[i] > hi:
            lsf[i] = hi
        hi = lsf[i] - LSF_MIN_GAP


@njit(cache=True, nogil=True, fastmath=False)  # explicit: a callee inherits a fast-math caller's flags otherwise
def predict(a: np.ndarray, hist: np.ndarray, pos: int) -> float:
    """The short-term prediction p_t = -sum_k a_k s_(t-k) from ring ``hist`` (length a power of two >= order + 1)
    whose newest sample s_(t-1) sits at ``pos``."""
    mask = hist.shape[0] - 1
    acc = 0.0
    for k in range(1, a.shape[0]):
        acc -= a[k] * hist[(pos - k + 1) & mask]
    return acc


def predictions(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    """p_t for every sample of ``s`` (T,), each with its own LPC row ``a`` (T, p + 1); samples before s[0] are 0."""
    s = np.asarray(s, np.float64)
    a = np.asarray(a, np.float64)
    p = a.shape[1] - 1
    padded = np.concatenate([np.zeros(p), s])
    # lagged[t, k - 1] = s_(t-k)
    idx = np.arange(s.shape[0])[:, None] + p - np.arange(1, p + 1)[None, :]
    return -(a[:, 1:] * padded[idx]).sum(axis=1)


#: the excitation's scale in the network's output classes: class k means e = g * EXC_SCALE * mulaw.decode(k), g the
#: frame's excitation RMS (a pulse's peak is sqrt(period) times its RMS: 17 for a 300-sample period; 32 keeps
#: those unclipped, and 8-bit mu-law still resolves the RMS level to about 5 %)
EXC_SCALE = 32.0
#: the smallest frame gain the excitation is normalised by (silence before and after a note)
GAIN_FLOOR = 1e-4
_LOG1P_MU = math.log1p(255.0)


@njit(cache=True, nogil=True, inline="always", fastmath=False)
def encode1(x: float) -> int:
    """One float (clipped to [-1, 1]) -> its 8-bit mu-law class: realtime.model.mulaw.encode, bit for bit."""
    x = min(max(x, -1.0), 1.0)
    y = math.copysign(math.log1p(255.0 * abs(x)) / _LOG1P_MU, x) if x != 0.0 else 0.0
    k = np.rint((y + 1.0) * 0.5 * 255.0)
    return int(min(max(k, 0.0), 255.0))


@njit(cache=True, nogil=True, inline="always", fastmath=False)
def compand(x: float) -> np.float32:
    """The prediction channel's value: x (clipped to [-1, 1]) mu-law companded, -1..1 (float32), as the lag channel
    carries a class but without its rounding."""
    x = min(max(x, -1.0), 1.0)
    return np.float32(math.copysign(math.log1p(255.0 * abs(x)) / _LOG1P_MU, x))


@njit(cache=True, nogil=True)
def teacher_forced(s: np.ndarray, a: np.ndarray, g: np.ndarray, jitter: np.ndarray, decode_table: np.ndarray,
                   inputs: np.ndarray, pred: np.ndarray, targets: np.ndarray) -> None:
    """A training crop of the source-filter network, with LPCNet's noise injected inside the prediction loop.

    ``s`` (T + P,) float64: the clean pre-emphasised note, s[P + t] being step t's target sample (the first P
    samples: the history before step 0); ``a`` (T, P + 1) each step's LPC row, ``g`` (T,) its frame gain;
    ``jitter`` (T,) int64 classes added to each drawn excitation class (the noise; 0: none).
    Writes per step t: ``targets[t]`` = the class of e_t / (g_t EXC_SCALE), e_t = s_t - p_t, where the prediction
    p_t = -sum_k a_tk sn_(t-k) reads the signal sn the network would have played: sn_t = p_t + g_t EXC_SCALE
    decode(target + jitter) (so sn = s + the injected noise + the excitation's quantisation: the target is always
    taken against the clean s, so the network learns to steer back to it); where the target clips (class 0 or 255:
    steering back would take more than the excitation's range, and a resonant envelope would then run away), sn
    resynchronises to s. ``inputs[t]`` = the class of sn_(t-1);
    ``pred[t]`` = compand(p_t). Both engines compute the same from their own draws. Thread: training."""
    P = a.shape[1] - 1
    T = targets.shape[0]
    sn = s.copy()
    for t in range(T):
        p = 0.0
        for k in range(1, P + 1):
            p -= a[t, k] * sn[P + t - k]
        scale = max(g[t], GAIN_FLOOR) * EXC_SCALE
        q = encode1((s[P + t] - p) / scale)
        targets[t] = q
        if q == 0 or q == 255:  # the excitation clipped: no draw could follow the note, so resynchronise
            sn[P + t] = s[P + t]
        else:
            qn = min(max(q + jitter[t], 0), 255)
            sn[P + t] = p + scale * decode_table[qn]
        inputs[t] = encode1(sn[P + t - 1])
        pred[t] = compand(p)

