"""The source-filter reference engine (lpc-pulse): its note sounds at the played f0 and at the level the envelope
bank says, through the real render path; it plays exactly the tracks training computes from a note's frames; its
output does not depend on block sizes."""
from __future__ import annotations

import numpy as np
import pytest
from envelope_bank_data import make_bank
from scipy.signal import freqz, lfilter
from wnl_testutil import small_model

from models.dataset import estimate_f0
from models.envelope import NoteFrames, note_tracks
from realtime.control.presets import Preset
from realtime.engine.pulse_engine import PulseEngine
from realtime.model.envelope import EnvelopeBank
from realtime.model.source_filter import EMPHASIS, lpc_to_lsf, predictions
from realtime.offline.render import Session, make_engine, render_timeline

SR = 16000
HOP = 160


def formant_poly(formants=((500, 120), (1500, 200), (2500, 300))) -> np.ndarray:
    a = np.array([1.0])
    for f, bw in formants:
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * f / SR
        a = np.convolve(a, [1.0, -2 * r * np.cos(th), r * r])
    return np.concatenate([a, np.zeros(17 - len(a))])


def steady_bank(gain_db: np.ndarray, tonal: bool = True, pitches=(40, 60, 80)) -> EnvelopeBank:
    """One note per pitch of instrument 0, every frame the formant filter, gains ``gain_db`` (dBFS, per frame)."""
    lsf = np.tile(lpc_to_lsf(formant_poly()), (len(gain_db), 1))
    g = 10.0 ** (np.asarray(gain_db) / 20.0)
    k, n = len(pitches), len(gain_db)
    return EnvelopeBank(np.tile(lsf, (k, 1)), np.tile(g, k), np.arange(k) * n, np.full(k, n),
                        np.full(k, n - 1.0), np.full(k, tonal), np.zeros(k), pitches, np.full(k, 90), [HOP])


def engine_with(bank: EnvelopeBank, seed: int = 0, **kw) -> PulseEngine:
    m = small_model()
    m.envelopebank = bank
    return PulseEngine(m, seed=seed, **kw)


def play(e: PulseEngine, pitch: float, n: int) -> np.ndarray:
    e.set_conditioning(pitch=round(pitch), instrument=0, velocity=90)
    e.set_note(gate=1.0, pitch=pitch, glide_s=0.0)
    return e.generate(n).astype(np.float64)


@pytest.mark.parametrize("pitch", [40.0, 52.0, 60.5, 69.0, 81.3])
def test_the_note_has_the_played_f0(pitch):
    x = play(engine_with(steady_bank(np.full(150, -30.0))), pitch, SR)
    f0 = estimate_f0(x[2000:], SR)
    want = 440.0 * 2 ** ((pitch - 69) / 12)
    assert abs(1200 * np.log2(f0 / want)) < 5.0


def expected_power(g: float, f0: float, hnr_db: float) -> float:
    """Mean square of the pulse-plus-noise excitation of RMS ``g`` through 1/A and de-emphasis."""
    a = formant_poly()
    k = int((0.5 * SR - 1.0) / f0)
    h = lambda w: np.abs(freqz([1.0], np.convolve(a, [1.0, -EMPHASIS]), worN=w)[1]) ** 2  # noqa: E731
    r = 10 ** (hnr_db / 10)
    harm = np.mean(h(2 * np.pi * f0 * np.arange(1, k + 1) / SR))
    noise = np.mean(h(np.linspace(0, np.pi, 4096, endpoint=False)))
    return g * g * (r / (1 + r) * harm + 1 / (1 + r) * noise)


@pytest.mark.parametrize("pitch", [40, 60, 80])
@pytest.mark.parametrize("hnr_db", [10.0, 30.0])
def test_the_note_has_the_banks_level(pitch, hnr_db):
    x = play(engine_with(steady_bank(np.full(150, -30.0)), hnr_db=hnr_db), pitch, SR)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    got = 10 * np.log10(np.mean(x[2000:] ** 2))
    assert got == pytest.approx(10 * np.log10(expected_power(10 ** (-30 / 20), f0, hnr_db)), abs=0.5)


def test_the_level_follows_the_banks_gain_over_time():
    db = np.linspace(-10.0, -40.0, 100)  # 30 dB down over the first second
    x = play(engine_with(steady_bank(np.concatenate([db, np.full(50, -40.0)]))), 60, SR)
    level = [10 * np.log10(np.mean(x[i:i + 1600] ** 2)) for i in range(1600, 14400, 1600)]
    want = [np.interp(i + 800, np.arange(150) * HOP, np.concatenate([db, np.full(50, -40.0)])) for i in
            range(1600, 14400, 1600)]
    np.testing.assert_allclose(np.diff(level), np.diff(want), atol=0.3)


@pytest.mark.parametrize("key_up", [4000, 4007, 9123])
def test_the_engine_plays_the_tracks_training_computes(key_up):
    """Noise alone (an unpitched note): the engine's output is, to float32, the excitation (its own normals) times
    note_tracks' gains through note_tracks' filters, de-emphasised: training and the engine share the timing."""
    rng = np.random.default_rng(3)
    n_frames = 100
    lsf = np.array([lpc_to_lsf(formant_poly(((400 + 5 * f, 100), (1800 - 3 * f, 150)))) for f in range(n_frames)])
    lsf += rng.uniform(0, 0.01, (n_frames, 1))
    gain = 10 ** (np.concatenate([np.linspace(-40, -15, 5), np.linspace(-15, -30, n_frames - 5)]) / 20)
    frames = NoteFrames(lsf.astype(np.float32), gain.astype(np.float32), HOP, 0, key_up, SR)  # recorded key-up
    bank = EnvelopeBank(frames.lsf, frames.gain, [0], [n_frames], [frames.release_frames], [False], [0], [60], [90],
                        [HOP])
    n = 12000
    e = engine_with(bank, seed=7)
    e.set_conditioning(pitch=60, instrument=0, velocity=90)
    e.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    out = np.concatenate([e.generate(key_up), (e.set_note(gate=0.0), e.generate(n - key_up))[1]])
    a, g = note_tracks(frames, n, 0)
    z = np.random.Generator(np.random.PCG64(7)).standard_normal(n)
    s = np.zeros(n + 16)  # 16 zeros, then the note
    ex = g * z
    for t in range(n):  # s_t = e_t + p_t, p_t = -sum_k a_k s_(t-k) (source_filter.predictions' convention)
        s[t + 16] = ex[t] - a[t, 1:] @ s[t + 15:t - 1 if t else None:-1]
    s = s[16:]
    np.testing.assert_allclose(predictions(s, a), s - ex, atol=1e-12)
    want = lfilter([1.0], [1.0, -EMPHASIS], s)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("block", [1, 37, 1024])
def test_block_sizes_do_not_change_the_output(block):
    bank = steady_bank(np.linspace(-20, -35, 150))
    ref = engine_with(bank, seed=2)
    one = play(ref, 60, 6000)
    e = engine_with(bank, seed=2)
    e.set_conditioning(pitch=60, instrument=0, velocity=90)
    e.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    got = np.concatenate([e.generate(min(block, 6000 - i)) for i in range(0, 6000, block)])
    np.testing.assert_array_equal(got, one)


def test_it_plays_through_the_render_path_by_name(tmp_path):
    """make_engine('lpc-pulse') behind the controller and output stage, as render and the evaluator play it."""
    m = small_model()
    m.envelopebank = make_bank()
    assert isinstance(make_engine("lpc-pulse", m), PulseEngine)
    p = Preset()
    p.model.engine, p.model.reprime = "lpc-pulse", "off"
    p.midi.programs = {}
    s = Session.open(p, m)
    out = render_timeline(s, [(100, bytes([0x90, 60, 90])), (6000, bytes([0x80, 60, 0]))], 16000)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out[:100])) == 0.0 and np.sqrt(np.mean(out[200:6000] ** 2)) > 1e-3


def test_a_model_without_a_bank_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no envelope bank.*models.envelope build"):
        PulseEngine(small_model())
