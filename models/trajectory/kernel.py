"""The free run and its gradient as two Numba kernels: what models.trajectory.free_run computes with
autograd one sample at a time, without the per-sample Python and autograd graph.

:func:`run_free` plays one note free from a teacher-forced prefix, exactly as ``free_run`` does (a hard
draw by inverse CDF at the temperature, the lag input read from its own output), and keeps every
activation the way back needs. :func:`run_back` walks the note backwards in time: from the loss's
gradient on each generated sample it finds the gradient on every layer's activations, sample by sample,
carrying it through the lag input to the straight-through expected class one period earlier (the same
paths as ``free_run``'s graph: not through the input embedding); :func:`weight_grads` turns those into
the weights' gradients, one matrix product each. :func:`note_grads` wires them to a WaveNet's
parameters. Pure arithmetic on arrays; thread: training.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit

from models.trajectory.reference import (
    DECODE_SLOPE,
    class_value_table,
    free_features,
    lag_taps,
    layer_globals,
    local_slots,
    loop_states,
    param_views,
    prefix_layer_inputs,
)
from realtime.kernel.generate import JIT, fast_tanh
from realtime.kernel.loop_lowpass import faded_amount
from realtime.kernel.loop_lowpass import step as loop_step
from realtime.model import local_cond, mulaw
from realtime.model.local_cond import LOOP_A

#: class -> sample value (float64), the draws' decoding
DECODE = mulaw.DECODE_TABLE.astype(np.float64)


@njit(inline="always", **JIT)
def _vm_add(x, W, row0, out):
    """out += x @ W[row0:row0 + len(x)] (a row vector times a block of rows)."""
    for i in range(x.shape[0]):
        xi = x[i]
        for j in range(out.shape[0]):
            out[j] += xi * W[row0 + i, j]


@njit(**JIT)
def run_free(emb, Wd, Wrs, br, bs, W1, b1, W2, b2, dil, cond, wlag, X, vals, k0, u, n_int, frac, lag_gain,
             temperature, A, S, SK, H1, P, lagv, kin, kout, loop, AE, FO):
    """Play ``len(u)`` samples free. cond (n, L, 2R): every layer's conditioning but the lag (biases and
    global included); X (L, dmax + n, R): rows < dmax the prefix's last layer inputs, the rest written
    here; vals (prefix + 1 + n,): companded inputs (lag taps), the prefix's filled, the rest written here;
    k0: the first free step's input class. Writes the gates A / S (n, L, R), skip sums SK (n, Sk), the
    head's hidden layer H1 (n, Sk) before its ReLU, probabilities P (n, 256), lag inputs lagv (n,),
    input and drawn classes kin / kout (n,). loop: a control state (realtime.model.local_cond) whose loop low-pass
    (LOOP_A > 0) each draw passes before it is heard and fed back (realtime.kernel.loop_lowpass.step); writes the
    heard samples FO (n,) and the filter's faded amount before each sample AE (n,; 0 without the filter)."""
    n, L = u.shape[0], dil.shape[0]
    R, Sk = emb.shape[1], bs.shape[0]
    dmax = X.shape[1] - n
    prefix = vals.shape[0] - 1 - n
    has_lag = wlag.shape[0] > 0
    k = k0
    h = np.empty(2 * R, np.float32)
    x = np.empty(R, np.float32)
    z = np.empty(R, np.float32)
    rs = np.empty(R + Sk, np.float32)
    sk = np.empty(Sk, np.float32)
    r0 = np.empty(Sk, np.float32)
    h1 = np.empty(b1.shape[0], np.float32)
    r1 = np.empty(b1.shape[0], np.float32)
    logits = np.empty(256, np.float32)
    half = np.float32(0.5)
    for j in range(n):
        t = prefix + j
        kin[j] = k
        lag = np.float32(0.0)
        if has_lag:
            a_, b_ = vals[t - n_int + 1], vals[t - n_int]
            lag = (a_ + np.float32(frac) * (b_ - a_)) * np.float32(lag_gain)
        lagv[j] = lag
        x[:] = emb[k]
        sk[:] = bs
        for l in range(L):
            X[l, dmax + j] = x
            for i in range(2 * R):
                h[i] = cond[j, l, i]
            if has_lag:
                for i in range(2 * R):
                    h[i] += lag * wlag[l, i]
            _vm_add(X[l, dmax + j - dil[l]], Wd[l], 0, h)
            _vm_add(x, Wd[l], R, h)
            for i in range(R):
                ai = fast_tanh(h[i])
                si = half + half * fast_tanh(half * h[R + i])
                A[j, l, i] = ai
                S[j, l, i] = si
                z[i] = ai * si
            rs[:] = 0.0
            _vm_add(z, Wrs[l], 0, rs)
            for i in range(Sk):
                sk[i] += rs[R + i]
            for i in range(R):
                x[i] = x[i] + rs[i] + br[l, i]
        SK[j] = sk
        for i in range(Sk):
            r0[i] = max(sk[i], np.float32(0.0))
        h1[:] = b1
        _vm_add(r0, W1, 0, h1)
        H1[j] = h1
        for i in range(h1.shape[0]):
            r1[i] = max(h1[i], np.float32(0.0))
        logits[:] = b2
        _vm_add(r1, W2, 0, logits)
        top = np.float32(-np.inf)
        for i in range(256):
            logits[i] /= np.float32(temperature)
            top = max(top, logits[i])
        tot = np.float32(0.0)
        for i in range(256):
            e = np.exp(logits[i] - top)
            P[j, i] = e
            tot += e
        c = np.float32(0.0)
        k = 255
        found = False
        for i in range(256):
            pi = P[j, i] / tot
            P[j, i] = pi
            if not found:
                c += pi
                if c >= u[j]:
                    k = i
                    found = True
        kout[j] = k
        if loop[LOOP_A] > 0.0:
            AE[j] = faded_amount(loop)
            FO[j], k = loop_step(loop, np.float64(DECODE[k]))
        else:
            AE[j] = 0.0
            FO[j] = DECODE[k]
        vals[t + 1] = local_cond.class_value(k)


@njit(**JIT)
def run_back(WdT, WrsT, W1T, W2T, dil, wlag, X, A, S, SK, H1, P, kin, kout, d_out, slope, n_int, frac, lag_gain,
             temperature, demb, G, GRS, GH1, GLG, AE, filtered):
    """The way back over one free run (arrays as :func:`run_free` left them; the weights transposed, each
    layer's (out, in)). d_out (n,): the loss's gradient on each generated sample. Writes the gradient on
    every layer's pre-activation G (n, L, 2R) (its conditioning's too), on its residual and skip outputs
    GRS (n, L, R + Sk), on the head's hidden layer GH1 (n, Sk) and logits GLG (n, 256), and adds the
    input embedding's into demb: the weight gradients are these against the stored inputs
    (:func:`weight_grads`, one matrix product each). ``filtered``: the run had the loop low-pass (AE its
    faded amounts): d_out is on the heard (filtered) samples; the gradient runs back through the filter's
    recursion, and a lag's reaches the filtered sample it read through the coded value's slope."""
    n, L = d_out.shape[0], dil.shape[0]
    R = WdT.shape[1] // 2
    dmax = X.shape[1] - n
    has_lag = wlag.shape[0] > 0
    adjX = np.zeros((L, dmax + n, R), np.float32)
    a_q = np.zeros(n, np.float64)  # the gradient on each sample's expected class (straight-through)
    g_f = np.zeros(n, np.float64)  # with the filter: the gradient on each heard (filtered) sample
    for j in range(n):
        if filtered:
            g_f[j] = d_out[j]
        else:
            a_q[j] = d_out[j] * slope[kout[j]]
    cls = np.arange(256).astype(np.float32)
    g_h = np.empty(2 * R, np.float32)
    g_rs = np.empty(WrsT.shape[1], np.float32)
    g_z = np.empty(R, np.float32)
    g_in = np.empty(2 * R, np.float32)
    g_h1 = np.empty(W1T.shape[0], np.float32)
    g_sk = np.empty(W1T.shape[1], np.float32)
    gx = np.empty(R, np.float32)
    one = np.float32(1.0)
    for j in range(n - 1, -1, -1):
        if filtered:  # f_j = (1 - ae_j) y_j + ae_j f_(j-1): g_f[j] is complete (later samples came first)
            a_q[j] = g_f[j] * (1.0 - AE[j]) * slope[kout[j]]
            if j > 0:
                g_f[j - 1] += AE[j] * g_f[j]
        q = np.float32(0.0)
        for i in range(256):
            q += P[j, i] * cls[i]
        scale = np.float32(a_q[j] / temperature)
        for i in range(256):
            GLG[j, i] = P[j, i] * (cls[i] - q) * scale
        g_h1[:] = 0.0
        _vm_add(GLG[j], W2T, 0, g_h1)
        for i in range(g_h1.shape[0]):
            if H1[j, i] <= 0:
                g_h1[i] = 0.0
        GH1[j] = g_h1
        g_sk[:] = 0.0
        _vm_add(g_h1, W1T, 0, g_sk)
        for i in range(g_sk.shape[0]):
            if SK[j, i] <= 0:
                g_sk[i] = 0.0
        gx[:] = 0.0
        g_lag = np.float32(0.0)
        for l in range(L - 1, -1, -1):
            g_rs[:R] = gx
            g_rs[R:] = g_sk
            GRS[j, l] = g_rs
            g_z[:] = 0.0
            _vm_add(g_rs, WrsT[l], 0, g_z)
            for i in range(R):
                ai, si = A[j, l, i], S[j, l, i]
                g_h[i] = g_z[i] * si * (one - ai * ai)
                g_h[R + i] = g_z[i] * ai * si * (one - si)
            G[j, l] = g_h
            if has_lag:
                for i in range(2 * R):
                    g_lag += g_h[i] * wlag[l, i]
            g_in[:] = 0.0
            _vm_add(g_h, WdT[l], 0, g_in)
            jp = dmax + j - dil[l]
            if j - dil[l] >= 0:  # a free sample's layer input (the prefix's take no gradient)
                for i in range(R):
                    adjX[l, jp, i] += g_in[i]
            for i in range(R):
                gx[i] = gx[i] + g_in[R + i] + adjX[l, dmax + j, i]
        demb[kin[j]] += gx
        if has_lag:  # lag_j = gain ((1 - frac) value(j - n_int) + frac value(j - n_int - 1)); value = class / 127.5
            g = g_lag * lag_gain / 127.5
            for m, wm in ((j - n_int, 1.0 - frac), (j - n_int - 1, frac)):
                if m >= 0:
                    if filtered:  # the lag read f_m's class: its straight-through slope back to f_m
                        g_f[m] += g * wm / slope[min(kin[m + 1], 254)]  # m < j: kin[m + 1] is f_m's class
                    else:
                        a_q[m] += g * wm


def weight_grads(grads: dict[str, np.ndarray], dil: np.ndarray, X, A, S, SK, H1, G, GRS, GH1, GLG) -> None:
    """Add one free run's weight gradients (float64, the engines' layout: :func:`models.trajectory.reference.param_views`)
    into ``grads``: each gradient of :func:`run_back` against the input it multiplied, as a matrix product."""
    n = G.shape[0]
    R = A.shape[2]
    dmax = X.shape[1] - n
    grads["W2"] += np.maximum(H1, 0.0).T @ GLG
    grads["b2"] += GLG.sum(axis=0)
    grads["W1"] += np.maximum(SK, 0.0).T @ GH1
    grads["b1"] += GH1.sum(axis=0)
    grads["bs"] += GRS[:, 0, R:].sum(axis=0)
    grads["br"] += GRS[:, :, :R].sum(axis=0)
    for l, d in enumerate(dil):
        grads["Wrs"][l] += (A[:, l] * S[:, l]).T @ GRS[:, l]
        grads["Wd"][l, :R] += X[l, dmax - d:dmax - d + n].T @ G[:, l]
        grads["Wd"][l, R:] += X[l, dmax:].T @ G[:, l]


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy().astype(np.float32))


def note_grads(model, seg, pitch: float, instruments, velocities, temperature: float, uniforms: np.ndarray,
               loss_fn, weight: float = 1.0, loop_lowpass: float = 0.0) -> tuple[np.ndarray, float]:
    """Run every note of ``seg`` (models.trajectory.Segments) free with ``uniforms`` (B, n), score the
    generated audio with ``loss_fn`` (a torch function of (B, n) audio), and add ``weight`` times the
    loss's gradient (through the samples and the lag, as ``free_run``'s graph) to the model's ``.grad``.
    ``loop_lowpass``: the engines' low-pass in the loop, as ``free_run``'s. Returns the generated audio
    (B, n) and the loss."""
    cfg = model.cfg
    dil = np.asarray(model.dilations, np.int64)
    L, R = len(dil), cfg.residual_channels
    prefix = seg.inputs.shape[1] - 1
    B, n = seg.real.shape
    pick, lag_slot = local_slots(cfg.conditioning.local)
    v = param_views(model)
    feats = torch.from_numpy(np.ascontiguousarray(seg.feats[:, :, pick]))
    glob = layer_globals(model, pitch, instruments, velocities)  # (L, B, 2R)
    free = free_features(feats, prefix, lag_slot).numpy()
    w = {k: _np(t) for k, t in v.items()}
    cond = (np.einsum("btc,lcr->btlr", free, w["Wl"]) + (_np(glob) + w["bd"][:, None]).transpose(1, 0, 2)[:, None]
            ).astype(np.float32)
    wlag = np.ascontiguousarray(w["Wl"][:, lag_slot]) if lag_slot >= 0 else np.zeros((0, 2 * R), np.float32)
    inputs = torch.from_numpy(seg.inputs)
    with torch.no_grad():
        pre = prefix_layer_inputs({k: t.detach() for k, t in v.items()}, list(dil), inputs[:, :prefix],
                                  feats[:, :prefix], glob.detach())
    dmax = int(dil.max())
    n_int, frac = lag_taps(seg.period)
    cvals = class_value_table()[seg.inputs]
    runs = []
    loops = loop_states(loop_lowpass, DECODE[seg.inputs[:, prefix]], cfg.sample_rate)
    for b in range(B):
        X = np.zeros((L, dmax + n, R), np.float32)
        X[:, :dmax] = np.stack([_np(p[b, prefix - dmax:]) for p in pre])
        vals = np.concatenate((cvals[b], np.zeros(n, np.float32)))
        arr = dict(A=np.empty((n, L, R), np.float32), S=np.empty((n, L, R), np.float32),
                   SK=np.empty((n, w["bs"].shape[0]), np.float32), H1=np.empty((n, w["b1"].shape[0]), np.float32),
                   P=np.empty((n, 256), np.float32), lagv=np.empty(n, np.float32), kin=np.empty(n, np.int64),
                   kout=np.empty(n, np.int64), AE=np.empty(n, np.float64), FO=np.empty(n, np.float64))
        run_free(w["emb"], w["Wd"], w["Wrs"], w["br"], w["bs"], w["W1"], w["b1"], w["W2"], w["b2"], dil, cond[b],
                 wlag, X, vals, int(seg.inputs[b, prefix]), np.ascontiguousarray(uniforms[b], np.float32), n_int,
                 frac, local_cond.LAG_GAIN, temperature, arr["A"], arr["S"], arr["SK"], arr["H1"], arr["P"],
                 arr["lagv"], arr["kin"], arr["kout"], loops[b], arr["AE"], arr["FO"])
        runs.append((X, arr))
    audio = np.stack([a["FO"] for _, a in runs]).astype(np.float32)
    out = torch.from_numpy(audio).requires_grad_(True)
    loss = loss_fn(out)
    loss.backward()
    d_out = out.grad.numpy().astype(np.float64) * weight
    grads = {k: np.zeros(w[k].shape, np.float64) for k in ("Wd", "Wrs", "br", "bs", "W1", "b1", "W2", "b2", "emb",
                                                           "Wl", "bd")}
    dwlag = np.zeros((L, 2 * R), np.float64)
    dglob = np.zeros((L, B, 2 * R), np.float64)
    tr = {k: np.ascontiguousarray(np.swapaxes(w[k], -1, -2)) for k in ("Wd", "Wrs", "W1", "W2")}
    for b, (X, a) in enumerate(runs):
        G = np.empty((n, L, 2 * R), np.float32)
        GRS = np.empty((n, L, w["Wrs"].shape[2]), np.float32)
        GH1, GLG = np.empty((n, w["b1"].shape[0]), np.float32), np.empty((n, 256), np.float32)
        run_back(tr["Wd"], tr["Wrs"], tr["W1"], tr["W2"], dil, wlag, X, a["A"], a["S"], a["SK"], a["H1"], a["P"],
                 a["kin"], a["kout"], d_out[b], DECODE_SLOPE, n_int, frac, local_cond.LAG_GAIN, temperature,
                 grads["emb"], G, GRS, GH1, GLG, a["AE"], loop_lowpass > 0)
        weight_grads(grads, dil, X, a["A"], a["S"], a["SK"], a["H1"], G, GRS, GH1, GLG)
        grads["Wl"] += np.einsum("tc,tlr->lcr", free[b], G)
        dwlag += np.einsum("t,tlr->lr", a["lagv"], G)
        dglob[:, b] = G.sum(axis=0)
    if lag_slot >= 0:
        grads["Wl"][:, lag_slot] += dwlag
    grads["bd"] = dglob.sum(axis=1)
    names = list(grads)
    torch.autograd.backward([v[k] for k in names] + [glob],
                            [torch.from_numpy(grads[k]).float() for k in names] + [torch.from_numpy(dglob).float()])
    return audio, float(loss.detach())
