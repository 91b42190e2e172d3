"""The lag channel: the network's own input one f0 period earlier, the same bits in training and playing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_grow import batch, trained_like
from wnl_testutil import small_model

from models.crops import make_crop
from models.grow import add_local
from realtime.engine.base import INT_HPOS
from realtime.engine.numba_engine import KERNEL_STATE, NumbaEngine
from realtime.engine.poly_engine import PolyEngine
from realtime.model import local_cond, mulaw

SR = 16000


def lags_of(inputs: np.ndarray, period: float, column: int = local_cond.LAG) -> np.ndarray:
    """The lag (or lag2, lagavg) column for ``inputs`` (int64 classes) at a constant ``period`` (samples), from a reset."""
    feats = np.zeros((len(inputs), local_cond.N_LOCAL), np.float32)
    feats[:, local_cond.PERIOD] = period
    local_cond.lag_from_reset(inputs, feats)
    return feats[:, column]


@pytest.mark.parametrize("period", [1.0, 7.0, 61.0, 250.0])
def test_a_whole_period_reads_the_sample_that_many_steps_back(period):
    rng = np.random.default_rng(int(period))
    inputs = rng.integers(0, 256, 1200)
    lag = lags_of(inputs, period)
    p = int(period)
    # the input at step t is the sample at t - 1, so the sample at t - p is inputs[t - p + 1]
    want = np.array([local_cond.class_value(k) for k in inputs[1:len(inputs) - p + 1]], np.float32) * \
        np.float32(local_cond.LAG_GAIN)
    np.testing.assert_array_equal(lag[p:], want)
    silence = local_cond.class_value(mulaw.SILENCE) * np.float32(local_cond.LAG_GAIN)
    assert np.all(lag[:p - 1] == silence)  # before the first sample: the reset ring's silence


@pytest.mark.parametrize("period", [1.0, 7.0, 61.0, 250.0, 1100.0])
def test_lag2_reads_two_periods_back(period):
    """lag2 is the lag at twice the period (clipped to the ring: 1100 -> 2045 samples)."""
    rng = np.random.default_rng(int(period) + 1)
    inputs = rng.integers(0, 256, 5000)
    p = min(2 * int(period), local_cond.HIST - 3)
    lag2 = lags_of(inputs, period, local_cond.LAG2)
    want = np.array([local_cond.class_value(k) for k in inputs[1:len(inputs) - p + 1]], np.float32) * \
        np.float32(local_cond.LAG_GAIN)
    np.testing.assert_array_equal(lag2[p:], want)
    if 2 * period < local_cond.HIST - 3:  # the same tap as the lag at twice the period
        np.testing.assert_array_equal(lag2, lags_of(inputs, 2 * period))


@pytest.mark.parametrize("period", [3.0, 61.0, 100.5, 245.0, 400.0])
def test_lagavg_is_the_mean_of_the_taps_one_to_eight_periods_back(period):
    """lagavg = (lag at 1 period + lag at 2 periods + ... + at 8) / 8, summed in that order in float32
    (each tap clipped to the ring as the lag is: 400 * 6 > 2045 samples)."""
    rng = np.random.default_rng(int(period) + 2)
    inputs = rng.integers(0, 256, 5000)
    got = lags_of(inputs, period, local_cond.LAGAVG)
    total = np.zeros(len(inputs), np.float32)
    for m in range(1, local_cond.LAGAVG_PERIODS + 1):
        total += lags_of(inputs, np.float32(m) * np.float32(period))
    np.testing.assert_array_equal(got, total * np.float32(1 / local_cond.LAGAVG_PERIODS))
    assert np.ptp(got[3000:]) > 1.0


def test_lagavg_averages_the_noise_of_a_periodic_tone_down():
    """On a periodic tone whose every sample carries independent noise (as the sampler's is), the
    lagavg's error against the clean tone has about an eighth of the lag's power: the point of it."""
    period, n = 64, 6000
    rng = np.random.default_rng(7)
    clean = 128 + np.round(60 * np.sin(2 * np.pi * np.arange(n) / period)).astype(np.int64)
    noisy = np.clip(clean + rng.integers(-3, 4, n), 0, 255)
    want = np.array([local_cond.class_value(k) for k in clean], np.float32) * np.float32(local_cond.LAG_GAIN)
    # step t's tap m periods back reads inputs[t - m * period + 1], which the tone makes clean[t + 1]
    t = np.arange(9 * period, n - 1)
    err_lag = lags_of(noisy, float(period))[t] - want[t + 1]
    err_avg = lags_of(noisy, float(period), local_cond.LAGAVG)[t] - want[t + 1]
    ratio = np.mean(err_avg ** 2) / np.mean(err_lag ** 2)
    assert 1 / 8 * 0.8 < ratio < 1 / 8 * 1.25, ratio


def test_a_fractional_period_interpolates_the_two_nearest_samples():
    inputs = np.arange(0, 200, dtype=np.int64)  # a ramp: each sample one class above the last
    lag = lags_of(inputs, 10.25)
    step = np.float32(local_cond.LAG_GAIN) / np.float32(127.5)  # one class in lag units
    # at step t the sample 10.25 back lies between the samples 10 and 11 back: a quarter of a class below 10 back
    ten_back = lag[100:190] + np.float32(0.25) * step
    np.testing.assert_allclose(ten_back, [local_cond.class_value(k) * local_cond.LAG_GAIN for k in
                                          inputs[91:181]], atol=1e-5)


def test_the_period_follows_the_pitch_and_its_glide():
    feats = local_cond.features_for_note(4000, 0, 4000, 57.0, SR)  # A3, 220 Hz
    assert feats[10, local_cond.PERIOD] == pytest.approx(SR / 220.0, rel=1e-6)
    s = local_cond.new_state(57.0, SR)
    s[local_cond.PITCH_TARGET] = 69.0  # glide an octave up to A4
    s[local_cond.PITCH_COEFF] = local_cond.one_pole_coeff(0.01, SR)
    out = np.empty((3200, local_cond.N_LOCAL), np.float32)
    local_cond.fill(s, float(SR), out)
    assert out[-1, local_cond.PERIOD] == pytest.approx(SR / 440.0, rel=1e-4)
    assert np.all(np.diff(out[:, local_cond.PERIOD]) <= 0)  # falls monotonically on the way


def test_the_engine_reads_the_lag_training_labels_its_crops_with():
    """A crop's lag column (training) equals the kernel's, teacher-forcing the crop's inputs: same bits."""
    n = 3000
    t = np.arange(n + 4000)
    audio = (0.3 * np.sin(2 * np.pi * 196.0 * t / SR)).astype(np.float32)  # G3
    rng = np.random.default_rng(0)
    inputs, _, local = make_crop(audio, 0, len(audio), 55, SR, 1000, n - 1000, rng, input_noise=1.0, start=2000)
    e = NumbaEngine(small_model(), max_block=4096)
    e.set_note(gate=1.0, pitch=55.0)
    e.teacher_force(inputs)
    kernel_feats = e._state[len(KERNEL_STATE)]  # the kernel's feature rows of the last block (numba_engine.scratch)
    for col in (local_cond.LAG, local_cond.LAG2, local_cond.LAGAVG):
        np.testing.assert_array_equal(kernel_feats[:n, col], local[col])
        assert np.ptp(local[col]) > 1.0  # a real tone, not a constant


def test_priming_leaves_the_ring_teacher_forcing_would():
    model = small_model(seed=3)
    snip = mulaw.encode((0.4 * np.sin(2 * np.pi * 110 * np.arange(700) / SR)).astype(np.float32))
    a, b = NumbaEngine(model, seed=1), NumbaEngine(model, seed=1)
    a.prime_classes(snip)
    b.teacher_force(np.concatenate(([mulaw.SILENCE], snip[:-1])))
    np.testing.assert_array_equal(a.hist, b.hist)
    assert a.ints[INT_HPOS] == b.ints[INT_HPOS]
    a.reset()
    assert np.all(a.hist == local_cond.class_value(mulaw.SILENCE))


def test_a_poly_voice_keeps_its_own_ring():
    """Voices of a lag model sound the same alone or beside others: each reads its own past."""
    model = small_model(seed=4)
    alone = PolyEngine(model, voices=3, seed=2)
    together = PolyEngine(model, voices=3, seed=2)
    for p in (alone, together):
        for v, pitch in enumerate((48.0, 55.0, 64.0)):
            p.set_note(v, gate=1.0, pitch=pitch)
            p.set_conditioning(v, pitch=pitch, instrument=v, velocity=100)
    alone.active[:] = [False, True, False]
    alone.generate(1500)
    together.generate(1500)
    np.testing.assert_array_equal(alone.voice_out[1], together.voice_out[1])
    np.testing.assert_array_equal(alone.state["hist"][1], together.state["hist"][1])
    assert not np.array_equal(together.state["hist"][0], together.state["hist"][1])


@pytest.mark.parametrize("name", ["lag", "lag2", "lagavg"])
def test_adding_a_lag_input_keeps_the_logits_and_its_weights_learn(name):
    old = trained_like()
    new = add_local(old, (name,))
    assert new.cfg.conditioning.local == old.cfg.conditioning.local + (name,)
    inputs, gvec, local = batch(old)
    col = {"lag": local_cond.LAG, "lag2": local_cond.LAG2, "lagavg": local_cond.LAGAVG}[name]
    lag = torch.from_numpy(np.stack([lags_of(x.numpy(), 37.5, col) for x in inputs]))[:, None]
    with torch.no_grad():
        a, b = old(inputs, gvec, local), new(inputs, gvec, torch.cat((local, lag), dim=1))
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    loss = torch.nn.functional.cross_entropy(new(inputs, gvec, torch.cat((local, lag), dim=1))[:, :, :-1],
                                             inputs[:, 1:])
    loss.backward()
    for proj in new.local_proj:
        assert proj.weight.grad[:, -1].abs().max() > 0
