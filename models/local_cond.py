"""Per-sample local conditioning: note gate and sin/cos of the f0 phase.

One definition, used by training (to label data) and by both engines (to
condition generation), so they compute bit-identical features.
The control state is a float64 array of ``STATE_SIZE`` (see the indices).
Pitch is kept in MIDI semitones so glides are linear in pitch.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

PHASE, PITCH, PITCH_TARGET, PITCH_COEFF, GATE, GATE_TARGET, ATTACK_COEFF, RELEASE_COEFF = range(8)
STATE_SIZE = 8
N_LOCAL = 3  # gate, f0_sin, f0_cos


def one_pole_coeff(time_s: float, sample_rate: float) -> float:
    """Per-sample smoothing coefficient reaching ~63 % of a step after ``time_s`` seconds (1.0 = jump)."""
    if time_s <= 0.0:
        return 1.0
    return 1.0 - math.exp(-1.0 / (time_s * sample_rate))


def new_state(pitch: float = 60.0, sample_rate: float = 16000.0, attack_s: float = 0.002,
              release_s: float = 0.02, phase: float = 0.0) -> np.ndarray:
    """A control state at rest (gate closed) holding ``pitch`` (MIDI)."""
    s = np.zeros(STATE_SIZE, dtype=np.float64)
    s[PHASE] = phase
    s[PITCH] = s[PITCH_TARGET] = pitch
    s[PITCH_COEFF] = 1.0
    s[ATTACK_COEFF] = one_pole_coeff(attack_s, sample_rate)
    s[RELEASE_COEFF] = one_pole_coeff(release_s, sample_rate)
    return s


@njit(nogil=True, cache=True, inline="always")
def advance(state: np.ndarray, inv_sr: float, feats: np.ndarray) -> None:
    """Advance the control state by one sample and write [gate, sin, cos] (float32) into ``feats``."""
    state[PITCH] += (state[PITCH_TARGET] - state[PITCH]) * state[PITCH_COEFF]
    f0 = 440.0 * 2.0 ** ((state[PITCH] - 69.0) / 12.0)
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


@njit(nogil=True, cache=True)
def fill(state: np.ndarray, sample_rate: float, out: np.ndarray) -> None:
    """Advance ``state`` by ``len(out)`` samples writing features into ``out`` (n, 3) float32."""
    inv_sr = 1.0 / sample_rate
    for t in range(out.shape[0]):
        advance(state, inv_sr, out[t])


def features_for_note(n: int, onset: int, release: int, pitch: float, sample_rate: float,
                      phase: float = 0.0, attack_s: float = 0.002, release_s: float = 0.02) -> np.ndarray:
    """Local features (n, 3) float32 for a note whose gate opens at ``onset`` and closes at ``release`` (samples)."""
    state = new_state(pitch, sample_rate, attack_s, release_s, phase)
    out = np.empty((n, N_LOCAL), dtype=np.float32)
    bounds = [0, max(0, min(onset, n)), max(0, min(max(release, onset), n)), n]
    for k, target in enumerate((0.0, 1.0, 0.0)):
        state[GATE_TARGET] = target
        if bounds[k + 1] > bounds[k]:
            fill(state, sample_rate, out[bounds[k]:bounds[k + 1]])
    return out
