"""LPCNet's probability floor in the sampler (issue 37, step 3): every class's probability is lowered by the floor
before the draw, so a class less likely than the floor is never drawn and the others are drawn in proportion to
what is left; 0 is the plain sampler; the Numba kernel and TorchScript draw the same with it."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import small_model

from realtime.engine.numba_engine import NumbaEngine
from realtime.engine.torch_engine import TorchScriptEngine
from realtime.kernel.generate import POW2_NEG, sample_from_logits


def logits_with_a_tail() -> np.ndarray:
    """Three likely classes and a long tail of unlikely ones (each 1e-4 to 3e-3 of the mass)."""
    lg = np.log(np.linspace(1e-4, 3e-3, 256))
    lg[[100, 128, 150]] = np.log([0.2, 0.35, 0.1])
    return lg.astype(np.float32)


def draws(logits: np.ndarray, floor: float, n: int = 20000) -> np.ndarray:
    probs = np.empty(256, np.float32)
    u = (np.arange(n) + 0.5) / n  # evenly spread uniforms: the draw frequencies are the CDF's steps
    return np.array([sample_from_logits(logits, np.float32(1.0), x, probs, POW2_NEG, floor) for x in u])


@pytest.mark.parametrize("floor", [0.001, 0.002, 0.004])
def test_no_class_below_the_floor_is_drawn_and_the_rest_keep_their_proportions(floor):
    lg = logits_with_a_tail()
    p = np.exp(lg.astype(np.float64) - lg.max())
    p /= p.sum()
    k = draws(lg, floor)
    drawn = np.unique(k)
    assert p[drawn].min() >= floor
    assert (p < floor).sum() > 50  # the floor really removes part of the tail
    want = np.maximum(p - floor, 0)
    want /= want.sum()
    got = np.bincount(k, minlength=256) / len(k)
    assert np.abs(got - want).max() < 2e-4


def test_a_zero_floor_is_the_plain_sampler():
    lg = logits_with_a_tail()
    k = draws(lg, 0.0)
    p = np.exp(lg.astype(np.float64) - lg.max())
    p /= p.sum()
    assert len(np.unique(k)) > 200  # the tail is drawn
    assert np.abs(np.bincount(k, minlength=256) / len(k) - p).max() < 2e-4


def test_numba_and_torchscript_draw_the_same_with_a_floor():
    m = small_model(seed=2)
    out = []
    for e in (NumbaEngine(m, seed=7), TorchScriptEngine(m, seed=7, device="cpu")):
        e.set_conditioning(pitch=64, instrument=1, velocity=90)
        e.set_note(gate=1.0, pitch=64.0)
        e.set_prob_floor(0.004)
        out.append(e.generate(1500))
    plain = NumbaEngine(m, seed=7)
    plain.set_conditioning(pitch=64, instrument=1, velocity=90)
    plain.set_note(gate=1.0, pitch=64.0)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], plain.generate(1500))  # the floor changed the draws


@pytest.mark.parametrize("bad", [-0.001, 0.02, float("nan")])
def test_a_floor_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="probability floor"):
        NumbaEngine(small_model(), seed=0).set_prob_floor(bad)
