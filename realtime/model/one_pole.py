"""One-pole smoothing coefficients: pure math shared by the local conditioning, the output stage
and the poly voices' envelopes (any thread)."""
from __future__ import annotations

import math


def one_pole_coeff(time_s: float, sample_rate: float) -> float:
    """Per-sample coefficient of ``y += c * (target - y)`` that reaches ~63 % of a step after
    ``time_s`` seconds at ``sample_rate`` Hz; 1.0 (a jump) when ``time_s`` <= 0."""
    if time_s <= 0.0:
        return 1.0
    return 1.0 - math.exp(-1.0 / (time_s * sample_rate))
