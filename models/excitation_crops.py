"""Training crops of a source-filter model: the excitation as targets, LPCNet's noise injected in the loop.

A crop's span of the note is analysed into envelope frames by the envelope bank's own analysis
(models.envelope.analyse), tracked per sample as the engines track the bank (models.envelope.note_tracks: the
LPC row renewed every 1 ms), and run through :func:`realtime.model.source_filter.teacher_forced`: targets are the
classes of the gain-normalised excitation, inputs the signal the network would have played, ``pred`` its
short-term prediction. Only the span is analysed (a few ms), so a detuned crop gets its own envelope. Thread:
training.
"""
from __future__ import annotations

import numpy as np

from models.envelope import analyse, note_tracks
from realtime.model import local_cond, mulaw
from realtime.model import source_filter as sf
from realtime.model.config import SourceFilterSpec
from realtime.model.level import fit_level

#: analysed before the crop's first sample (samples): the predictor's history and a frame's half window
MARGIN = 512


def span_tracks(audio: np.ndarray, begin: int, n: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """LPC rows (n, ORDER + 1) and gains (n,) for samples ``begin .. begin + n`` of ``audio`` (zero outside it),
    from the analysis of that stretch alone (with MARGIN samples before it)."""
    a0 = max(begin - MARGIN, 0)
    a1 = min(max(begin + n, a0 + 1), len(audio))
    frames = analyse(audio[a0:a1], 0, a1 - a0, sample_rate)
    return note_tracks(frames, n, begin - a0)


def excitation_crop(audio: np.ndarray, onset: int, release: int, pitch: float, sample_rate: int, context: int,
                    window: int, start: int, rng: np.random.Generator, spec: SourceFilterSpec,
                    input_noise: float = 0.0, level_params: np.ndarray | None = None,
                    f0_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop of a note for a source-filter model: (inputs (T,), targets (T,), local (N_LOCAL, T)), T = context +
    window, its scored window starting at sample ``start`` of the note, as :func:`models.crops.make_crop` but the
    targets are excitation classes and the ``pred`` column is filled. ``input_noise``: the std of the noise
    injected into the excitation (classes; 0: none)."""
    t_len = context + window
    order = spec.order
    begin = start - context
    if order != sf.ORDER or spec.emphasis != sf.EMPHASIS or spec.exc_scale != sf.EXC_SCALE:
        raise ValueError(f"source_filter {spec}: this version trains order {sf.ORDER}, emphasis {sf.EMPHASIS}, "
                         f"exc_scale {sf.EXC_SCALE} only")
    # the pre-emphasised note from ``order`` samples before the crop: s[order + t] is step t's target
    pad = np.zeros(t_len + order + 1)
    lo, hi = max(begin - order - 1, 0), min(begin + t_len, len(audio))
    if hi > lo:
        pad[lo - (begin - order - 1):hi - (begin - order - 1)] = audio[lo:hi]
    s = sf.pre_emphasis(pad[1:], spec.emphasis, pad[0])
    a, g = span_tracks(audio, begin, t_len, sample_rate)
    jitter = (np.rint(rng.normal(0.0, input_noise, t_len)).astype(np.int64) if input_noise > 0
              else np.zeros(t_len, np.int64))
    inputs = np.empty(t_len, np.int64)
    targets = np.empty(t_len, np.int64)
    pred = np.empty(t_len, np.float32)
    sf.teacher_forced(s, a, g, jitter, mulaw.DECODE_TABLE.astype(np.float64), inputs, pred, targets)
    if level_params is None:
        level_params = fit_level(audio, onset, release, sample_rate)
    feats = local_cond.features_for_note(t_len, onset - begin, release - begin, float(pitch) + f0_offset,
                                         sample_rate, float(rng.random()), level_params=level_params)
    feats[:, local_cond.PRED] = pred
    local_cond.lag_from_reset(inputs, feats)
    return inputs, targets, np.ascontiguousarray(feats.T)
