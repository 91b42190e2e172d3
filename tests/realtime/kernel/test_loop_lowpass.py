"""The low-pass inside the feedback loop (realtime/kernel/loop_lowpass.py): its arithmetic, its class coding, and
both engines generating the same samples with it."""
from __future__ import annotations

import numpy as np
import pytest
from test_equivalence import drive
from wnl_testutil import small_model

from realtime.engine.numba_engine import NumbaEngine
from realtime.engine.torch_engine import TorchScriptEngine
from realtime.kernel import loop_lowpass
from realtime.model import local_cond, mulaw


def state(a: float, y_prev: float, env: float) -> np.ndarray:
    s = local_cond.new_state()
    loop_lowpass.set_amount(s, a, 16000)
    s[local_cond.LOOP_Y], s[local_cond.LOOP_ENV] = y_prev, env
    return s


def test_class_coding_is_mulaw_encode():
    x = np.concatenate((np.random.default_rng(0).uniform(-1, 1, 20000), mulaw.DECODE_TABLE, [0.0, -1.0, 1.0]))
    got = np.array([loop_lowpass.code(float(v)) for v in x])
    np.testing.assert_array_equal(got, mulaw.encode(x))


@pytest.mark.parametrize("a", [0.1, 0.15, 0.5])
def test_a_loud_note_is_filtered_by_the_full_amount(a):
    s = state(a, y_prev=0.2, env=0.3)
    f, k = loop_lowpass.step(s, 0.9)
    assert f == pytest.approx((1 - a) * 0.9 + a * 0.2, abs=1e-15)
    assert k == mulaw.encode(np.array([f]))[0] and s[local_cond.LOOP_Y] == f
    assert s[local_cond.LOOP_ENV] == pytest.approx(f)  # the envelope jumps to a louder sample


def test_the_filter_fades_out_between_minus_25_and_minus_35_dbfs():
    quiet = state(0.5, y_prev=0.0, env=10 ** (-36 / 20))
    assert loop_lowpass.step(quiet, 0.005)[0] == 0.005  # below -35 dBFS: off
    loud = state(0.5, y_prev=0.0, env=10 ** (-24 / 20))
    assert loop_lowpass.step(loud, 0.004)[0] == 0.002  # above -25 dBFS: the full amount
    half = state(0.5, y_prev=0.0, env=(loop_lowpass.FADE_LO + loop_lowpass.FADE_HI) / 2)
    assert loop_lowpass.step(half, 0.004)[0] == pytest.approx(0.004 * (1 - 0.25))  # halfway: half the amount


def test_the_envelope_releases_in_10_ms():
    s = state(0.15, y_prev=0.0, env=0.5)
    for _ in range(160):  # 10 ms of silence at 16 kHz
        loop_lowpass.step(s, 0.0)
    assert s[local_cond.LOOP_ENV] == pytest.approx(0.5 * np.exp(-1), rel=0.01)


@pytest.mark.parametrize("a", [-0.1, 0.51, float("nan")])
def test_an_amount_out_of_range_is_refused(a):
    with pytest.raises(ValueError, match="loop low-pass must be within 0-0.5"):
        loop_lowpass.set_amount(local_cond.new_state(), a, 16000)


def looped(cls, a: float, **kw) -> np.ndarray:
    e = cls(small_model(seed=2), seed=11, **kw)
    e.set_loop_lowpass(a)
    e.reset(11)  # the amount survives a reset
    return drive(e)


def test_numba_and_torchscript_generate_identical_samples_through_the_loop():
    x = looped(NumbaEngine, 0.3)
    y = looped(TorchScriptEngine, 0.3, device="cpu")
    assert len(np.unique(x)) > 100  # filtered values, not only the 256 decode values
    np.testing.assert_array_equal(x, y)


def test_amount_zero_is_the_plain_sampler():
    plain = drive(NumbaEngine(small_model(seed=2), seed=11))
    np.testing.assert_array_equal(looped(NumbaEngine, 0.0), plain)
    assert np.isin(plain, mulaw.DECODE_TABLE).all()


def test_the_loop_takes_the_highs_down():
    """Random weights generate a noise-like signal (half its power above 4 kHz); a one-pole low-pass at 0.4
    leaves white noise 25.8 % there (the integral of 0.36 / (1.16 - 0.8 cos w) over the top half)."""
    def high_share(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x - x.mean())) ** 2
        return float(p[len(p) // 2:].sum() / p.sum())

    plain, filtered = high_share(looped(NumbaEngine, 0.0)), high_share(looped(NumbaEngine, 0.4))
    assert 0.45 < plain < 0.55 and 0.22 < filtered < 0.30, (plain, filtered)


def amount(e) -> float:
    return float(e.ctrl[local_cond.LOOP_A])


def test_controller_applies_the_preset_amount_to_pitched_instruments_and_a_cc_moves_it():
    from realtime.control.controller import Controller
    from realtime.control.presets import MidiSection, ModelSection, Preset
    from realtime.sound.output_stage import OutputStage

    e = NumbaEngine(small_model(seed=5))
    c = Controller(e, OutputStage(e.sample_rate), Preset(model=ModelSection(loop_lowpass=0.15, unpitched="c"),
                                                         midi=MidiSection(cc={74: "loop_lowpass"})))
    assert amount(e) == 0.15  # instrument "a"
    c.program_change(2)  # "c": unpitched
    assert amount(e) == 0.0
    c.program_change(1)
    assert c.control_change(74, 127) == {"param": "loop_lowpass", "value": loop_lowpass.A_MAX}
    assert amount(e) == loop_lowpass.A_MAX
    c.control_change(74, 0)
    assert amount(e) == 0.0


def test_poly_controller_applies_it_to_every_voice():
    from realtime.control.poly_controller import PolyController
    from realtime.control.presets import ModelSection, Preset
    from realtime.engine.poly_engine import PolyEngine
    from realtime.sound.output_stage import OutputStage

    p = PolyEngine(small_model(seed=5), voices=3)
    try:
        c = PolyController(p, OutputStage(p.sample_rate), Preset(model=ModelSection(loop_lowpass=0.2, unpitched="c")))
        assert [amount(v) for v in p.voices] == [0.2] * 3
        c.program_change(2)  # "c", unpitched: each voice takes it at its next note (voices play their own parts)
        for note in (60, 64, 67):
            c.note_on(note, 100)
        assert [amount(v) for v in p.voices] == [0.0] * 3
    finally:
        p.close()


def test_a_prime_starts_the_filter_at_the_primed_sample():
    e = NumbaEngine(small_model(seed=5))
    e.set_loop_lowpass(0.15)
    e.prime(0.3 * np.sin(2 * np.pi * 220 * np.arange(400) / 16000))
    y = float(mulaw.DECODE_TABLE[e.ints[0]])
    assert e.ctrl[local_cond.LOOP_Y] == y and e.ctrl[local_cond.LOOP_ENV] == abs(y)


@pytest.mark.slow
def test_render_takes_the_flag_and_refuses_a_bad_amount_naming_the_key(tmp_path):
    import soundfile as sf
    from wnl_testutil import run_cli

    audio = {}
    for a in ("0", "0.15"):
        out = tmp_path / f"{a}.wav"
        res = run_cli("render", "--out", str(out), "--seconds", "1", "--loop-lowpass", a)
        assert res.returncode == 0, res.stderr
        audio[a] = sf.read(out)[0]
    assert len(audio["0"]) == len(audio["0.15"]) and np.abs(audio["0.15"]).max() > 0.01
    assert not np.array_equal(audio["0"], audio["0.15"])
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--seconds", "1", "--loop-lowpass", "0.9")
    assert res.returncode != 0 and "model.loop_lowpass" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("pitch", [40.0, 60.0, 84.0])
def test_the_period_read_is_shortened_by_the_filters_phase_delay_at_f0(pitch):
    sr = 16000.0
    plain, looped_ = local_cond.new_state(pitch, sr), local_cond.new_state(pitch, sr)
    loop_lowpass.set_amount(looped_, 0.15, sr)
    fp, fl = np.empty((4, local_cond.N_LOCAL), np.float32), np.empty((4, local_cond.N_LOCAL), np.float32)
    local_cond.fill(plain, sr, fp)
    local_cond.fill(looped_, sr, fl)
    period = sr / (440.0 * 2 ** ((pitch - 69) / 12))
    w = 2 * np.pi / period
    delay = np.arctan2(0.15 * np.sin(w), 1 - 0.15 * np.cos(w)) / w  # ~0.176 samples: a / (1 - a) at low f0
    assert 0.165 < delay < 0.177
    assert fp[-1, local_cond.PERIOD] == np.float32(period)
    assert fl[-1, local_cond.PERIOD] == pytest.approx(period - delay, rel=1e-6)
