"""Loudness conditioning: the envelope model, its fit to recorded notes, the level bank, and how
training, the engines and the controller drive the ``level`` input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_grow import batch, trained_like
from wnl_testutil import small_model

from models.grow import add_local
from realtime.control.controller import Controller
from realtime.control.presets import Preset
from realtime.engine.numba_engine import NumbaEngine
from realtime.model import level, local_cond
from realtime.model.level import LevelBank
from realtime.model.model_file import ModelFileError, load_model
from realtime.sound.output_stage import OutputStage

SR = 16000


def params(attack=0.01, peak=0.8, sustain=0.3, decay=0.6, release=0.12) -> np.ndarray:
    return np.array([attack, peak, sustain, decay, release])


def note_with_envelope(p: np.ndarray, seconds=2.0, onset_s=0.02, hold_s=1.5, f0=220.0):
    """A sine whose RMS follows the envelope model's level for ``p`` (per sample)."""
    n, onset, release = int(seconds * SR), int(onset_s * SR), int((onset_s + hold_s) * SR)
    u = local_cond.features_for_note(n, onset, release, 60.0, SR, level_params=p)[:, 3]
    amp = np.where(u > 0, 10 ** (level.level_to_db(u) / 20) * math.sqrt(2), 0.0)
    return (amp * np.sin(2 * np.pi * f0 * np.arange(n) / SR)).astype(np.float32), onset, release


def held_level(p: np.ndarray, n: int, onset: int, release: int) -> np.ndarray:
    return local_cond.features_for_note(n, onset, release, 60.0, SR, level_params=p)[:, 3]


# ------------------------------------------------------------- the envelope model, per sample
def test_level_rises_with_the_attack_time_decays_to_sustain_and_releases_to_silence():
    p = params(attack=0.02, peak=0.8, sustain=0.3, decay=0.3, release=0.1)
    onset, release = 1000, 1000 + 3 * SR
    u = held_level(p, release + SR, onset, release)
    assert np.all(u[:onset] == 0.0)                                # before key-down: silence
    t = onset + int(0.02 * SR)                                     # one attack time in: ~63 % of the way
    assert 0.45 < u[t] < 0.55                                      # (the target has decayed a little)
    assert abs(u[release - 1] - 0.3) < 1e-3                        # 10 decay times: at the sustain level
    # released: the target heads for RELEASE_FLOOR, so the level reaches 0 within a few release times
    gone = np.flatnonzero(u[release:] == 0.0)
    assert gone.size and 0.05 * SR < gone[0] < 0.5 * SR
    assert np.all(np.diff(u[release + 50:]) <= 0)


def test_a_window_starting_after_key_down_sees_the_same_level_as_the_whole_note():
    p = params()
    whole = local_cond.features_for_note(40000, 500, 30000, 62.0, SR, level_params=p)
    part = local_cond.features_for_note(8000, 500 - 20000, 30000 - 20000, 62.0, SR, level_params=p)
    np.testing.assert_array_equal(part[:, [0, 3]], whole[20000:28000][:, [0, 3]])


# ------------------------------------------------------------- fitting a recorded note
@pytest.mark.parametrize("p", [params(), params(attack=0.08, peak=0.5, sustain=0.7, decay=1.0, release=0.35),
                               params(attack=0.005, peak=0.9, sustain=0.0, decay=0.2, release=0.04)])
def test_fit_recovers_the_envelope_of_a_note_that_follows_the_model(p):
    audio, onset, release = note_with_envelope(p)
    got = level.fit_level(audio, onset, release, SR)
    u = level.envelope(audio, SR)
    k0, k1 = onset // 160, release // 160
    fitted = level.simulate(got, len(u), k0, k1)
    truth = level.simulate(p, len(u), k0, k1)
    sounding = truth[k0:] > 0.05
    err_db = np.abs(level.level_to_db(fitted[k0:]) - level.level_to_db(truth[k0:]))[sounding]
    assert np.median(err_db) < 1.0 and np.percentile(err_db, 90) < 2.5
    assert abs(got[level.SUSTAIN] - p[level.SUSTAIN]) < 0.05


def test_envelope_of_a_steady_sine_is_its_rms_in_level_units():
    x = 0.1 * np.sqrt(2) * np.sin(2 * np.pi * 300 * np.arange(SR) / SR)  # RMS 0.1 = -20 dBFS
    u = level.envelope(x, SR)
    assert len(u) == SR // 160 + 1
    np.testing.assert_allclose(u[5:-5], (-20 + 60) / 60, atol=0.01)


# ------------------------------------------------------------- the bank
def bank() -> LevelBank:
    rows = [(0, 60, 50, params(peak=0.4)), (0, 60, 110, params(peak=0.7)), (0, 72, 80, params(peak=0.9)),
            (1, 40, 80, params(sustain=0.1))]
    return LevelBank(np.stack([r[3] for r in rows]), [r[0] for r in rows], [r[1] for r in rows],
                     [r[2] for r in rows])


def test_bank_takes_the_nearest_pitch_and_interpolates_velocity():
    b = bank()
    assert b.lookup(0, 61, 80)[level.PEAK] == pytest.approx(0.55)     # halfway between 50 and 110
    assert b.lookup(0, 61, 20)[level.PEAK] == pytest.approx(0.4)      # clamped below
    assert b.lookup(0, 61, 127)[level.PEAK] == pytest.approx(0.7)     # clamped above
    assert b.lookup(0, 70, 20)[level.PEAK] == pytest.approx(0.9)      # nearest pitch 72
    assert b.lookup(0, 66, 80)[level.PEAK] == pytest.approx(0.55)     # a tie goes to the lower pitch
    assert b.lookup(1, 90, 100)[level.SUSTAIN] == pytest.approx(0.1)
    np.testing.assert_array_equal(b.lookup(2, 60, 100), level.DEFAULT)  # an instrument it never heard


def test_bank_round_trips_through_the_model_file_and_bad_banks_are_refused(tmp_path):
    m = small_model()
    m.levelbank = bank()
    back = load_model(m.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.levelbank.params, bank().params)
    np.testing.assert_array_equal(back.levelbank.velocity, bank().velocity)
    bad = bank()
    bad.params[0, level.DECAY_S] = 0.0
    with pytest.raises(ValueError, match="level bank params out of range"):
        LevelBank(bad.params, bad.instrument, bad.pitch, bad.velocity)
    arrays = dict(np.load(tmp_path / "m.npz"))
    arrays["level/params"] = arrays["level/params"][:2]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"bad.npz: bad level bank"):
        load_model(tmp_path / "bad.npz")


# ------------------------------------------------------------- playing
def controller_for(model) -> Controller:
    e = NumbaEngine(model)
    return Controller(e, OutputStage(e.sample_rate), Preset())


def test_note_on_starts_the_banks_envelope_and_legato_keeps_the_level():
    m = small_model()
    m.levelbank = bank()
    c = controller_for(m)
    e = c.engine
    c.note_on(60, 80)
    assert e.ctrl[local_cond.LEVEL_TARGET] == pytest.approx(0.55)
    assert e.ctrl[local_cond.LEVEL_SUSTAIN] == pytest.approx(0.3)
    out = np.empty(SR // 2, np.float32)
    c.generate(out)
    lv, target = e.ctrl[local_cond.LEVEL], e.ctrl[local_cond.LEVEL_TARGET]
    assert 0.3 < lv < 0.55
    c.note_on(72, 80)                     # legato: no re-attack, heads for the new note's sustain
    assert e.ctrl[local_cond.LEVEL] == lv and e.ctrl[local_cond.LEVEL_TARGET] == target
    c.note_off(72)
    c.note_off(60)
    c.generate(out)
    assert e.ctrl[local_cond.LEVEL] < 0.0  # released: fell through silence (the input is clipped at 0)


def test_engine_level_input_equals_what_training_labels_the_note_with():
    """The level the engine feeds the network for a note is, sample for sample, the one its crops carry."""
    m = small_model()
    m.levelbank = bank()
    e = NumbaEngine(m)
    p = e.note_level(0, 60, 110)
    e.set_note(gate=1.0, pitch=60.0)
    e.set_level(p)
    feats = np.empty((4000, local_cond.N_LOCAL), np.float32)
    local_cond.fill(e.ctrl.copy(), float(SR), feats)
    want = local_cond.features_for_note(4000, 0, 4000, 60.0, SR, attack_s=0.002, release_s=0.05, level_params=p)
    np.testing.assert_array_equal(feats[:, 3], want[:, 3])
    np.testing.assert_array_equal(feats[:, 0], want[:, 0])


# ------------------------------------------------------------- migrating a trained model
def test_adding_the_level_input_keeps_the_logits_and_the_new_weights_learn():
    old = trained_like()
    new = add_local(old, ("level",))
    assert new.cfg.conditioning.local == old.cfg.conditioning.local + ("level",)
    inputs, gvec, local = batch(old)
    local4 = torch.cat((local, torch.rand(local.shape[0], 1, local.shape[2])), dim=1)
    with torch.no_grad():
        a, b = old(inputs, gvec, local), new(inputs, gvec, local4)
    assert a.abs().max() > 1.0
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    loss = torch.nn.functional.cross_entropy(new(inputs, gvec, local4)[:, :, :-1], inputs[:, 1:])
    loss.backward()
    for proj in new.local_proj:
        assert proj.weight.grad[:, -1].abs().min() > 0
    with pytest.raises(ValueError, match="already reads level"):
        add_local(new, ("level",))


# ------------------------------------------------------------- training
@pytest.mark.slow
def test_training_a_level_model_labels_crops_probes_the_level_and_ships_a_level_bank(tiny_data, tmp_path):
    import json

    from test_train import train
    from tiny_data import TINY

    cfg = json.loads(json.dumps(TINY))
    cfg["conditioning"]["local"] = ["gate", "f0_sin", "f0_cos", "level"]
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    out = tmp_path / "run"
    r = train("--data", str(tiny_data), "--out", str(out), "--config", str(tmp_path / "c.json"), "--max-steps", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    m = load_model(out / "model.npz")
    assert m.config.conditioning.local[-1] == "level"
    assert len(m.levelbank) == 24  # one fit per note of the tiny set
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert all("level_shift_loss" in h for h in hist if "eval_loss" in h)
    # the tiny notes hold a steady tone from sample 800 to 6400: the fit says so
    p = m.levelbank.lookup(0, 60, 100)
    steady = level.db_to_level(20 * np.log10(0.4 / np.sqrt(2)))
    assert abs(p[level.SUSTAIN] - steady) < 0.02 and abs(p[level.PEAK] - steady) < 0.05


def test_crops_carry_the_models_local_channels_with_the_notes_level():
    from tiny_data import tone

    from models.crops import make_batch
    from models.dataset import Note

    notes = [Note(tone("sine", 60, n=16000, onset=800, release=12000), 0, 60, 100, 800, 12000, True, "")]
    kw = dict(sample_rate=SR, context=1023, window=256, starts=[5000])
    b3 = make_batch(notes, [0], rng=np.random.default_rng(0), local=("gate", "f0_sin", "f0_cos"), **kw)
    b4 = make_batch(notes, [0], rng=np.random.default_rng(0), **kw)
    assert b3.local.shape == (1, 3, 1279) and b4.local.shape == (1, 4, 1279)
    np.testing.assert_array_equal(b4.local[:, :3], b3.local)
    p = notes[0].level
    want = local_cond.features_for_note(1279, 800 - (5000 - 1023), 12000 - (5000 - 1023), 60.0, SR,
                                        level_params=p)[:, 3]
    np.testing.assert_array_equal(b4.local[0, 3], want)
    quiet = make_batch(notes, [0], rng=np.random.default_rng(0), level_shift=-1 / 3, **kw)
    np.testing.assert_allclose(quiet.local[0, 3], b4.local[0, 3] - 1 / 3, atol=2e-3)


def test_expression_pedal_moves_the_level_input_the_network_reads():
    m = small_model()
    m.levelbank = bank()
    c = controller_for(m)
    c.preset.midi.cc[11] = "expression"
    c.note_on(60, 110)
    e = c.engine
    loud = np.empty((800, local_cond.N_LOCAL), np.float32)
    local_cond.fill(e.ctrl.copy(), float(SR), loud)
    ev = c.control_change(11, 0)
    assert ev["param"] == "expression" and e.ctrl[local_cond.LEVEL_OFFSET] == pytest.approx(-0.5)
    soft = np.empty_like(loud)
    local_cond.fill(e.ctrl.copy(), float(SR), soft)
    np.testing.assert_allclose(soft[:, 3], np.maximum(loud[:, 3] - 0.5, 0.0), atol=1e-6)
    c.control_change(11, 127)
    assert e.ctrl[local_cond.LEVEL_OFFSET] == 0.0



def test_level_gain_scales_the_whole_crop_and_moves_its_level_input_as_much():
    from tiny_data import tone

    from models.crops import make_crop
    from realtime.model import mulaw

    audio = tone("saw", 57, n=16000, onset=800, release=12000) * np.float32(0.5)
    args = (audio, 800, 12000, 57, SR, 1023, 256)
    gains = []
    for seed in range(6):
        plain = make_crop(*args, np.random.default_rng(seed), start=5000)
        moved = make_crop(*args, np.random.default_rng(seed), start=5000, level_gain_db=12.0)
        rms = [np.sqrt(np.mean(mulaw.decode(c[1]) ** 2)) for c in (plain, moved)]
        gain_db = 20 * np.log10(rms[1] / rms[0])
        assert abs(gain_db) < 12.2
        # the level input moved by the same number of dB (level units: 60 dB = 1)
        np.testing.assert_allclose(moved[2][3] - plain[2][3], gain_db / 60, atol=0.01)
        np.testing.assert_array_equal(moved[2][:3], plain[2][:3])
        gains.append(gain_db)
    assert np.ptp(gains) > 6.0  # a random gain per crop
