"""Priming: turn a waveform into the engines' queue contents with one parallel pass.

Pure numpy. ``layer_histories`` runs the WaveNet's residual stack over the
whole prime at once (matrix products over time, no per-sample loop) and
returns, for every layer, the inputs the incremental engine would hold in its
queue after teacher-forcing the same samples from a zero state.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from realtime.engine.sf_tracks import RING
from realtime.model import local_cond, mulaw
from realtime.model.source_filter import pre_emphasis


class PrimeState(NamedTuple):
    """What priming leaves in an engine (:meth:`realtime.engine.base.Engine.apply_prime` copies it in).

    Read-only once made: a prepared state is shared by every voice and every note that uses it.
    """

    queues: np.ndarray  #: (sum(dilations), R) float32: every layer's input history, layer l at rows q_off[l]..
    next_class: int  #: the mu-law class the network consumes next (the prime's last sample)
    lag_ring: np.ndarray  #: (local_cond.HIST,) float32: the ring of past inputs the lag channels read
    lag_pos: int  #: that ring's position
    #: a source-filter model's filter memory: the pre-emphasised prime's last sf_tracks.RING samples, newest last
    sf_ring: np.ndarray | None = None
    sf_x: float = 0.0  #: and its de-emphasis memory: the prime's last sample


def prime_state(w: dict[str, np.ndarray], dilations: np.ndarray, classes: np.ndarray, bias: np.ndarray,
                ctrl: np.ndarray, sample_rate: float, loc_idx: np.ndarray, source_filter: bool = False) -> PrimeState:
    """The state after teacher-forcing mu-law ``classes`` from a zero state, with one parallel pass.

    ``bias`` (L, 2R) is the per-layer bias (global conditioning folded in) the prime runs under; the local
    features over the prime are those a control state ``ctrl`` (not changed) produces from its next sample
    on. Pure numpy (matrix products: the BLAS thread count is the caller's, see realtime.engine.blas);
    10-25 ms on the default model (R32, 2,047 samples) on one core.

    ``source_filter``: the network reads the pre-emphasised signal (realtime.model.source_filter), so the prime
    is decoded, pre-emphasised and coded again, and its last samples fill the filter's memory; its prediction
    input stays 0 over the prime (the prime has no envelope), a difference the first 1 ms of the note's own
    envelope replaces.
    """
    sf_ring, sf_x = None, 0.0
    if source_filter:
        classes, sf_ring, sf_x = _emphasised(classes)
    inputs, nxt = prime_inputs(classes)
    feats = np.empty((len(inputs), local_cond.N_LOCAL), np.float32)
    local_cond.fill(np.array(ctrl, np.float64), float(sample_rate), feats)
    ring, pos = local_cond.lag_from_reset(inputs, feats)  # the lag over the prime
    dil = [int(d) for d in dilations]
    hists = layer_histories(w, dil, inputs, bias, feats, loc_idx)
    queues = np.concatenate(hists) if hists else np.zeros((0, w["embed"].shape[1]), np.float32)
    for a in (queues, ring) + (() if sf_ring is None else (sf_ring,)):
        a.setflags(write=False)
    return PrimeState(queues, int(nxt), ring, int(pos), sf_ring, sf_x)


def _emphasised(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A mu-law prime as a source-filter network reads it: (the pre-emphasised signal's classes, its last
    sf_tracks.RING samples (float64, newest last), the prime's last sample)."""
    x = mulaw.decode(np.asarray(classes, np.int64)).astype(np.float64)
    s = pre_emphasis(x) if x.size else np.zeros(0)
    ring = np.zeros(RING)
    k = min(RING, s.size)
    if k:
        ring[RING - k:] = s[s.size - k:]
    return mulaw.encode(s), ring, float(x[-1]) if x.size else 0.0


def layer_histories(w: dict[str, np.ndarray], dilations: list[int], inputs: np.ndarray,
                    bias: np.ndarray, feats: np.ndarray, loc_idx: np.ndarray) -> list[np.ndarray]:
    """Per-layer input history after consuming ``inputs`` (P,) mu-law classes.

    ``bias`` (L, 2R) is the per-layer bias incl. global conditioning, ``feats``
    (P, 3) the local features over the prime. Returns a list of (d_l, R)
    float32 arrays, oldest first, zero where the prime is shorter than d_l.
    Only the last receptive-field samples matter, so longer primes are cropped;
    and each layer is computed only for the last positions later queues need
    (the sum of the later layers' dilations): a third less work than whole rows.
    """
    rf = sum(dilations) + 1
    if len(inputs) > rf:
        inputs, feats = inputs[-rf:], feats[-rf:]
    p = len(inputs)
    r = w["embed"].shape[1]
    x = w["embed"][inputs].astype(np.float32)  # layer l's input at positions [p - len(x), p)
    out = []
    for l, d in enumerate(dilations):
        hist = np.zeros((d, r), np.float32)
        k = min(d, p)
        hist[d - k:] = x[len(x) - k:]
        out.append(hist)
        if l == len(dilations) - 1:
            break
        m = min(p, sum(dilations[l + 1:]))  # positions of layer l's output that later layers read
        cur = x[len(x) - m:]
        xp = np.zeros_like(cur)  # the input d samples earlier (zeros before the prime)
        first = len(x) - m - d  # row of x holding position p - m - d
        if first >= 0:
            xp[:] = x[first:first + m]
        elif m + first > 0:
            xp[-first:] = x[:m + first]
        wl = w["w_dil"][l]
        h = bias[l] + xp @ wl[:r] + cur @ wl[r:]
        if len(loc_idx):
            h = h + feats[p - m:, loc_idx] @ w["w_loc"][l]
        z = np.tanh(h[:, :r]) * (0.5 + 0.5 * np.tanh(0.5 * h[:, r:]))
        x = cur + w["b_res"][l] + z @ w["w_rs"][l][:, :r]
    return out


def prime_inputs(classes: np.ndarray) -> tuple[np.ndarray, int]:
    """Mu-law prime samples (P,) -> (inputs the network consumed, next input class).

    The input at step t is the sample at t-1, so the network has consumed
    [silence, a_0 .. a_{P-2}] and the next input is a_{P-1}.
    """
    classes = np.asarray(classes, dtype=np.int64)
    if classes.size == 0:
        return classes, mulaw.SILENCE
    inputs = np.concatenate(([mulaw.SILENCE], classes[:-1]))
    return inputs, int(classes[-1])


class PrimeError(ValueError):
    """A prime spec names something that cannot be used."""


def prime_waveform(spec: str, sample_rate: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """A priming waveform at ``sample_rate`` from a spec.

    Specs: ``silence``, ``sine`` or ``sine:HZ`` (amplitude 0.5), ``noise`` or
    ``noise:AMP`` (white, uniform), or ``file:PATH`` / a path to an audio file
    (mono-mixed, resampled with soxr, last ``n_samples`` used).
    """
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    t = np.arange(n_samples) / sample_rate
    if kind == "silence":
        return np.zeros(n_samples, np.float32)
    if kind == "sine":
        hz = _number(spec, arg, 220.0)
        return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    if kind == "noise":
        amp = _number(spec, arg, 0.1)
        return (amp * np.random.default_rng(seed).uniform(-1, 1, n_samples)).astype(np.float32)
    path = Path(arg if kind == "file" else spec)
    return _load_audio(path, sample_rate)[-n_samples:]


def _number(spec: str, arg: str, default: float) -> float:
    if not arg:
        return default
    try:
        return float(arg)
    except ValueError:
        raise PrimeError(f"prime {spec!r}: {arg!r} is not a number") from None


def _load_audio(path: Path, sample_rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    if not path.is_file():
        raise PrimeError(f"prime file {path}: not found (specs: silence, sine[:HZ], noise[:AMP], file:PATH)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError/RuntimeError
        raise PrimeError(f"prime file {path}: unreadable audio ({e})") from None
    if data.shape[0] == 0:
        raise PrimeError(f"prime file {path}: no samples")
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate).astype(np.float32)
    return mono
