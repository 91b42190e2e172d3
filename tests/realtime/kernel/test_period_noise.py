"""Pitch-periodic sampler noise: uniform marginals, the correlation one f0 period back, and the
engines' invariants (block sizes, Numba = TorchScript, re-priming, rho 0 = the PCG64 stream)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_equivalence import drive
from wnl_testutil import classes_of, small_model

from realtime.control.controller import Controller
from realtime.control.poly_controller import PolyController
from realtime.control.presets import ModelSection, Preset
from realtime.engine.numba_engine import NumbaEngine
from realtime.engine.poly_engine import PolyEngine
from realtime.engine.torch_engine import TorchScriptEngine
from realtime.kernel import period_noise
from realtime.sound.output_stage import OutputStage

N = 200_000


def correlated(rho: float, period: float, n: int = N, seed: int = 0) -> np.ndarray:
    ring, ints, acc = period_noise.new_state()
    u = np.empty(n)
    period_noise.correlate(np.random.default_rng(seed).standard_normal(n), np.full(n, period, np.float32),
                           rho, ring, ints, acc, u)
    return u


def corr(u: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(u[:-lag], u[lag:])[0, 1])


def uniform_corr(rho: float) -> float:
    """Pearson correlation of two uniforms whose Gaussian copula has correlation ``rho``."""
    return 6.0 / math.pi * math.asin(rho / 2.0)


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("period", [36.0, 19.25, 100.5])
def test_uniforms_stay_uniform(rho, period):
    u = correlated(rho, period)
    assert u.min() >= 0.0 and u.max() < 1.0
    hist = np.histogram(u, bins=20, range=(0, 1))[0] / (N / 20)
    assert np.abs(hist - 1).max() < 0.06  # each u is uniform: the sampler still draws from the network's distribution


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("period", [36.0, 61.0])
def test_a_whole_period_correlates_by_rho_there_only(rho, period):
    u = correlated(rho, period)
    T = int(period)
    assert corr(u, T) == pytest.approx(uniform_corr(rho), abs=0.02)
    for lag in (1, T // 2, T - 1, T + 1):
        assert abs(corr(u, lag)) < 0.02


@pytest.mark.parametrize("rho", [0.25, 0.5])
@pytest.mark.parametrize("period", [19.25, 100.5])
def test_a_fractional_period_is_met_on_average(rho, period):
    """The delay alternates between the two whole periods around it (error diffusion): the
    correlation splits between them, centred on the period. (Consecutive samples that copy one
    ancestor also correlate with each other, the more so the larger rho: the sums run high.)"""
    u = correlated(rho, period)
    lo = int(math.floor(period))
    c_lo, c_hi = corr(u, lo), corr(u, lo + 1)
    assert c_lo + c_hi == pytest.approx(uniform_corr(rho), abs=0.07)
    assert (lo * c_lo + (lo + 1) * c_hi) / (c_lo + c_hi) == pytest.approx(period, abs=0.07)


def test_zero_rho_is_independent_and_history_starts_after_a_period():
    u = correlated(0.0, 30.0)
    assert abs(corr(u, 30)) < 0.01
    ring, ints, acc = period_noise.new_state()
    e = np.random.default_rng(1).standard_normal(64)
    out = np.empty(64)
    period_noise.correlate(e, np.full(64, 30.0, np.float32), 0.9, ring, ints, acc, out)
    z = np.array([math.sqrt(2) * _erfinv(2 * x - 1) for x in out])
    np.testing.assert_allclose(z[:30], e[:30], atol=1e-9)  # no past yet: the normals as they are
    np.testing.assert_allclose(z[30:], 0.9 * z[:34] + math.sqrt(1 - 0.81) * e[30:], atol=1e-9)


def _erfinv(y: float) -> float:
    """Inverse of math.erf by Newton's method (tests only)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def test_rho_out_of_range_is_refused():
    for bad in (-0.1, 0.96, 1.0, float("nan")):
        with pytest.raises(ValueError, match="period noise"):
            period_noise.check_rho(bad)


@pytest.fixture(scope="module")
def model():
    return small_model(seed=5)


def test_rho_zero_is_the_pcg64_stream(model):
    e = NumbaEngine(model, seed=7)
    e.set_period_noise(0.0)
    u = np.empty(500)
    e.draw_uniforms(u)
    np.testing.assert_array_equal(u, np.random.Generator(np.random.PCG64(7)).random(500))


def test_the_generated_samples_correlate_one_f0_period_back(model):
    """Through the kernel: the output of a note at MIDI 60 (61.2 samples a period) is correlated
    at that lag with the period noise and not without it."""
    lags = {}
    for rho in (0.0, 0.9):
        e = NumbaEngine(model, seed=3)
        e.set_period_noise(rho)
        e.set_note(gate=1.0, pitch=60.0)
        e.set_conditioning(pitch=60, instrument=1, velocity=90)
        e.set_temperature(1.0)
        x = e.generate(40_000).astype(np.float64)
        lags[rho] = corr(x, 61) + corr(x, 62)
    assert lags[0.9] > lags[0.0] + 0.3, lags


def generate_in_blocks(model, block: int, n: int = 4000) -> np.ndarray:
    e = NumbaEngine(model, seed=7, max_block=1024)
    e.set_period_noise(0.5)
    e.set_note(gate=1.0, pitch=62.0)
    e.set_conditioning(pitch=62, instrument=1, velocity=80)
    out = np.empty(n, np.float32)
    pos = 0
    while pos < n:
        m = min(block, n - pos)
        if pos <= 1500 < pos + m:  # a glide starts mid-run: the period changes sample by sample
            e.generate(1500 - pos, out[pos:1500])
            e.set_note(pitch=69.0, glide_s=0.05)
            m, pos = min(block, n - 1500), 1500
        e.generate(m, out[pos:pos + m])
        pos += m
    return out


@pytest.mark.parametrize("block", [1, 37, 256])
def test_block_size_does_not_change_output(model, block):
    whole = generate_in_blocks(model, 4000)
    assert len(np.unique(whole)) > 20
    np.testing.assert_array_equal(generate_in_blocks(model, block), whole)


def test_numba_and_torchscript_generate_identical_samples(model):
    engines = []
    for cls, kw in ((NumbaEngine, {}), (TorchScriptEngine, {"device": "cpu"})):
        e = cls(model, seed=11, **kw)
        e.set_period_noise(0.5)
        engines.append(e)
    x, y = drive(engines[0]), drive(engines[1])
    assert len(np.unique(x)) > 20
    diff = np.flatnonzero(x != y)
    if diff.size:  # a float rounding tie flipped one draw: the logits must have agreed up to there
        k = int(diff[0])
        inputs = np.concatenate(([128], classes_of(x[:-1])))
        la = drive(NumbaEngine(model, seed=11), inputs)
        lb = drive(TorchScriptEngine(model, seed=11, device="cpu"), inputs)
        np.testing.assert_allclose(la[:k + 1], lb[:k + 1], atol=1e-4)


def test_reprime_crossfade_does_not_advance_the_noise(model):
    """The crossfade's old-state continuation is generated and undone: after the fade, the same
    samples as a re-prime without one."""
    outs = []
    snippet = classes_of((0.3 * np.sin(2 * np.pi * 220 * np.arange(800) / 16000)).astype(np.float32))
    for fade in (0, 64):
        e = NumbaEngine(model, seed=2)
        e.set_period_noise(0.5)
        e.set_note(gate=1.0, pitch=57.0)
        e.generate(700)
        e.reprime(snippet, fade)
        outs.append(e.generate(1000))
    assert len(np.unique(outs[0])) > 20
    np.testing.assert_array_equal(outs[0][64:], outs[1][64:])


def preset(rho: float) -> Preset:
    return Preset(model=ModelSection(period_noise=rho, unpitched="c"))


def test_controller_applies_it_to_pitched_instruments_only(model):
    e = NumbaEngine(model)
    c = Controller(e, OutputStage(e.sample_rate), preset(0.4))
    assert e.period_noise == 0.4  # instrument "a"
    c.program_change(2)  # "c": unpitched
    assert e.period_noise == 0.0
    c.program_change(1)
    assert e.period_noise == 0.4


def test_poly_controller_applies_it_to_every_voice(model):
    p = PolyEngine(model, voices=3)
    try:
        c = PolyController(p, OutputStage(p.sample_rate), preset(0.3))
        assert [v.period_noise for v in p.voices] == [0.3] * 3
        c.program_change(2)  # "c", unpitched: each voice takes it at its next note (voices play their own parts)
        for note in (60, 64, 67):
            c.note_on(note, 100)
        assert [v.period_noise for v in p.voices] == [0.0] * 3
    finally:
        p.close()


@pytest.mark.slow
def test_render_takes_the_preset_period_noise_and_the_flag_overrides_it(tmp_path):
    """The shipped presets sample with period noise; --period-noise 0 gives the independent sampler
    (other samples), and a value out of range is a one-line error naming the key."""
    import soundfile as sf
    from wnl_testutil import run_cli

    from realtime.control.presets import load_preset

    assert load_preset().model.period_noise > 0
    audio = {}
    for rho in (None, "0"):
        out = tmp_path / f"{rho}.wav"
        res = run_cli("render", "--out", str(out), "--seconds", "1", *(("--period-noise", rho) if rho else ()))
        assert res.returncode == 0, res.stderr
        audio[rho] = sf.read(out)[0]
    assert len(audio[None]) == len(audio["0"]) and np.abs(audio[None]).max() > 0.01
    assert not np.array_equal(audio[None], audio["0"])
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--seconds", "1", "--period-noise", "1.5")
    assert res.returncode != 0 and "model.period_noise" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_batched_voice_equals_its_single_voice_engine(model):
    """PolyEngine voices draw their correlated noise from their own control state (own pitch)."""
    p = PolyEngine(model, voices=2, seed=30, max_block=256)
    try:
        singles = []
        for v, pitch in enumerate((55.0, 67.0)):
            for e in (p.voices[v], NumbaEngine(model, seed=30 + v)):
                e.set_period_noise(0.5)
                e.set_note(gate=1.0, pitch=pitch)
                e.set_conditioning(pitch=pitch, instrument=v, velocity=90)
                if e is not p.voices[v]:
                    singles.append(e.generate(1500))
        batched = p.generate_voices(1500)
    finally:
        p.close()
    assert len(np.unique(singles[0])) > 20
    np.testing.assert_array_equal(batched, np.stack(singles))


def test_a_cc_sets_it_for_pitched_instruments(model):
    """CC -> period_noise: 0 = independent noise, full = RHO_MAX; an unpitched instrument keeps none,
    and switching back to a pitched one takes the knob's value, not the preset's."""
    e = NumbaEngine(model)
    p = preset(0.4)
    p.midi.cc = {20: "period_noise"}
    c = Controller(e, OutputStage(e.sample_rate), p)
    ev = c.control_change(20, 127)
    assert ev == {"param": "period_noise", "value": period_noise.RHO_MAX} and e.period_noise == period_noise.RHO_MAX
    c.control_change(20, 0)
    assert e.period_noise == 0.0
    c.control_change(20, 64)
    assert e.period_noise == pytest.approx(64 / 127 * period_noise.RHO_MAX)
    c.program_change(2)  # unpitched
    c.control_change(20, 127)
    assert e.period_noise == 0.0
    c.program_change(0)
    assert e.period_noise == period_noise.RHO_MAX
