"""Training crops of a source-filter model: the excitation as targets, LPCNet's noise injected in the loop.

A crop of a note is analysed into envelope frames (LSFs and excitation gain, by the same analysis the envelope
bank is built with), tracked per sample as the engines track the bank (the LPC row and gain change every
``UPDATE`` samples, interpolated from the frames), and run through
:func:`realtime.model.source_filter.teacher_forced`: targets are the classes of the gain-normalised excitation,
inputs the signal the network would have played, ``pred`` its short-term prediction. Pure numpy / Numba;
thread: training.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from realtime.model import local_cond, mulaw
from realtime.model import source_filter as sf
from realtime.model.config import SourceFilterSpec
from realtime.model.level import fit_level

#: (audio (n,) float, sample rate) -> (lsf (F, order), gain (F,), hop): frame f describes sample f * hop
Analyse = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, int]]


def tracks(lsf: np.ndarray, gain: np.ndarray, hop: int, n: int, offset: int = 0,
           update: int = sf.UPDATE) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample LPC rows (n, order + 1) and gains (n,) for samples ``offset .. offset + n`` of the analysed
    audio: both change every ``update`` samples (counted from sample 0 of the audio), to the LSFs interpolated
    at that sample (then :func:`~realtime.model.source_filter.tidy_lsf`) and the gain interpolated in log."""
    first = (offset // update) * update
    points = np.arange(first, offset + n, update)
    rows = sf.lpc_rows(sf.frame_track(lsf, hop, points))
    g_at = np.exp(sf.frame_track(np.log(np.maximum(gain, sf.GAIN_FLOOR)), hop, points))
    idx = (offset + np.arange(n)) // update - first // update
    return rows[idx], g_at[idx]


def excitation_crop(audio: np.ndarray, onset: int, release: int, pitch: float, sample_rate: int, context: int,
                    window: int, start: int, rng: np.random.Generator, spec: SourceFilterSpec, analyse: Analyse,
                    input_noise: float = 0.0, level_params: np.ndarray | None = None,
                    f0_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop of a note for a source-filter model: (inputs (T,), targets (T,), local (N_LOCAL, T)), T = context +
    window, its scored window starting at sample ``start`` of the note, as :func:`models.crops.make_crop` but the
    targets are excitation classes and the ``pred`` column is filled. ``input_noise``: the std of the noise
    injected into the excitation (classes; 0: none)."""
    t_len = context + window
    order = spec.order
    begin = start - context
    # the analysed span: the crop and its predictor's history, in the pre-emphasised domain
    a0 = max(begin - order - 1, 0)
    a1 = min(max(begin + t_len, a0 + 1), len(audio))
    span = sf.pre_emphasis(audio[a0:a1], spec.emphasis, float(audio[a0 - 1]) if a0 > 0 else 0.0)
    s = np.zeros(t_len + order)
    lo_s, hi_s = max(begin - order, a0), min(begin + t_len, a1)
    if hi_s > lo_s:
        s[lo_s - (begin - order):hi_s - (begin - order)] = span[lo_s - a0:hi_s - a0]
    lsf, gain, hop = analyse(audio[a0:a1].astype(np.float32), sample_rate) if a1 - a0 > order * 4 else (None, None, 0)
    if lsf is None or lsf.shape[0] == 0:  # nothing to analyse (a crop wholly outside the note): a flat envelope
        lsf = np.linspace(np.pi / (order + 1), np.pi * order / (order + 1), order)[None, :]
        gain, hop = np.full(1, sf.GAIN_FLOOR), 1
    a, g = tracks(lsf, gain, hop, t_len, offset=begin - a0)
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
