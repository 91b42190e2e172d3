"""Training crops: pick windows from the sounding part of notes and build model inputs.

Pure numpy. A crop is ``context + window`` samples; the loss is scored only on
the last ``window`` samples, which see a full receptive field. Windows are drawn
around the sounding part of the note (onset to a little past the release), so
onsets and releases fall inside scored windows and exact silence is rare.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import soxr

from models.excitation_crops import excitation_crop
from realtime.model import level, local_cond, mulaw
from realtime.model.config import DEFAULT_LOCAL, LOCAL_CHANNELS
from realtime.model.level import fit_level, note_level, shift_level


@dataclass
class Batch:
    """Arrays for one training step (B crops). Shapes: inputs/targets (B, T), local (B, C, T)."""

    inputs: np.ndarray   # int64 mu-law classes; input at t is the (noised) sample at t-1
    targets: np.ndarray  # int64 mu-law classes
    pitch: np.ndarray    # MIDI (B,): int64 notes, or float32 bent pitches (make_batch's pitch_interp)
    instrument: np.ndarray  # int64 (B,)
    velocity: np.ndarray    # float32 0..1 (B,)
    local: np.ndarray       # float32 (B, C, T): the model's local channels
    score_from: int         # first scored time index
    rollout: np.ndarray | None = None  # bool (B,): the crops whose inputs are a rollout (make_batch's overlays)


def sounding_range(audio: np.ndarray, onset: int, release: int, floor_db: float = -50.0) -> tuple[int, int]:
    """(first, last+1) sample index where the note is above ``floor_db`` dBFS, at least [onset, release)."""
    loud = np.flatnonzero(np.abs(audio) > 10 ** (floor_db / 20))
    if loud.size == 0:
        return onset, max(onset + 1, release)
    return min(onset, int(loud[0])), max(release, int(loud[-1]) + 1)


def pick_start(audio: np.ndarray, onset: int, release: int, window: int, rng: np.random.Generator) -> int:
    """A scored window's first sample, uniform such that the window starts within the note's sounding range."""
    lo, hi = sounding_range(audio, onset, release)
    return int(rng.integers(lo - window // 2, max(lo - window // 2 + 1, hi - window // 2)))


def _segment(audio: np.ndarray, begin: int, length: int) -> np.ndarray:
    """audio[begin:begin+length] with zeros outside the note."""
    seg = np.zeros(length, np.float32)
    a0, a1 = max(begin, 0), min(begin + length, len(audio))
    if a1 > a0:
        seg[a0 - begin:a1 - begin] = audio[a0:a1]
    return seg


def detuned(note, semitones: float, sample_rate: int):
    """``note`` played ``semitones`` higher (fractional; negative: lower) by resampling (soxr): its
    audio, onset and release shorten or lengthen by 2**(-semitones/12), like a sampler's. The level
    envelope stays the original's fit (its times then are off by the same factor: <= 6 % within
    +-1 semitone). ``semitones`` 0: the note itself."""
    if semitones == 0.0:
        return note
    r = 2.0 ** (semitones / 12.0)
    audio = soxr.resample(note.audio, sample_rate * r, sample_rate).astype(np.float32)
    return replace(note, audio=np.clip(audio, -1.0, 1.0), onset=int(round(note.onset / r)),
                   release=int(round(note.release / r)), level=note_level(note, sample_rate))


def tilt(x: np.ndarray, b: float) -> np.ndarray:
    """``x`` brightened: y[t] = x[t] + b (x[t] - x[t-1]) (x[-1] taken as x[0]), clipped to [-1, 1]; float32.
    A first-order high shelf: gain 1 at DC, |1 + b (1 - e^-jw)| above (b 1: +1.2 dB at 1 kHz, +7 dB at
    4 kHz, +9.5 dB at Nyquist, at 16 kHz). Pure."""
    x = np.asarray(x, np.float32)
    d = np.diff(x, prepend=x[:1])
    return np.clip(x + np.float32(b) * d, -1.0, 1.0).astype(np.float32)


def make_crop(audio: np.ndarray, onset: int, release: int, pitch: int, sample_rate: int,
              context: int, window: int, rng: np.random.Generator, input_noise: float = 0.0,
              start: int | None = None, prev=None, level_params: np.ndarray | None = None,
              level_gain_db: float = 0.0, f0_offset: float = 0.0,
              input_tilt: float = 0.0, input_audio: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop of a note: (inputs (T,), targets (T,), local (N_LOCAL, T)), T = context + window:
    every feature column of realtime.model.local_cond, the lag read from the crop's own inputs.

    The scored window starts uniformly within the sounding range (or at
    ``start``); samples before the note are zero. ``input_noise`` is the std
    (in mu-law classes) of Gaussian noise added to the inputs only (exposure-bias aid).
    With ``prev`` (another note, e.g. of another pitch), the scored window
    starts at this note's onset and the context before it is a sounding part
    of ``prev``, with ``prev``'s local conditioning: the history then contradicts
    the new note and only the conditioning tells what comes next (a note change).
    ``level_params``: the note's loudness envelope (realtime.model.level), else its own fit.
    ``level_gain_db``: the whole crop (inputs and targets) gets a random gain, uniform in +-this
    many dB, and its level input moves with it: the level no longer follows from velocity, pitch
    and instrument, only from the level input (and the history).
    ``f0_offset`` (semitones) moves the f0 input of the note and of ``prev`` off their MIDI pitches
    (a detuned crop's true pitch, or a probe's false one).
    ``input_tilt``: the inputs only are brightened by :func:`tilt` with this b, the targets stay the real
    note (exposure bias: a free-running note drifts brighter than the real one; the network should
    answer a too-bright history with the real, darker continuation).
    ``input_audio`` (as long as ``audio``): the inputs are read from it instead, the targets from ``audio``
    (a rollout crop: the network's own free-running samples in, the real note aligned to them out;
    models.rollouts); not with ``prev``.
    """
    t_len = context + window
    if prev is not None:
        start = onset
    if start is None:
        start = pick_start(audio, onset, release, window, rng)
    begin = start - context  # crop covers [begin, start + window)
    seg = _segment(audio, begin - 1, t_len + 1)  # one extra sample in front for the shifted input
    seg_in = seg if input_audio is None else _segment(input_audio, begin - 1, t_len + 1)
    phase = float(rng.random())
    if level_params is None:
        level_params = fit_level(audio, onset, release, sample_rate)
    gain_db = rng.uniform(-level_gain_db, level_gain_db) if level_gain_db > 0 else 0.0
    gain_u = gain_db / -level.FLOOR_DB  # the same gain in level units
    level_params = shift_level(level_params, gain_u)
    feats = local_cond.features_for_note(t_len, onset - begin, release - begin, float(pitch) + f0_offset, sample_rate,
                                         phase, level_params=level_params)
    if prev is not None:
        plo, phi = sounding_range(prev.audio, prev.onset, prev.release)
        end_a = int(rng.integers(min(plo + context // 4, phi - 1), phi))  # prev plays up to here
        seg[:context + 1] = _segment(prev.audio, end_a - context - 1, context + 1)
        feats[:context] = local_cond.features_for_note(context, prev.onset - (end_a - context),
                                                       prev.release - (end_a - context), float(prev.pitch) + f0_offset,
                                                       sample_rate, phase,
                                                       level_params=shift_level(note_level(prev, sample_rate), gain_u))
    if gain_db:
        g = np.float32(10.0 ** (gain_db / 20.0))
        seg = np.clip(seg * g, -1.0, 1.0)
        seg_in = seg if input_audio is None else np.clip(seg_in * g, -1.0, 1.0)
    targets = mulaw.encode(seg[1:])
    inputs = mulaw.encode(tilt(seg_in[:-1], input_tilt) if input_tilt else seg_in[:-1])
    if input_noise > 0:  # noise in the companded domain: the same few classes at every level
        jitter = np.rint(rng.normal(0.0, input_noise, size=inputs.shape)).astype(np.int64)
        inputs = np.clip(inputs + jitter, 0, mulaw.MU)
    local_cond.lag_from_reset(inputs, feats)  # the lag reads the (noised) inputs, as the engines read their own
    return inputs, targets, np.ascontiguousarray(feats.T)


def make_batch(notes, indices, sample_rate: int, context: int, window: int, rng: np.random.Generator,
               input_noise: float = 0.0, pitch_shift: int = 0, instrument_map=None,
               starts=None, splice_prob: float = 0.0, local: tuple[str, ...] = DEFAULT_LOCAL,
               level_shift: float = 0.0, level_gain_db: float = 0.0, detune: float = 0.0,
               f0_shift: float = 0.0, pitch_interp: bool = False, input_tilt: float = 0.0,
               overlays=None, source_filter=None) -> Batch:
    """Stack crops of ``notes[indices]``. ``pitch_shift``/``instrument_map`` falsify conditioning (for probes);
    ``splice_prob`` is the share of crops that start at a note change (see :func:`make_crop`);
    ``local`` names the local channels the model reads (its ``conditioning.local``); ``level_shift``
    (level units) moves every note's peak and sustain level (a probe: 1/3 = 20 dB); ``level_gain_db``:
    see :func:`make_crop`. ``detune`` (semitones): each crop's note (and the note before a change) is
    resampled to a pitch uniform within +-this of its MIDI pitch, with its f0 input following; with
    ``pitch_interp`` the batch's pitches are the bent ones (float32, for the two nearest embeddings
    interpolated), else the MIDI notes. ``f0_shift`` (semitones, a probe) falsifies the f0 input alone (its
    phase, and the period the lag channel reads at). ``input_tilt``: each crop's inputs brightened by
    :func:`tilt` with b uniform in 0..this (see :func:`make_crop`). ``overlays``: per crop None or
    (target audio, input audio, scored window start): a rollout crop of that note (see
    :func:`make_crop`'s ``input_audio``; not spliced, detuned or tilted). ``source_filter`` (a model's
    SourceFilterSpec): excitation crops
    (models.excitation_crops; ``input_noise`` is then the noise injected into the excitation; not spliced, not
    tilted, no overlays)."""
    pick = [LOCAL_CHANNELS.index(c) for c in local]
    ins, tgs, locs, p, ins_id, vel = [], [], [], [], [], []
    by_inst: dict[int, list[int]] = {}
    if splice_prob > 0:
        for j, n in enumerate(notes):
            by_inst.setdefault(n.instrument_id, []).append(j)
    for k, i in enumerate(indices):
        n = notes[i]
        pitch = int(np.clip(n.pitch + pitch_shift, 0, 127))
        noise = input_noise * float(rng.random()) if input_noise else 0.0
        b_tilt = input_tilt * float(rng.random()) if input_tilt else 0.0
        level_params = shift_level(note_level(n, sample_rate), level_shift)
        ov = overlays[k] if overlays is not None else None
        if ov is not None:  # a rollout crop of the note as recorded: not spliced, detuned or tilted
            bend = 0.0
            a, b, loc = make_crop(ov[0], n.onset, n.release, pitch, sample_rate, context, window, rng, noise,
                                  int(ov[2]), None, level_params, level_gain_db, f0_shift, 0.0, ov[1])
        elif source_filter is not None:
            bend = float(rng.uniform(-detune, detune)) if detune > 0 else 0.0
            n = detuned(n, bend, sample_rate)
            start = pick_start(n.audio, n.onset, n.release, window, rng) if starts is None else int(starts[k])
            a, b, loc = excitation_crop(n.audio, n.onset, n.release, pitch, sample_rate, context, window, start, rng,
                                        source_filter, noise, level_params, bend + f0_shift)
        else:
            prev = None
            if splice_prob > 0 and starts is None and rng.random() < splice_prob:
                prev = notes[int(rng.choice(by_inst[n.instrument_id]))]
            bend = float(rng.uniform(-detune, detune)) if detune > 0 else 0.0
            n = detuned(n, bend, sample_rate)
            prev = None if prev is None else detuned(prev, bend, sample_rate)
            a, b, loc = make_crop(n.audio, n.onset, n.release, pitch, sample_rate, context, window, rng, noise,
                                  None if starts is None else int(starts[k]), prev, level_params, level_gain_db,
                                  bend + f0_shift, b_tilt)
        ins.append(a)
        tgs.append(b)
        locs.append(loc[pick])
        p.append(pitch + bend if pitch_interp else pitch)
        iid = n.instrument_id if instrument_map is None else instrument_map(n.instrument_id)
        ins_id.append(iid)
        vel.append(n.velocity / 127.0)
    return Batch(np.stack(ins), np.stack(tgs), np.asarray(p, np.float32 if pitch_interp else np.int64),
                 np.asarray(ins_id, np.int64), np.asarray(vel, np.float32), np.stack(locs), context,
                 None if overlays is None else np.array([o is not None for o in overlays]))
