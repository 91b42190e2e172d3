"""Pitch-periodic sampler noise: uniforms whose Gaussian copula repeats one f0 period back.

The sampler draws each sample by inverse CDF from a uniform u_t. Independent uniforms put the
sampling noise between the harmonics as a broadband floor, and each period the network copies
(its lag inputs) differs from the last by fresh noise. Here u_t = Phi(z_t) with

    z_t = rho * z_(t - T_t) + sqrt(1 - rho^2) * e_t,    e_t ~ N(0, 1) i.i.d.,

T_t the f0 period in samples. A fractional period is met on average: the delay is the period
rounded down or up, the choice carried by error diffusion (an accumulator of the fractional
parts, no random numbers), so z_t stays exactly N(0, 1), each u_t exactly uniform and each sample
still a draw from the network's own distribution; but draws one period apart are correlated and
the noise's spectrum leans towards the harmonics of the played pitch. (Interpolating between the
two nearest past values instead would mix correlated values and let the variance grow.)
``rho = 0`` is the independent sampler. Until a full period of history exists, z_t = e_t.

Pure functions on preallocated arrays (Numba, ``nogil``); thread: generator.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

#: ring of past z values (a power of two, longer than the longest period the lags read)
RING = 2048
#: the largest correlation a preset may ask for (1 would repeat the same noise forever)
RHO_MAX = 0.95
#: state ints: ring write position, samples written since reset
POS, FILLED = 0, 1
_BELOW_ONE = 1.0 - 2.0 ** -53


def new_state() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ring (RING,) float64, ints (2,) int64, acc (1,) float64: the fractional-delay accumulator)
    of a freshly reset stream."""
    return np.zeros(RING, np.float64), np.zeros(2, np.int64), np.zeros(1, np.float64)


@njit(nogil=True, cache=True)
def correlate(normals: np.ndarray, periods: np.ndarray, rho: float, ring: np.ndarray,
              ints: np.ndarray, acc: np.ndarray, out: np.ndarray) -> None:
    """Turn i.i.d. standard ``normals`` (n,) into uniforms ``out`` (n,) in [0, 1) correlated by
    ``rho`` with the value ``periods[t]`` samples earlier (float, samples; clipped to 1..RING-2,
    met on average). Advances ``ring``/``ints``/``acc`` (see :func:`new_state`)."""
    mask = ring.shape[0] - 1
    c = math.sqrt(max(0.0, 1.0 - rho * rho))
    pos, filled, a = ints[POS], ints[FILLED], acc[0]
    for t in range(normals.shape[0]):
        z = normals[t]
        if rho != 0.0:
            p = min(max(float(periods[t]), 1.0), float(ring.shape[0] - 2))
            d = int(math.floor(p))
            a += p - d
            if a >= 1.0:
                a -= 1.0
                d += 1
            if filled >= d:
                z = rho * ring[(pos - d) & mask] + c * z
        ring[pos & mask] = z
        pos += 1
        filled += 1
        out[t] = min(0.5 * math.erfc(-z / math.sqrt(2.0)), _BELOW_ONE)  # the sampler's u is in [0, 1)
    ints[POS], ints[FILLED], acc[0] = pos & mask, min(filled, ring.shape[0]), a


def check_rho(rho: float) -> float:
    """``rho`` as a float in [0, RHO_MAX], or ValueError."""
    rho = float(rho)
    if not (0.0 <= rho <= RHO_MAX):
        raise ValueError(f"period noise correlation must be within 0..{RHO_MAX}, got {rho}")
    return rho
