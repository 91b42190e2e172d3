"""Per-sample local conditioning: note gate, sin/cos of the f0 phase, loudness level, and the lag tap.

One definition, used by training (to label data) and by both engines (to
condition generation), so they compute bit-identical features.
The control state is a float64 array of ``STATE_SIZE`` (see the indices).
Pitch is kept in MIDI semitones so glides are linear in pitch. The level follows the
envelope model of :mod:`realtime.model.level` (params set at key-down by :func:`start_level`), plus
``LEVEL_OFFSET`` (level units; the expression pedal, 0 in training).

A feature row is [gate, f0_sin, f0_cos, level, lag, lag2, lagavg, pred, period] (float32): :func:`advance`
writes all but the lags and ``pred`` (a source-filter model's short-term prediction, its engine's),
which depend on what the network has generated, not on the controls:
``lag`` and ``lag2`` are the network's own input one and two f0 periods (``period``, in samples)
earlier, ``lagavg`` the mean of its inputs 1..LAGAVG_PERIODS periods earlier (the same phase of
the last periods: their sampling noise averaged down), read from a ring of past inputs by
:func:`push_lag` as each sample is generated (the engines' kernels), or by :func:`fill_lag` over a
whole known input sequence (training crops, priming): one function, so both compute the same bits.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from realtime.model import level
from realtime.model.one_pole import one_pole_coeff

PHASE, PITCH, PITCH_TARGET, PITCH_COEFF, GATE, GATE_TARGET, ATTACK_COEFF, RELEASE_COEFF = range(8)
LEVEL, LEVEL_TARGET, LEVEL_SUSTAIN, LEVEL_ATTACK, LEVEL_DECAY, LEVEL_RELEASE, LEVEL_OFFSET = range(8, 15)
#: the loop low-pass's amount, filter state, envelope and envelope release (realtime/kernel/loop_lowpass.py): per-voice
#: generator state kept here so every copy, save and restore of the control state carries it; :func:`advance`
#: never touches them
LOOP_A, LOOP_Y, LOOP_ENV, LOOP_REL = range(15, 19)
STATE_SIZE = 19
N_LOCAL = 9  # columns of a feature row: the channels of config.LOCAL_CHANNELS, then the period
LAG, LAG2, LAGAVG, PRED, PERIOD = 4, 5, 6, 7, 8  # the lag channels' columns, the prediction's; the f0 period
# (samples) the lags read at
#: how many past periods ``lagavg`` averages (a power of two: its 1 / n is exact)
LAGAVG_PERIODS = 8
#: length of the ring of past inputs the lags read (a power of two): lags are clipped to
#: 1..HIST-3 samples (MIDI 35 at 16 kHz is 259 samples; MIDI 12, 978; lag2 reads twice as far,
#: lagavg's last tap LAGAVG_PERIODS times: 8 periods fit down to MIDI 36, 245 samples)
HIST = 2048
#: the lag channel's scale: the companded sample (-1..1) times this (a power of two: exact). A new
#: input grown into a trained model starts at zero weights and Adam moves each weight by about the
#: learning rate per step, so a larger input learns as many times faster (this one 8x).
LAG_GAIN = 8.0




def new_state(pitch: float = 60.0, sample_rate: float = 16000.0, attack_s: float = 0.002,
              release_s: float = 0.02, phase: float = 0.0) -> np.ndarray:
    """A control state at rest (gate closed) holding ``pitch`` (MIDI)."""
    s = np.zeros(STATE_SIZE, dtype=np.float64)
    s[PHASE] = phase
    s[PITCH] = s[PITCH_TARGET] = pitch
    s[PITCH_COEFF] = 1.0
    s[ATTACK_COEFF] = one_pole_coeff(attack_s, sample_rate)
    s[RELEASE_COEFF] = one_pole_coeff(release_s, sample_rate)
    start_level(s, level.DEFAULT, sample_rate, attack=False)
    return s


def start_level(state: np.ndarray, params: np.ndarray, sample_rate: float, attack: bool = True) -> None:
    """Give the level the envelope ``params`` (see :mod:`realtime.model.level`) from the next sample.

    ``attack``: a key-down, the target jumps to the peak; False (legato, or at rest) keeps the
    target where it is and changes only where it heads and how fast.
    """
    if attack:
        state[LEVEL_TARGET] = params[level.PEAK]
    state[LEVEL_SUSTAIN] = params[level.SUSTAIN]
    state[LEVEL_ATTACK] = one_pole_coeff(params[level.ATTACK_S], sample_rate)
    state[LEVEL_DECAY] = one_pole_coeff(params[level.DECAY_S], sample_rate)
    state[LEVEL_RELEASE] = one_pole_coeff(params[level.RELEASE_S], sample_rate)


_RELEASE_FLOOR = level.RELEASE_FLOOR


@njit(nogil=True, cache=True, inline="always")
def advance(state: np.ndarray, inv_sr: float, feats: np.ndarray) -> None:
    """Advance the control state by one sample and write [gate, sin, cos, level, 0, 0, 0, 0, period] (float32)
    into ``feats`` (the lags, 0 here, are :func:`push_lag`'s; the prediction, 0 here, the source filter's)."""
    state[PITCH] += (state[PITCH_TARGET] - state[PITCH]) * state[PITCH_COEFF]
    f0 = 440.0 * 2.0 ** ((state[PITCH] - 69.0) / 12.0)
    a = state[LOOP_A]
    if a > 0.0:  # a loop low-pass delays the loop by its phase delay at f0: the period read is shorter by as much
        w = 2.0 * math.pi * f0 * inv_sr
        delay = math.atan2(a * math.sin(w), 1.0 - a * math.cos(w)) / w
        f0 = 1.0 / (max(1.0 / (f0 * inv_sr) - delay, 1.0) * inv_sr)
    ph = state[PHASE] + f0 * inv_sr
    ph -= math.floor(ph)
    state[PHASE] = ph
    g = state[GATE]
    gt = state[GATE_TARGET]
    c = state[ATTACK_COEFF] if gt > g else state[RELEASE_COEFF]
    g += (gt - g) * c
    state[GATE] = g
    feats[0] = np.float32(g)
    feats[1] = np.float32(math.sin(2.0 * math.pi * ph))
    feats[2] = np.float32(math.cos(2.0 * math.pi * ph))
    lt = state[LEVEL_TARGET]
    if gt > 0.5:  # held: decay towards the sustain level
        lt += (state[LEVEL_SUSTAIN] - lt) * state[LEVEL_DECAY]
    else:  # released (or at rest): fall below silence
        lt += (_RELEASE_FLOOR - lt) * state[LEVEL_RELEASE]
    state[LEVEL_TARGET] = lt
    lv = state[LEVEL] + (lt - state[LEVEL]) * state[LEVEL_ATTACK]
    state[LEVEL] = lv
    feats[3] = np.float32(max(lv + state[LEVEL_OFFSET], 0.0))
    feats[4] = np.float32(0.0)  # the lags: written by push_lag / fill_lag
    feats[5] = np.float32(0.0)
    feats[6] = np.float32(0.0)
    feats[PRED] = np.float32(0.0)
    feats[PERIOD] = np.float32(1.0 / (f0 * inv_sr))


@njit(nogil=True, cache=True)
def class_value(k) -> np.float32:
    """A mu-law class (0..255) as the lag channel carries it: companded, -1..1 (float32)."""
    return (np.float32(k) - np.float32(127.5)) / np.float32(127.5)


@njit(nogil=True, cache=True, inline="always")
def _tap(hist: np.ndarray, pos: int, period: np.float32) -> np.float32:
    """The ring's sample ``period`` (clipped to 1..HIST-3) steps back, interpolated, times LAG_GAIN."""
    p = min(max(period, np.float32(1.0)), np.float32(HIST - 3))
    n = int(p)
    f = p - np.float32(n)
    a = hist[(pos - n + 1) & (HIST - 1)]  # the sample at t - n
    b = hist[(pos - n) & (HIST - 1)]  # at t - n - 1
    return (a + f * (b - a)) * np.float32(LAG_GAIN)


# Not inlined, and compiled here, at import, for its one signature: a function first compiled while
# the engines' fast-math kernel is being compiled inherits the kernel's flags (reassociation, FMA
# contraction: lagavg's sum then differed from training's by an ulp), so it must exist before any
# kernel does; its float32 arithmetic keeps IEEE flags, and the kernel's lags the bits of training's.
@njit("Tuple((int64, float32, float32, float32))(float32[::1], int64, int64, float32)", nogil=True, cache=True)
def push_lag(hist: np.ndarray, pos: int, k: int,
             period: np.float32) -> tuple[int, np.float32, np.float32, np.float32]:
    """Push input class ``k`` (the sample before this step's) into the ring ``hist`` (HIST,) float32
    after position ``pos``; return (new position, the lag, lag2, lagavg): the input ``period`` (and
    ``2 * period``) samples earlier, the two nearest inputs linearly interpolated, times LAG_GAIN
    (float32), and the mean of the taps at 1, 2, .., LAGAVG_PERIODS periods (summed in that order,
    float32). The step's input is the sample at t-1, so the sample at t - m is the input m - 1
    pushes back. Thread: generator (or training)."""
    pos = (pos + 1) & (HIST - 1)
    hist[pos] = class_value(k)
    p = np.float32(period)
    lag = _tap(hist, pos, p)
    lag2 = _tap(hist, pos, np.float32(2.0) * p)
    total = lag + lag2
    for m in range(3, LAGAVG_PERIODS + 1):
        total += _tap(hist, pos, np.float32(m) * p)
    return pos, lag, lag2, total * np.float32(1.0 / LAGAVG_PERIODS)


def new_lag_ring() -> tuple[np.ndarray, int]:
    """A ring of past inputs as after a reset: all silence (mu-law.SILENCE), position HIST - 1."""
    from realtime.model.mulaw import SILENCE

    return np.full(HIST, class_value(SILENCE), np.float32), HIST - 1


def lag_from_reset(inputs: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`fill_lag` of ``inputs`` from a reset ring (a training crop, a prime); returns the ring and
    its position afterwards (the state an engine holds after consuming ``inputs``)."""
    hist, pos = new_lag_ring()
    return hist, fill_lag(inputs, feats, hist, pos)


@njit(nogil=True, cache=True)
def fill_lag(inputs: np.ndarray, feats: np.ndarray, hist: np.ndarray, pos: int) -> int:
    """Push ``inputs`` (n,) int64 classes one by one (:func:`push_lag`), writing each step's lags into
    ``feats[t, LAG]``, ``feats[t, LAG2]`` and ``feats[t, LAGAVG]`` at ``feats[t, PERIOD]``; returns the
    ring's new position."""
    for t in range(inputs.shape[0]):
        pos, lag, lag2, lagavg = push_lag(hist, pos, inputs[t], feats[t, PERIOD])
        feats[t, LAG] = lag
        feats[t, LAG2] = lag2
        feats[t, LAGAVG] = lagavg
    return pos


@njit(nogil=True, cache=True)
def fill(state: np.ndarray, sample_rate: float, out: np.ndarray) -> None:
    """Advance ``state`` by ``len(out)`` samples writing features into ``out`` (n, N_LOCAL) float32."""
    inv_sr = 1.0 / sample_rate
    for t in range(out.shape[0]):
        advance(state, inv_sr, out[t])


def features_for_note(n: int, onset: int, release: int, pitch: float, sample_rate: float,
                      phase: float = 0.0, attack_s: float = 0.002, release_s: float = 0.02,
                      level_params: np.ndarray | None = None, loop_lowpass: float = 0.0) -> np.ndarray:
    """Local features (n, N_LOCAL) float32 for a note whose gate opens at ``onset`` and closes at
    ``release`` (samples, either may be negative); its level follows ``level_params`` (default:
    realtime.model.level.DEFAULT) from the onset. The f0 phase is ``phase`` at sample 0 only when onset >= 0.
    ``loop_lowpass``: the amount of a low-pass in the feedback loop (realtime/kernel/loop_lowpass.py), whose
    phase delay shortens the period and f0 phase the engines play with (:func:`advance`)."""
    lead = max(0, -onset)  # a window starting after key-down: run the envelope from key-down on
    state = new_state(pitch, sample_rate, attack_s, release_s, phase)
    state[LOOP_A] = loop_lowpass
    out = np.empty((lead + n, N_LOCAL), dtype=np.float32)
    onset, release, n = onset + lead, release + lead, n + lead
    bounds = [0, max(0, min(onset, n)), max(0, min(max(release, onset), n)), n]
    for k, target in enumerate((0.0, 1.0, 0.0)):
        state[GATE_TARGET] = target
        if k == 1:
            start_level(state, level.DEFAULT if level_params is None else level_params, sample_rate)
        if bounds[k + 1] > bounds[k]:
            fill(state, sample_rate, out[bounds[k]:bounds[k + 1]])
    return out[lead:]
