"""LSFs: LPC -> LSF -> LPC round-trips, and LSFs interpolated (between frames, pitches, velocities, as the envelope
bank does) always make a minimum-phase filter."""
from __future__ import annotations

import numpy as np
import pytest
from envelope_bank_data import make_bank

from realtime.model.envelope import lpc_rows
from realtime.model.source_filter import ORDER, lpc_to_lsf, lsf_to_lpc, tidy_lsf


def random_lpc(rng: np.random.Generator, order: int = ORDER, max_k: float = 0.99) -> np.ndarray:
    """A minimum-phase LPC polynomial from random reflection coefficients |k| < max_k (the step-up recursion)."""
    a = np.array([1.0])
    for k in rng.uniform(-max_k, max_k, order):
        ext = np.append(a, 0.0)
        a = ext + k * ext[::-1]
    return a


def max_root(a: np.ndarray) -> float:
    return float(np.max(np.abs(np.roots(a))))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_k", [0.5, 0.9, 0.99])
def test_lpc_lsf_round_trip(seed, max_k):
    a = random_lpc(np.random.default_rng(seed), max_k=max_k)
    lsf = lpc_to_lsf(a)
    assert np.all(np.diff(lsf) > 0) and 0 < lsf[0] and lsf[-1] < np.pi
    np.testing.assert_allclose(lsf_to_lpc(lsf), a, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_interpolated_lsfs_stay_minimum_phase(seed, t):
    rng = np.random.default_rng(100 + seed)
    a, b = (lpc_to_lsf(random_lpc(rng, max_k=0.995)) for _ in range(2))
    mix = (1.0 - t) * a + t * b
    tidy_lsf(mix)
    assert max_root(lsf_to_lpc(mix)) < 1.0


@pytest.mark.parametrize("pitch,velocity,on,off", [(60.0, 64, 0.03, None), (61.0, 82, 0.2, None),
                                                   (60.7, 90, 0.5, None), (61.3, 70, 0.9, 0.05),
                                                   (63.0, 120, 0.4, 0.3), (55.0, 10, 2.0, None)])
def test_bank_lookups_are_minimum_phase(pitch, velocity, on, off):
    bank = make_bank()
    lsf, gain = bank.lookup(0, pitch, velocity, on, off)
    assert gain > 0
    assert np.all(np.diff(lsf) > 0)
    assert max_root(lpc_rows(lsf[None])[0]) < 1.0
