"""Training crops: pick windows from the sounding part of notes and build model inputs.

Pure numpy. A crop is ``context + window`` samples; the loss is scored only on
the last ``window`` samples, which see a full receptive field. Windows are drawn
around the sounding part of the note (onset to a little past the release), so
onsets and releases fall inside scored windows and exact silence is rare.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import local_cond, mulaw


@dataclass
class Batch:
    """Arrays for one training step (B crops). Shapes: inputs/targets (B, T), local (B, 3, T)."""

    inputs: np.ndarray   # int64 mu-law classes; input at t is the (noised) sample at t-1
    targets: np.ndarray  # int64 mu-law classes
    pitch: np.ndarray    # int64 MIDI (B,)
    instrument: np.ndarray  # int64 (B,)
    velocity: np.ndarray    # float32 0..1 (B,)
    local: np.ndarray       # float32 (B, 3, T)
    score_from: int         # first scored time index


def sounding_range(audio: np.ndarray, onset: int, release: int, floor_db: float = -50.0) -> tuple[int, int]:
    """(first, last+1) sample index where the note is above ``floor_db`` dBFS, at least [onset, release)."""
    loud = np.flatnonzero(np.abs(audio) > 10 ** (floor_db / 20))
    if loud.size == 0:
        return onset, max(onset + 1, release)
    return min(onset, int(loud[0])), max(release, int(loud[-1]) + 1)


def make_crop(audio: np.ndarray, onset: int, release: int, pitch: int, sample_rate: int,
              context: int, window: int, rng: np.random.Generator, input_noise: float = 0.0,
              start: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop of a note: (inputs (T,), targets (T,), local (3, T)), T = context + window.

    The scored window starts uniformly within the sounding range (or at
    ``start``); samples before the note are zero. ``input_noise`` is the std
    (in mu-law classes) of Gaussian noise added to the inputs only (exposure-bias aid).
    """
    t_len = context + window
    lo, hi = sounding_range(audio, onset, release)
    if start is None:
        start = int(rng.integers(lo - window // 2, max(lo - window // 2 + 1, hi - window // 2)))
    begin = start - context  # crop covers [begin, start + window)
    seg = np.zeros(t_len + 1, np.float32)  # one extra sample in front for the shifted input
    a0, a1 = max(begin - 1, 0), min(begin + t_len, len(audio))
    if a1 > a0:
        seg[a0 - (begin - 1):a1 - (begin - 1)] = audio[a0:a1]
    targets = mulaw.encode(seg[1:])
    inputs = mulaw.encode(seg[:-1])
    if input_noise > 0:  # noise in the companded domain: the same few classes at every level
        jitter = np.rint(rng.normal(0.0, input_noise, size=inputs.shape)).astype(np.int64)
        inputs = np.clip(inputs + jitter, 0, mulaw.MU)
    feats = local_cond.features_for_note(t_len, onset - begin, release - begin, float(pitch), sample_rate,
                                         phase=float(rng.random()))
    return inputs, targets, np.ascontiguousarray(feats.T)


def make_batch(notes, indices, sample_rate: int, context: int, window: int, rng: np.random.Generator,
               input_noise: float = 0.0, pitch_shift: int = 0, instrument_map=None,
               starts=None) -> Batch:
    """Stack crops of ``notes[indices]``. ``pitch_shift``/``instrument_map`` falsify conditioning (for probes)."""
    ins, tgs, locs, p, ins_id, vel = [], [], [], [], [], []
    for k, i in enumerate(indices):
        n = notes[i]
        pitch = int(np.clip(n.pitch + pitch_shift, 0, 127))
        noise = input_noise * float(rng.random()) if input_noise else 0.0
        a, b, loc = make_crop(n.audio, n.onset, n.release, pitch, sample_rate, context, window, rng, noise,
                              None if starts is None else int(starts[k]))
        ins.append(a)
        tgs.append(b)
        locs.append(loc)
        p.append(pitch)
        iid = n.instrument_id if instrument_map is None else instrument_map(n.instrument_id)
        ins_id.append(iid)
        vel.append(n.velocity / 127.0)
    return Batch(np.stack(ins), np.stack(tgs), np.asarray(p, np.int64), np.asarray(ins_id, np.int64),
                 np.asarray(vel, np.float32), np.stack(locs), context)
