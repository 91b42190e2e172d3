"""Output stage after the engine: note envelope, level and gain smoothing, DC blocker, safety limiter.

Thread: generator. ``process`` is a Numba kernel over a block, allocation
free; all state lives in one float64 array so the stage is cheap to copy,
reset and replay. Whatever the model does, the output is finite and its
peak never exceeds ``ceiling`` (< 1.0, i.e. below 0 dBFS).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from realtime.model.one_pole import one_pole_coeff

ENV, ENV_T, LEVEL, LEVEL_T, GAIN, GAIN_T, DC_X1, DC_Y1, LIM, ATTACK_C, RELEASE_C, SMOOTH_C, DC_R, LIM_REL, \
    CEILING, NONFINITE = range(16)
STATE_SIZE = 16


class OutputStage:
    """Smoothed gain chain + DC blocker + limiter on the model-rate stream."""

    def __init__(self, sample_rate: int, release_s: float = 0.3, attack_s: float = 0.001,
                 smooth_s: float = 0.01, dc_hz: float = 10.0, ceiling: float = 0.98,
                 limiter_release_s: float = 0.1) -> None:
        if not 0.0 < ceiling < 1.0:
            raise ValueError("limiter ceiling must be in (0, 1)")
        self.sample_rate = sample_rate
        s = np.zeros(STATE_SIZE, np.float64)
        s[LEVEL] = s[LEVEL_T] = s[GAIN] = s[GAIN_T] = s[LIM] = 1.0
        s[ATTACK_C] = one_pole_coeff(attack_s, sample_rate)
        s[RELEASE_C] = one_pole_coeff(release_s, sample_rate)
        s[SMOOTH_C] = one_pole_coeff(smooth_s, sample_rate)
        s[DC_R] = math.exp(-2.0 * math.pi * dc_hz / sample_rate)
        s[LIM_REL] = one_pole_coeff(limiter_release_s, sample_rate)
        s[CEILING] = ceiling
        self.state = s
        self._rest = s.copy()

    def reset(self) -> None:
        self.state[:] = self._rest

    def set_release(self, release_s: float) -> None:
        self.state[RELEASE_C] = one_pole_coeff(release_s, self.sample_rate)

    def set_targets(self, env: float | None = None, level: float | None = None, gain: float | None = None) -> None:
        """Targets reached smoothly: note envelope 0..1, velocity level 0..1, output gain (linear)."""
        if env is not None:
            self.state[ENV_T] = env
        if level is not None:
            self.state[LEVEL_T] = level
        if gain is not None:
            self.state[GAIN_T] = gain

    @property
    def nonfinite(self) -> int:
        """How many non-finite input samples were replaced by silence."""
        return int(self.state[NONFINITE])

    def process(self, x: np.ndarray, limit: bool = True) -> np.ndarray:
        """Process ``x`` (float32, model rate) in place and return it; ``limit=False`` stops before the
        limiter (an effect chain runs between, then :meth:`limit`)."""
        _process(x, self.state, True, limit)
        return x

    def limit(self, x: np.ndarray) -> np.ndarray:
        """Only the safety limiter (non-finite samples become silence), in place."""
        _process(x, self.state, False, True)
        return x


@njit(nogil=True, cache=True)
def _process(x, s, pre, limit):
    ceiling = s[CEILING]
    for t in range(x.shape[0]):
        v = np.float64(x[t])
        if not np.isfinite(v):
            v = 0.0
            s[NONFINITE] += 1
        if not pre:
            y = v
        else:
            c = s[ATTACK_C] if s[ENV_T] > s[ENV] else s[RELEASE_C]
            s[ENV] += (s[ENV_T] - s[ENV]) * c
            s[LEVEL] += (s[LEVEL_T] - s[LEVEL]) * s[SMOOTH_C]
            s[GAIN] += (s[GAIN_T] - s[GAIN]) * s[SMOOTH_C]
            v *= s[ENV] * s[LEVEL] * s[GAIN]
            # DC blocker: y = x - x1 + r*y1
            y = v - s[DC_X1] + s[DC_R] * s[DC_Y1]
            s[DC_X1] = v
            s[DC_Y1] = y
        if not limit:
            x[t] = np.float32(y)
            continue
        # limiter: instant attack (never above the ceiling), smooth release
        g = s[LIM] + (1.0 - s[LIM]) * s[LIM_REL]
        a = abs(y)
        if a * g > ceiling:
            g = ceiling / a
        s[LIM] = g
        x[t] = np.float32(y * g)
