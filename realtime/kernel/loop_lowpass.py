"""A low-pass inside the feedback loop: the network's drawn sample y_t becomes

    f_t = (1 - a_t) y_t + a_t f_(t-1),

and f_t is both what is heard and, mu-law coded, the network's next input (so the lag inputs read it
too). Each period the network continues passes the filter once more, so the upper harmonics die
faster than the lower ones, as a plucked string's do; Karplus-Strong's string model has its low-pass
in the same place. The prototype (models/experiments/LOG.md, "A low-pass in the loop") brought the generated notes'
spectral profile within ~4-7 dB of the real notes' and lifted the timbre figure from ~21 % to ~38 %.

``a_t`` is the amount ``a`` faded out as the note gets quiet: scaled by where a 10 ms peak envelope of
f lies between FADE_LO (0) and FADE_HI (1), linear in amplitude, so a fading note is left to the
network and does not collapse sooner than it would. The state lives in the control state
(realtime.model.local_cond.LOOP_*), one per voice. Both engines call the same arithmetic in float64 without
fast-math and code f to a class by the same table of decision thresholds, so they agree bit for bit.
Thread: generator.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from realtime.model import mulaw
from realtime.model.local_cond import LOOP_A, LOOP_ENV, LOOP_REL, LOOP_Y
from realtime.model.one_pole import one_pole_coeff

#: the largest amount a preset or CC may set (more detunes and silences notes: models/experiments/LOG.md)
A_MAX = 0.5
#: the envelope (linear amplitude) below which the filter is off (-35 dBFS), and above which it is fully on
#: (-25 dBFS): a fade from -40 to -30 dBFS left 1.1 % of the held notes' windows silent, this one 0.6 %
FADE_LO = 10.0 ** (-35.0 / 20.0)
FADE_HI = 10.0 ** (-25.0 / 20.0)
#: the envelope's release time, seconds
ENV_RELEASE_S = 0.01


def thresholds() -> np.ndarray:
    """(255,) float64, ascending: the sample value between mu-law class k and k + 1 (the midpoint of
    the two classes in the companded domain, expanded)."""
    y = (np.arange(255, dtype=np.float64) + 0.5) / (mulaw.MU / 2.0) - 1.0
    return np.sign(y) * ((1.0 + mulaw.MU) ** np.abs(y) - 1.0) / mulaw.MU


#: decision thresholds of the class coding (see :func:`thresholds`)
THRESHOLDS = thresholds()


def check_amount(a: float) -> float:
    """``a`` as a float if it is within 0..A_MAX; ValueError otherwise."""
    if not (np.isfinite(a) and 0.0 <= a <= A_MAX):
        raise ValueError(f"loop low-pass must be within 0-{A_MAX}, got {a}")
    return float(a)


def set_amount(state: np.ndarray, a: float, sample_rate: float) -> None:
    """Give the control state ``state`` the amount ``a`` (0 = off) from the next sample (generator thread)."""
    state[LOOP_A] = check_amount(a)
    state[LOOP_REL] = 1.0 - one_pole_coeff(ENV_RELEASE_S, sample_rate)


def start(state: np.ndarray, y: float) -> None:
    """Start the filter and its envelope at sample value ``y`` (a prime's last sample; generator thread)."""
    state[LOOP_Y] = y
    state[LOOP_ENV] = abs(y)


@njit(nogil=True)
def code(f: float) -> int:
    """The mu-law class of ``f``: how many thresholds lie at or below it (0.0 is class 128, as
    realtime.model.mulaw codes it)."""
    return np.searchsorted(THRESHOLDS, f, side="right")  # THRESHOLDS: a compile-time constant


@njit("float64(float64[::1])", nogil=True, cache=True)
def faded_amount(state: np.ndarray) -> float:
    """The amount the next sample is filtered by: ``a`` scaled by where the envelope lies between FADE_LO
    and FADE_HI (0..1)."""
    fade = (state[LOOP_ENV] - FADE_LO) / (FADE_HI - FADE_LO)
    fade = 0.0 if fade < 0.0 else 1.0 if fade > 1.0 else fade
    return state[LOOP_A] * fade


# Compiled here, at import, for its one signature, without fast-math: a function first compiled inside
# the fast-math kernel would inherit its flags (FMA contraction) and differ from the TorchScript engine.
@njit("Tuple((float64, int64))(float64[::1], float64)", nogil=True, cache=True)
def step(state: np.ndarray, y: float) -> tuple[float, int]:
    """Filter the drawn sample ``y``; return (f, the class of f: the next input). Updates ``state``."""
    env = state[LOOP_ENV]
    ae = faded_amount(state)
    f = (1.0 - ae) * y + ae * state[LOOP_Y]
    state[LOOP_Y] = f
    af = abs(f)
    rel = env * state[LOOP_REL]
    state[LOOP_ENV] = af if af > rel else rel
    return f, code(f)
