"""The envelope bank: each recorded note's spectral envelope (LSFs) and excitation gain, frame by frame, shipped
in the model file, and the play-time lookup that walks a held note along it.

What a frame is (the analysis is the lab's, models/envelope.py; the arithmetic in realtime/model/source_filter.py):
every ``hop`` samples (10 ms) from the note's key-down on, through its release tail, the LPC polynomial of order
source_filter.ORDER of the pre-emphasised audio as ORDER line spectral frequencies (radians, ascending), and the
RMS of the LPC residual (the excitation) around the frame, linear. Frame ``f`` of a note sits ``f * hop`` samples
after key-down; its key-up sits at frame position ``release`` (a float).

The lookup (:func:`envelope_at`, Numba, no allocation) takes a note's time since key-down and, once released, since
key-up, both in frames, and the (instrument, fractional pitch, velocity) neighbours of :func:`neighbours` (the two
recorded pitches around the played one, within each the two recorded velocities around the played one, with
linear weights); per neighbour:

- held (not released): the frame at that position, LSFs and log gain linearly interpolated between frames; past
  the recording's key-up the last ``LOOP_FRAMES`` frames before key-up are walked back and forth (a ping-pong
  loop, continuous), their log gain detrended and the note's decay over its last ``SLOPE_FRAMES`` frames before
  key-up (``tail_slope``, never rising) continued;
- released: the release frames from the recording's key-up on, walked as long as the key has been up; the log
  gain is the held note's at key-up plus the recording's fall since its own key-up (so a note released early
  falls from where it is, not from where the recording was), the LSFs cross-fade from the held frame to the
  release frames over ``RELEASE_XFADE_FRAMES``; past the recording's last frame the gain keeps falling at
  ``END_FADE_PER_FRAME``.

The neighbours' LSFs mix linearly (then :func:`realtime.model.source_filter.tidy_lsf`), their log gains linearly
(a geometric mean of the gains). The per-sample tracks (:func:`tracks_into`: a new LPC polynomial every ``update``
samples, 1 ms, and the gain linear between 1 ms knots) are what the engines play and what training normalises
by, one definition (see :func:`tracks_into` for the exact timing). Pure numpy + numba.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from realtime.model.note_keys import note_keys
from realtime.model.source_filter import ORDER, lsf_to_lpc_into, tidy_lsf

#: analysis frames every HOP_S seconds (the bank's hop in samples is stored with it)
HOP_S = 0.01
#: the LPC polynomial is renewed (and the gain's knots lie) every UPDATE_S seconds of the note
UPDATE_S = 0.001
#: a note held past its recording loops (back and forth) over this many frames before its key-up
LOOP_FRAMES = 10
#: the held note's decay continued past the recording: the slope of its log gain over this many frames before key-up
SLOPE_FRAMES = 50
#: the steepest continued decay (natural-log gain per frame: -0.23 = -200 dB/s at a 10 ms hop)
MIN_SLOPE = -0.23
#: after key-up the LSFs move from the held frame to the release frames over this many frames
RELEASE_XFADE_FRAMES = 3.0
#: past the recording's last frame the gain falls this much per frame (natural log; 0.69 = 60 dB in 100 ms)
END_FADE_PER_FRAME = 0.69
#: the smallest stored gain (linear): the 16-bit floor; log gains stay finite
GAIN_FLOOR = 1e-5


def hop_samples(sample_rate: int) -> int:
    """The analysis hop (samples) at ``sample_rate``."""
    return int(round(HOP_S * sample_rate))


def update_samples(sample_rate: int) -> int:
    """How many samples one LPC polynomial (and one gain ramp) lasts at ``sample_rate``."""
    return max(1, int(round(UPDATE_S * sample_rate)))


def flat_lsf(order: int = ORDER) -> np.ndarray:
    """The LSFs of A(z) = 1 (a flat envelope): ``order`` angles evenly spaced in (0, pi)."""
    return np.arange(1, order + 1) * (np.pi / (order + 1))


@njit(cache=True, nogil=True)
def _frame_at(lsf: np.ndarray, lg: np.ndarray, s: int, nf: int, q: float, w: float, acc: np.ndarray) -> float:
    """Frame position ``q`` (clamped to the entry's frames s..s+nf-1) of the entry starting at frame ``s``: adds
    ``w`` times its interpolated LSFs to ``acc``, returns its interpolated log gain."""
    if q <= 0.0:
        i, f = 0, 0.0
    elif q >= nf - 1:
        i, f = nf - 1, 0.0
    else:
        i = int(q)
        f = q - i
    a = s + i
    b = s + min(i + 1, nf - 1)
    for k in range(acc.shape[0]):
        acc[k] += w * ((1.0 - f) * lsf[a, k] + f * lsf[b, k])
    return (1.0 - f) * lg[a] + f * lg[b]


@njit(cache=True, nogil=True)
def _held_at(lsf, lg, s, nf, rel, slope, q, w, acc) -> float:
    """A held note at frame position ``q``: the recording until its key-up, then the ping-pong loop with the
    continued decay (see the module docstring). Adds ``w`` x LSFs to ``acc``; returns the log gain."""
    qend = min(max(rel, 0.0), nf - 1.0)
    if q <= qend:
        return _frame_at(lsf, lg, s, nf, q, w, acc)
    span = min(float(LOOP_FRAMES), qend)
    d = q - qend
    if span <= 0.0:
        qq = qend
    else:
        m = d - 2.0 * span * math.floor(d / (2.0 * span))
        qq = qend - (m if m <= span else 2.0 * span - m)
    return _frame_at(lsf, lg, s, nf, qq, w, acc) + slope * (d + qend - qq)


@njit(cache=True, nogil=True)
def _entry_at(lsf, lg, s, nf, rel, slope, pos_on, pos_off, w, acc) -> float:
    """One recorded note at ``pos_on`` frames after key-down and, when ``pos_off`` >= 0, ``pos_off`` frames after
    key-up: adds ``w`` x its LSFs to ``acc``, returns its log gain (unweighted)."""
    if pos_off < 0.0:
        return _held_at(lsf, lg, s, nf, rel, slope, pos_on, w, acc)
    c = min(pos_off / RELEASE_XFADE_FRAMES, 1.0)
    held = _held_at(lsf, lg, s, nf, rel, slope, pos_on - pos_off, w * (1.0 - c), acc)
    r = min(max(rel, 0.0), nf - 1.0)
    p = r + pos_off
    fall = _frame_at(lsf, lg, s, nf, p, w * c, acc) - _frame_at(lsf, lg, s, nf, r, 0.0, acc)
    if p > nf - 1:
        fall -= END_FADE_PER_FRAME * (p - (nf - 1))
    return held + fall


@njit(cache=True, nogil=True)
def _velocity_pair(order, vel, first, count, velocity, wg, idx, w, n) -> int:
    """The entries ``order[first:first+count]`` (sorted by velocity ``vel``) around ``velocity``, weighted, times
    ``wg``, appended to ``idx`` / ``w`` from ``n``; returns the new count."""
    lo = first
    hi = first + count - 1
    if count == 1 or velocity <= vel[lo]:
        idx[n], w[n] = order[lo], wg
        return n + 1
    if velocity >= vel[hi]:
        idx[n], w[n] = order[hi], wg
        return n + 1
    j = lo
    while vel[j + 1] < velocity:
        j += 1
    t = (velocity - vel[j]) / (vel[j + 1] - vel[j])
    idx[n], w[n] = order[j], wg * (1.0 - t)
    idx[n + 1], w[n + 1] = order[j + 1], wg * t
    return n + 2


@njit(cache=True, nogil=True)
def neighbours(tables, instrument: int, pitch: float, velocity: float, idx: np.ndarray, w: np.ndarray) -> int:
    """The recorded notes a played (instrument, pitch, velocity) reads and their weights (summing to 1), written
    into ``idx`` / ``w`` (4,); returns how many (0: the bank has no note of this instrument). The two recorded
    pitches around ``pitch`` (clamped at the instrument's lowest and highest), in each the two recorded velocities
    around ``velocity`` (clamped), linearly. ``tables``: :attr:`EnvelopeBank.tables`."""
    order, vel, gpitch, gfirst, gcount, ifirst, icount = tables[7], tables[8], tables[9], tables[10], tables[11], \
        tables[12], tables[13]
    if instrument < 0 or instrument >= ifirst.shape[0] or icount[instrument] == 0:
        return 0
    g0 = ifirst[instrument]
    g1 = g0 + icount[instrument] - 1
    if pitch <= gpitch[g0] or g0 == g1:
        return _velocity_pair(order, vel, gfirst[g0], gcount[g0], velocity, 1.0, idx, w, 0)
    if pitch >= gpitch[g1]:
        return _velocity_pair(order, vel, gfirst[g1], gcount[g1], velocity, 1.0, idx, w, 0)
    j = g0
    while gpitch[j + 1] < pitch:
        j += 1
    t = (pitch - gpitch[j]) / (gpitch[j + 1] - gpitch[j])
    if t <= 0.0:
        return _velocity_pair(order, vel, gfirst[j], gcount[j], velocity, 1.0, idx, w, 0)
    n = _velocity_pair(order, vel, gfirst[j], gcount[j], velocity, 1.0 - t, idx, w, 0)
    return _velocity_pair(order, vel, gfirst[j + 1], gcount[j + 1], velocity, t, idx, w, n)


@njit(cache=True, nogil=True)
def envelope_at(tables, idx: np.ndarray, w: np.ndarray, n: int, pos_on: float, pos_off: float,
                out_lsf: np.ndarray) -> float:
    """The mixed envelope of ``n`` weighted entries (from :func:`neighbours`) at ``pos_on`` frames after key-down
    and (``pos_off`` >= 0) ``pos_off`` frames after key-up: LSFs into ``out_lsf`` (ORDER,) (tidied), returns the
    log gain (natural log of the linear excitation RMS; -inf when ``n`` is 0, with flat LSFs). No allocation."""
    lsf, lg, start, nfr, rel, slope = tables[0], tables[1], tables[2], tables[3], tables[4], tables[5]
    p = out_lsf.shape[0]
    if n == 0:
        for k in range(p):
            out_lsf[k] = (k + 1) * math.pi / (p + 1)
        return -math.inf
    for k in range(p):
        out_lsf[k] = 0.0
    total = 0.0
    for i in range(n):
        e = idx[i]
        total += w[i] * _entry_at(lsf, lg, start[e], nfr[e], rel[e], slope[e], pos_on, pos_off, w[i], out_lsf)
    tidy_lsf(out_lsf)
    return total


def log_gains(gain: np.ndarray) -> np.ndarray:
    """Natural-log gains (float64) of linear ones, floored at GAIN_FLOOR."""
    return np.log(np.maximum(np.asarray(gain, np.float64), GAIN_FLOOR))


def tail_slope(log_gain: np.ndarray, release: float) -> float:
    """The decay a note held past its recording continues (natural-log gain per frame, MIN_SLOPE..0): the
    least-squares slope of its log gains ``log_gain`` (its frames) over the SLOPE_FRAMES frames before its key-up
    at frame position ``release``; 0 with fewer than 5 such frames."""
    end = int(min(max(release, 0.0), len(log_gain) - 1))
    lo = max(0, end - SLOPE_FRAMES)
    if end - lo < 5:
        return 0.0
    y = np.asarray(log_gain[lo:end + 1], np.float64)
    return float(min(max(np.polyfit(np.arange(len(y), dtype=np.float64), y, 1)[0], MIN_SLOPE), 0.0))


def single_tables(lsf: np.ndarray, lg: np.ndarray, rel: float, slope: float):
    """The first six :attr:`EnvelopeBank.tables` of a bank holding one note (frames ``lsf`` (F, ORDER), log gains
    ``lg`` (F,)), for :func:`envelope_at` with ``idx=[0]``, ``w=[1]``."""
    return (np.ascontiguousarray(lsf, np.float64), np.ascontiguousarray(lg, np.float64), np.zeros(1, np.int64),
            np.full(1, len(lsf), np.int64), np.full(1, float(rel)), np.full(1, float(slope)))


@njit(cache=True, nogil=True)
def _knot(tables, idx, w, n, tau: int, off_at: int, known_at: int, hop: float, lsf_out: np.ndarray) -> float:
    """The envelope at ``tau`` samples after key-down, released when the key-up (``off_at`` samples after key-down,
    < 0: not yet) is known by ``known_at``: LSFs into ``lsf_out``, returns the gain (linear)."""
    pos_off = (tau - off_at) / hop if 0 <= off_at <= known_at else -1.0
    return math.exp(envelope_at(tables, idx, w, n, tau / hop, pos_off, lsf_out))


@njit(cache=True, nogil=True)
def tracks_into(tables, idx: np.ndarray, w: np.ndarray, n: int, hop: int, update: int, tau0: int, off_at: int,
                out_a: np.ndarray, out_g: np.ndarray, lsf_work: np.ndarray, work: np.ndarray) -> None:
    """The per-sample LPC rows ``out_a`` (T, ORDER + 1) and gains ``out_g`` (T,) of a note whose sample ``t`` of the
    output lies ``tau0 + t`` samples after key-down (negative: before it), its key up ``off_at`` samples after
    key-down (< 0: held throughout). ``lsf_work`` (ORDER,), ``work`` (2, ORDER + 2) scratch.

    The timing the engines keep (1 ms blocks m = floor(tau / update) from key-down): block m's samples filter with
    the LSFs at tau = (m + 1) * update (a lookahead of at most 1 ms) and their gain runs linearly from knot m to
    knot m + 1, knot m being the gain at tau = m * update; a block or knot computed at the start of block m counts
    the note as released when its key-up came by tau = m * update (so knot m + 1 and the LSFs of block m know of
    a key-up by the start of block m)."""
    T = out_g.shape[0]
    t = 0
    while t < T:
        tau = tau0 + t
        mu = (tau // update) * update
        k0 = _knot(tables, idx, w, n, mu, off_at, mu - update, float(hop), lsf_work)
        k1 = _knot(tables, idx, w, n, mu + update, off_at, mu, float(hop), lsf_work)  # and the block's LSFs
        first = t
        lsf_to_lpc_into(lsf_work, out_a[first], work)
        for j in range(tau - mu, update):
            if t >= T:
                break
            if t != first:
                out_a[t, :] = out_a[first]
            out_g[t] = k0 + (k1 - k0) * (j + 1) / update
            t += 1


@dataclass
class EnvelopeBank:
    """Each recorded note's frames, shipped in the model file (``envelope/<name>``).

    ``lsf`` (F, ORDER) float32 radians and ``gain`` (F,) float32 linear: every note's frames, one after another;
    per note (K,): ``start`` (its first frame's row), ``n_frames``, ``release`` (its key-up, frames after its
    key-down, float32), ``tonal`` (bool: it has an f0), ``instrument``, ``pitch``, ``velocity`` (int32);
    ``hop`` (samples per frame, shape (1,)). Derived on construction: the log gains, each note's continued decay
    (``tail_slope``) and the sorted index :func:`neighbours` walks, all in :attr:`tables`.
    """

    lsf: np.ndarray
    gain: np.ndarray
    start: np.ndarray
    n_frames: np.ndarray
    release: np.ndarray
    tonal: np.ndarray
    instrument: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    hop: np.ndarray

    def __post_init__(self) -> None:
        self.lsf = np.ascontiguousarray(self.lsf, np.float32)
        self.gain = np.ascontiguousarray(self.gain, np.float32)
        if self.lsf.ndim != 2 or self.lsf.shape[1] != ORDER:
            raise ValueError(f"envelope bank lsf: need shape (F, {ORDER}), got {self.lsf.shape}")
        if self.gain.shape != (len(self.lsf),):
            raise ValueError("envelope bank gain: one per frame")
        self.start = np.asarray(self.start, np.int64)
        self.n_frames = np.asarray(self.n_frames, np.int64)
        self.release = np.asarray(self.release, np.float32)
        self.tonal = np.asarray(self.tonal, bool)
        k = len(self.start)
        if not all(a.shape == (k,) for a in (self.n_frames, self.release, self.tonal)):
            raise ValueError("envelope bank arrays disagree in length")
        self.instrument, self.pitch, self.velocity = note_keys(self.instrument, self.pitch, self.velocity, k,
                                                               "envelope bank")
        self.hop = np.asarray(self.hop, np.int64).reshape(-1)
        if self.hop.shape != (1,) or self.hop[0] <= 0:
            raise ValueError("envelope bank hop: one positive number of samples")
        if k and (np.any(self.n_frames <= 0) or np.any(self.start < 0)
                  or np.any(self.start + self.n_frames > len(self.lsf))):
            raise ValueError("envelope bank: a note's frames lie outside the frame table")
        if not (np.all(np.isfinite(self.lsf)) and np.all(np.isfinite(self.gain)) and np.all(np.isfinite(self.release))):
            raise ValueError("envelope bank holds NaN or Inf")
        if np.any(self.gain < 0) or np.any(self.lsf <= 0) or np.any(self.lsf >= np.pi) \
                or np.any(np.diff(self.lsf, axis=1) <= 0):
            raise ValueError("envelope bank out of range (gains must be >= 0, LSFs ascending in (0, pi))")
        self._derive()

    def _derive(self) -> None:
        lg = log_gains(self.gain)
        slope = np.array([tail_slope(lg[s:s + n], r) for s, n, r in zip(self.start, self.n_frames, self.release)])
        self.tail_slope = slope
        order = np.lexsort((self.velocity, self.pitch, self.instrument)).astype(np.int64)
        keys = np.stack([self.instrument[order], self.pitch[order]], axis=1)
        new = np.ones(len(order), bool)
        new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        gfirst = np.flatnonzero(new).astype(np.int64)
        gcount = np.diff(np.append(gfirst, len(order))).astype(np.int64)
        ginst = self.instrument[order][gfirst]
        n_inst = int(self.instrument.max()) + 1 if len(self) else 0
        ifirst = np.zeros(n_inst, np.int64)
        icount = np.zeros(n_inst, np.int64)
        for i in range(n_inst):
            gs = np.flatnonzero(ginst == i)
            if gs.size:
                ifirst[i], icount[i] = gs[0], gs.size
        self.tables = (self.lsf.astype(np.float64), lg, self.start, self.n_frames, self.release.astype(np.float64),
                       slope, self.tonal, order, self.velocity[order].astype(np.float64),
                       self.pitch[order][gfirst].astype(np.float64), gfirst, gcount, ifirst, icount)
        self._idx = np.zeros(4, np.int64)
        self._w = np.zeros(4)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def hop_samples(self) -> int:
        return int(self.hop[0])

    def is_tonal(self, instrument: int) -> bool:
        """Whether the instrument's notes have an f0 (all its notes tonal); True for an instrument without notes."""
        sel = self.instrument == instrument
        return bool(np.all(self.tonal[sel])) if sel.any() else True

    def lookup(self, instrument: int, pitch: float, velocity: float, since_on_s: float,
               since_off_s: float | None = None, sample_rate: int = 16000) -> tuple[np.ndarray, float]:
        """(LSFs (ORDER,) float64, gain (linear)) of a note played at (``instrument``, fractional ``pitch``,
        ``velocity``), ``since_on_s`` seconds after key-down and ``since_off_s`` after key-up (None: held).
        Gain 0 with flat LSFs for an instrument the bank has no note of. ``sample_rate``: the model's (the bank
        keeps its hop in samples). For tests and tools; the engines call :func:`neighbours` and :func:`envelope_at`
        on frame positions."""
        n = neighbours(self.tables, int(instrument), float(pitch), float(velocity), self._idx, self._w)
        per = sample_rate / self.hop_samples  # frames per second
        out = np.empty(ORDER)
        lg = envelope_at(self.tables, self._idx, self._w, n, since_on_s * per,
                         -1.0 if since_off_s is None else since_off_s * per, out)
        return out, float(math.exp(lg))


#: the model file's ``envelope/<key>`` arrays
BANK_KEYS = ("lsf", "gain", "start", "n_frames", "release", "tonal", "instrument", "pitch", "velocity", "hop")


def lpc_rows(lsf: np.ndarray) -> np.ndarray:
    """LPC polynomials (F, ORDER + 1) of LSF rows (F, ORDER) (float64)."""
    lsf = np.asarray(lsf, np.float64)
    out = np.empty((len(lsf), lsf.shape[1] + 1))
    work = np.empty((2, lsf.shape[1] + 2))
    for i in range(len(lsf)):
        lsf_to_lpc_into(lsf[i], out[i], work)
    return out
