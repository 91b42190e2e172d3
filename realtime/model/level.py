"""Loudness conditioning: a note's level against time, as five numbers per note.

The network reads a per-sample ``level`` input (see :mod:`realtime.model.local_cond`): how loud the note
should be now, in *level units* ``u = (dBFS + 60) / 60`` (0 = -60 dBFS or quieter, 1 = full scale).
Without it the network has to guess the level from its own drifting history, and silence wins
(held notes that die away). The level follows a small envelope model run per sample by
``local_cond.advance``, so training and playing compute it with the same code:

- at key-down the target jumps to ``peak``; while the key is held it decays exponentially
  towards ``sustain`` with time constant ``decay_s``;
- after key-up it falls towards ``RELEASE_FLOOR`` (below silence) with time constant ``release_s``;
- the level follows the target through a one-pole smoother with time constant ``attack_s``.

:func:`fit_level` fits the five numbers to a recorded note's RMS envelope (training labels each
note with its own fit); :class:`LevelBank` ships the fits with the model so that playing a note
looks up the envelope of the nearest recorded note (same instrument, nearest pitch, velocity
interpolated). Pure numpy + numba.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from realtime.model.note_keys import note_keys

#: level units: u = (dBFS - FLOOR_DB) / -FLOOR_DB, clipped to [0, 1]
FLOOR_DB = -60.0
#: where the released target heads (below silence, so the level reaches 0 in finite time)
RELEASE_FLOOR = -0.25
#: params layout
ATTACK_S, PEAK, SUSTAIN, DECAY_S, RELEASE_S = range(5)
N_PARAMS = 5
#: the envelope of a model without a bank (or a note the bank cannot place): a steady -24 dBFS
DEFAULT = np.array([0.005, 0.6, 0.6, 10.0, 0.1])
#: RMS envelope analysis: 40 ms windows every 10 ms
HOP_S, WIN_S = 0.01, 0.04

_ATTACKS = np.array([0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3])
_DECAYS = np.array([0.05, 0.1, 0.2, 0.35, 0.6, 1.0, 1.7, 3.0, 5.0, 9.0, 16.0, 30.0])
_RELEASES = np.array([0.01, 0.02, 0.04, 0.07, 0.12, 0.2, 0.35, 0.6, 1.0, 2.0])


def db_to_level(db):
    """dBFS -> level units (0..1)."""
    return np.clip((np.asarray(db, np.float64) - FLOOR_DB) / -FLOOR_DB, 0.0, 1.0)


def level_to_db(u):
    """Level units -> dBFS (0 -> FLOOR_DB)."""
    return FLOOR_DB + np.asarray(u, np.float64) * -FLOOR_DB


def envelope(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS level (level units) of ``audio`` in 40 ms windows centred every 10 ms: frame k at k*10 ms."""
    hop, win = int(round(HOP_S * sample_rate)), int(round(WIN_S * sample_rate))
    x = np.asarray(audio, np.float64)
    n = len(x) // hop + 1
    c = np.concatenate(([0.0], np.cumsum(x * x)))
    centre = np.arange(n) * hop
    lo, hi = np.clip(centre - win // 2, 0, len(x)), np.clip(centre + win // 2, 0, len(x))
    ms = (c[hi] - c[lo]) / win
    return db_to_level(10.0 * np.log10(np.maximum(ms, 1e-12)))


@njit(cache=True)
def _simulate(p: float, s: float, floor: float, ca: float, cd: float, cr: float, onset: int, release: int,
              n: int, out: np.ndarray) -> None:
    """The envelope model at frame rate (coefficients per frame), level clipped at 0, into out[:n]."""
    target, lev = 0.0, 0.0
    for k in range(n):
        if k == onset:
            target = p
        if onset <= k < release:
            target += (s - target) * cd
        elif k >= release:
            target += (floor - target) * cr
        lev += (target - lev) * ca
        out[k] = max(lev, 0.0)


@njit(cache=True)
def _fit(u: np.ndarray, onset: int, release: int, hop_s: float, attacks: np.ndarray, decays: np.ndarray,
         releases: np.ndarray, floor: float) -> np.ndarray:
    """Grid search over (attack, decay, release) with least squares for (peak, sustain) on frames >= onset."""
    n = len(u)
    a, b, c, sim = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    best = np.array([np.inf, 0.0, 0.0, 0.0, 0.0, 0.0])
    for att in attacks:
        ca = 1.0 - math.exp(-hop_s / att)
        for dec in decays:
            cd = 1.0 - math.exp(-hop_s / dec)
            for rel in releases:
                cr = 1.0 - math.exp(-hop_s / rel)
                # unclipped responses to peak, sustain and floor (the model is affine in them)
                t1, t2, t3, l1, l2, l3 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
                for k in range(n):
                    if k == onset:
                        t1 = 1.0
                    if onset <= k < release:
                        t1 -= t1 * cd
                        t2 += (1.0 - t2) * cd
                    elif k >= release:
                        t1 -= t1 * cr
                        t2 -= t2 * cr
                        t3 += (1.0 - t3) * cr
                    l1 += (t1 - l1) * ca
                    l2 += (t2 - l2) * ca
                    l3 += (t3 - l3) * ca
                    a[k], b[k], c[k] = l1, l2, l3
                saa, sab, sbb, sau, sbu = 0.0, 0.0, 0.0, 0.0, 0.0
                for k in range(onset, n):
                    r = u[k] - floor * c[k]
                    saa += a[k] * a[k]
                    sab += a[k] * b[k]
                    sbb += b[k] * b[k]
                    sau += a[k] * r
                    sbu += b[k] * r
                det = saa * sbb - sab * sab
                if abs(det) < 1e-12:
                    continue
                p = min(max((sbb * sau - sab * sbu) / det, 0.0), 1.0)
                s = min(max((saa * sbu - sab * sau) / det, 0.0), 1.0)
                _simulate(p, s, floor, ca, cd, cr, onset, release, n, sim)
                err = 0.0
                for k in range(onset, n):
                    err += (sim[k] - u[k]) ** 2
                if err < best[0]:
                    best[0], best[1], best[2], best[3], best[4], best[5] = err, att, p, s, dec, rel
    return best


def fit_level(audio: np.ndarray, onset: int, release: int, sample_rate: int) -> np.ndarray:
    """Envelope-model params (N_PARAMS,) [attack_s, peak, sustain, decay_s, release_s] fitted to a note
    whose key goes down at sample ``onset`` and up at ``release``."""
    u = envelope(audio, sample_rate)
    hop = int(round(HOP_S * sample_rate))
    onset_f = min(int(round(onset / hop)), len(u) - 1)
    release_f = max(onset_f + 1, int(round(release / hop)))
    best = _fit(u, onset_f, release_f, hop / sample_rate, _ATTACKS, _DECAYS, _RELEASES, RELEASE_FLOOR)
    if not np.isfinite(best[0]):
        return DEFAULT.copy()
    return best[1:].copy()


def simulate(params: np.ndarray, n_frames: int, onset_f: int, release_f: int, hop_s: float = HOP_S) -> np.ndarray:
    """The envelope model at frame rate (level units): what :func:`fit_level` compared with the note."""
    out = np.empty(n_frames)
    ca, cd, cr = (1.0 - math.exp(-hop_s / params[i]) for i in (ATTACK_S, DECAY_S, RELEASE_S))
    _simulate(float(params[PEAK]), float(params[SUSTAIN]), RELEASE_FLOOR, ca, cd, cr, onset_f, release_f,
              n_frames, out)
    return out


def note_level(note, sample_rate: int) -> np.ndarray:
    """A dataset note's fitted params, computed once and kept on the note (``note.level``)."""
    lv = note.level
    if lv is None:
        lv = fit_level(note.audio, note.onset, note.release, sample_rate)
        note.level = lv
    return lv


def shift_level(params: np.ndarray, shift: float) -> np.ndarray:
    """``params`` with peak and sustain moved by ``shift`` level units (clipped to 0..1); shift 0: the same array."""
    if shift == 0.0:
        return params
    out = np.array(params, np.float64)
    out[[PEAK, SUSTAIN]] = np.clip(out[[PEAK, SUSTAIN]] + shift, 0.0, 1.0)
    return out


@dataclass
class LevelBank:
    """Fitted envelope params per recorded (instrument, pitch, velocity), shipped in the model file.

    ``params`` (K, N_PARAMS) float32; ``instrument``, ``pitch``, ``velocity`` (K,) int.
    """

    params: np.ndarray
    instrument: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __post_init__(self) -> None:
        self.params = np.ascontiguousarray(self.params, dtype=np.float32)
        if self.params.ndim != 2 or self.params.shape[1] != N_PARAMS:
            raise ValueError(f"level bank params: need shape (K, {N_PARAMS}), got {self.params.shape}")
        self.instrument, self.pitch, self.velocity = note_keys(self.instrument, self.pitch, self.velocity,
                                                               len(self.params), "level bank")
        p = self.params
        if not np.all(np.isfinite(p)) or np.any(p[:, [ATTACK_S, DECAY_S, RELEASE_S]] <= 0) \
                or np.any((p[:, [PEAK, SUSTAIN]] < 0) | (p[:, [PEAK, SUSTAIN]] > 1)):
            raise ValueError("level bank params out of range (times must be > 0 s, levels 0..1)")

    def __len__(self) -> int:
        return len(self.instrument)

    def lookup(self, instrument: int, pitch: float, velocity: float) -> np.ndarray:
        """Params for a note: nearest recorded pitch of ``instrument``, interpolated linearly between the
        two recorded velocities around ``velocity`` (clamped at the ends); DEFAULT if the instrument has none."""
        idx = np.flatnonzero(self.instrument == instrument)
        if idx.size == 0:
            return DEFAULT.copy()
        dist = np.abs(self.pitch[idx] - pitch)
        near = idx[dist == dist.min()]
        near = near[self.pitch[near] == self.pitch[near].min()]  # a tie between two pitches: the lower
        near = near[np.argsort(self.velocity[near], kind="stable")]
        v = self.velocity[near].astype(np.float64)
        p = self.params[near].astype(np.float64)
        if velocity <= v[0] or len(near) == 1:
            return p[0].copy()
        if velocity >= v[-1]:
            return p[-1].copy()
        j = int(np.searchsorted(v, velocity))
        w = (velocity - v[j - 1]) / (v[j] - v[j - 1])
        return (1.0 - w) * p[j - 1] + w * p[j]


def build_levelbank(notes, sample_rate: int) -> LevelBank:
    """One entry per dataset note (its fitted params)."""
    params = [note_level(n, sample_rate) for n in notes]
    return LevelBank(np.stack(params) if params else np.zeros((0, N_PARAMS)),
                     [n.instrument_id for n in notes], [n.pitch for n in notes], [n.velocity for n in notes])
