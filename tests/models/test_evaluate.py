"""Evaluator measurements on signals with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import small_model

from models.audio_features import NearestNeighbour, logmel_stats, window_db, window_flatness
from models.dataset import midi_to_hz
from models.evaluate import cents_error, pitch_figures

SR = 16000


def tone(kind: str, hz: float, seconds: float = 1.0) -> np.ndarray:
    ph = (hz * np.arange(int(seconds * SR)) / SR) % 1.0
    return (0.5 * (np.sin(2 * np.pi * ph) if kind == "sine" else 2 * ph - 1)).astype(np.float32)


@pytest.mark.parametrize("hz,pitch,cents", [(440.0, 69, 0.0), (466.1638, 69, 100.0), (220.0, 57, 0.0),
                                            (440.0 * 2 ** (25 / 1200), 69, 25.0)])
def test_cents_error(hz, pitch, cents):
    assert cents_error(hz, pitch) == pytest.approx(cents, abs=0.01)


def test_unvoiced_counts_as_an_octave_off():
    assert cents_error(float("nan"), 60) == 1200.0
    f = pitch_figures([0.0, 10.0, 60.0, 1200.0])
    assert f == {"n": 4, "median_abs_cents": 35.0, "within_50_cents": 0.5, "unvoiced": 1}


def hz(pitch: int, cents: float = 0.0) -> float:
    return midi_to_hz(pitch + cents / 100)


def test_pitch_detail_finds_octave_errors_and_unvoiced_notes_per_instrument():
    from models.evaluate import pitch_detail

    d = pitch_detail([("piano", 60, hz(60, 3)), ("piano", 72, hz(72, 1200 - 20)), ("piano", 48, hz(48, 700)),
                      ("bass", 40, float("nan")), ("bass", 45, hz(45, -2400 + 40)), ("bass", 50, hz(50, -45))])
    assert [n["cents"] for n in d["notes"]] == pytest.approx([3.0, 1180.0, 700.0, None, -2360.0, -45.0], abs=0.1)
    assert d["notes"][3] == {"instrument": "bass", "pitch": 40, "f0_hz": None, "cents": None}
    assert d["notes"][0]["f0_hz"] == pytest.approx(hz(60, 3), abs=0.01)
    assert d["octave_errors"] == 2  # +1180 and -2360; a fifth (+700) is not one
    assert d["per_instrument"] == {"piano": {"within_50_cents": pytest.approx(1 / 3, abs=1e-3), "unvoiced": 0},
                                   "bass": {"within_50_cents": pytest.approx(1 / 3, abs=1e-3), "unvoiced": 1}}


def test_history_and_card_keep_the_figures_and_the_card_tabulates_the_notes(tmp_path):
    import json

    from models.evaluate import pitch_detail, pitch_figures, without_notes
    from models.export import write_card

    rows = [("piano", 60, hz(60, 12)), ("piano", 72, float("nan")), ("flute", 60, hz(60, -1190))]
    ev = {"model": "m.npz", "pitch_preset": pitch_figures([12.0, 1200.0, 1190.0]) | pitch_detail(rows)}
    assert "notes" not in without_notes(ev)["pitch_preset"]
    assert without_notes(ev)["pitch_preset"]["octave_errors"] == 1
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    m = small_model()
    write_card(tmp_path, m.config, {"training": {"steps": 5, "hours": 0.1}})
    card = (tmp_path / "MODEL.md").read_text()
    assert "| instrument | 60 | 72 |" in card
    assert "| piano | +12 | - |" in card and "| flute | -1190 |  |" in card
    assert '"octave_errors": 1' in card and '"notes"' not in card


def test_timbre_confusion_counts_what_each_instrument_was_heard_as_and_the_card_tabulates_it(tmp_path):
    import json

    from models.evaluate import confusion
    from models.export import write_card

    conf = confusion(["piano", "piano", "piano", "bass", "bass"], ["piano", "strings", "strings", "strings", "bass"])
    assert conf == {"piano": {"piano": 1, "strings": 2}, "bass": {"strings": 1, "bass": 1}}
    robust = confusion(["piano", "piano", "piano", "bass", "bass"], ["piano", "piano", "lead", "bass", "bass"])
    (tmp_path / "eval.json").write_text(json.dumps({"timbre": {"accuracy_generated": 0.4, "confusion": conf,
                                                               "confusion_noise_robust": robust}}))
    write_card(tmp_path, small_model().config, {"training": {"steps": 5, "hours": 0.1}})
    card = (tmp_path / "MODEL.md").read_text()
    # columns: the conditioned instruments in order, then instruments only ever predicted
    assert "| conditioned on | piano | bass | strings |" in card
    assert "| piano | 1 |  | 2 |" in card and "| bass |  | 1 | 1 |" in card
    robust_part = card.split("## What the noise-robust timbre classifier heard")[1]
    assert "| conditioned on | piano | bass | lead |" in robust_part
    assert "| piano | 2 |  | 1 |" in robust_part and "| bass |  | 2 |  |" in robust_part
    assert "## Free-running against one sample at a time" not in card  # before the figure existed
    rs = {"n": 5, "temperature": 0.5, "notes": {"piano": 3, "bass": 2}, "accuracy_generated": 0.8,
          "right_generated": {"piano": 2, "bass": 2}, "accuracy_generated_noise_robust": 1.0,
          "right_generated_noise_robust": {"piano": 3, "bass": 2}}
    (tmp_path / "eval.json").write_text(json.dumps({"timbre": {
        "accuracy_generated": 0.4, "accuracy_generated_noise_robust": 0.8, "confusion": conf,
        "confusion_noise_robust": robust, "resynthesis": rs}}))
    write_card(tmp_path, small_model().config, {"training": {"steps": 5, "hours": 0.1}})
    part = (tmp_path / "MODEL.md").read_text().split("## Free-running against one sample at a time")[1]
    assert "0.4 / 0.8 free-running, 0.8 / 1.0 one sample at a time" in part and "temperature 0.5" in part
    assert "| piano | 1 / 2 of 3 | 2 / 3 of 3 |" in part and "| bass | 1 / 2 of 2 | 2 / 2 of 2 |" in part


def test_card_history_shows_timbre_against_mulaw_and_clean_references(tmp_path):
    import json

    from models.export import write_card

    rows = [{"hours": 1.0, "timbre": {"accuracy_generated": 0.18}},  # before the mu-law reference
            {"hours": 2.0, "timbre": {"reference": "mulaw", "accuracy_generated": 0.4,
                                      "accuracy_generated_clean_reference": 0.2}},
            {"hours": 3.0, "timbre": {"reference": "mulaw", "accuracy_generated": 0.3,
                                      "accuracy_generated_clean_reference": 0.1,
                                      "accuracy_generated_noise_robust": 0.5}}]
    (tmp_path / "eval_history.jsonl").write_text("\n".join(map(json.dumps, rows)))
    write_card(tmp_path, small_model().config, {"training": {"steps": 5, "hours": 0.1}})
    card = (tmp_path / "MODEL.md").read_text()
    assert "| - / 0.18 |" in card and "| 0.4 / 0.2 / - |" in card and "| 0.3 / 0.1 / 0.5 |" in card


def test_timbre_classifier_tells_sine_from_saw_at_unseen_pitches():
    train = [(k, tone(k, 110 * 2 ** (i / 4))) for k in ("sine", "saw") for i in range(0, 16, 2)]
    test = [(k, tone(k, 110 * 2 ** (i / 4))) for k in ("sine", "saw") for i in range(1, 15, 2)]
    clf = NearestNeighbour().fit(np.stack([logmel_stats(a, SR) for _, a in train]), np.array([k for k, _ in train]))
    pred = clf.predict(np.stack([logmel_stats(a, SR) for _, a in test]))
    assert (pred == np.array([k for k, _ in test])).all()
    assert clf.leave_one_out_accuracy() == 1.0


def test_timbre_of_mulaw_coded_notes_needs_mulaw_coded_references():
    """The evaluator fits its classifier on mu-law coded real notes: one fitted on the clean notes hears
    the codec's noise floor as timbre and misnames coded sines and saws, even the real ones."""
    from realtime.model import mulaw

    train = [(k, tone(k, 110 * 2 ** (i / 4))) for k in ("sine", "saw") for i in range(0, 16, 2)]
    test = [(k, mulaw.roundtrip(tone(k, 110 * 2 ** (i / 4)))) for k in ("sine", "saw") for i in range(1, 15, 2)]
    y, yt = np.array([k for k, _ in train]), np.array([k for k, _ in test])
    xt = np.stack([logmel_stats(a, SR) for _, a in test])
    clean = NearestNeighbour().fit(np.stack([logmel_stats(a, SR) for _, a in train]), y)
    coded = NearestNeighbour().fit(np.stack([logmel_stats(mulaw.roundtrip(a), SR) for _, a in train]), y)
    assert (coded.predict(xt) == yt).all()
    assert (clean.predict(xt) == yt).mean() < 0.8


def test_windows_find_silence_and_noise():
    x = np.concatenate([tone("sine", 440, 0.5), np.zeros(SR // 2, np.float32),
                        np.random.default_rng(0).uniform(-0.5, 0.5, SR // 2).astype(np.float32)])
    db, flat = window_db(x, SR), window_flatness(x, SR)
    assert len(db) == 15
    assert (db[:5] > -10).all() and (db[5:10] < -150).all()
    assert (flat[:5] < 0.05).all() and (flat[10:] > 0.5).all()


def test_real_sounding_follows_the_real_notes_decay():
    """Silence in a generated held note only counts where the real instrument still sounds."""
    from types import SimpleNamespace

    from models.dataset import Note
    from models.evaluate import real_sounding

    def note(velocity: int, sounding_s: float) -> Note:
        audio = np.zeros(2 * SR, np.float32)
        onset = int(0.02 * SR)
        audio[onset:onset + int(sounding_s * SR)] = tone("sine", 200, sounding_s)
        return Note(audio, instrument_id=6, pitch=38, velocity=velocity, onset=onset, release=onset + SR,
                    tonal=False, file="x.wav")

    data = SimpleNamespace(notes=[note(40, 1.2), note(100, 0.3)])  # velocity 100 is nearest to 90
    mask = real_sounding(data, 6, 38, SR, 1.5)
    np.testing.assert_array_equal(mask, [True] * 3 + [False] * 12)
    assert real_sounding(data, 6, 38, SR, 1.5, velocity=50).sum() == 12
    assert real_sounding(data, 6, 40, SR, 1.5) is None and real_sounding(None, 6, 38, SR, 1.5) is None


def test_teacher_forced_nll_is_deterministic_and_sees_precision():
    """The same engine gives the same NLL; a reduced precision moves it a little, not a lot."""
    from types import SimpleNamespace

    from models.dataset import Note
    from models.evaluate import teacher_forced_nll

    model = small_model(seed=2)
    notes = [Note(tone(k, 220.0 * (1 + i), 0.5), instrument_id=i % 2, pitch=57 + 12 * i, velocity=100, onset=0,
                  release=SR // 2, tonal=True, file="x.wav") for i, k in enumerate(("sine", "saw"))]
    data = SimpleNamespace(notes=notes)
    fp32 = teacher_forced_nll(model, data, "numba", every=1, seconds=0.25)
    assert 0 < fp32 < np.log(256) * 3 and fp32 == teacher_forced_nll(model, data, "numba", every=1, seconds=0.25)
    int8 = teacher_forced_nll(model, data, "numba-int8", every=1, seconds=0.25)
    assert int8 != fp32 and abs(int8 - fp32) < 0.01 * fp32
    assert teacher_forced_nll(model, None, "numba") is None


@pytest.mark.slow
def test_evaluator_generates_every_note_at_the_given_temperature(tmp_path, monkeypatch):
    """--temperature, --period-noise and --loop-lowpass replace the preset's for the pitch, timbre and
    stability notes alike."""
    from models import evaluate as ev
    from realtime.engine.base import Engine

    model = small_model(seed=3)
    path = model.save(tmp_path / "m.npz")
    seen: list[float] = []
    orig = Engine.set_temperature
    monkeypatch.setattr(Engine, "set_temperature", lambda self, t: (seen.append(t), orig(self, t))[1])
    seen_rho: list[float] = []
    orig_rho = Engine.set_period_noise
    monkeypatch.setattr(Engine, "set_period_noise", lambda self, r: (seen_rho.append(r), orig_rho(self, r))[1])
    seen_loop: list[float] = []
    orig_loop = Engine.set_loop_lowpass
    monkeypatch.setattr(Engine, "set_loop_lowpass", lambda self, a: (seen_loop.append(a), orig_loop(self, a))[1])
    res = ev.evaluate(str(path), None, quick=True, png=str(tmp_path / "s.png"), log=lambda *a: None,
                      temperature=0.55, period_noise=0.3, loop_lowpass=0.2)
    assert res["temperature"] == 0.55 and len(seen) > 10 and set(seen) == {0.55}
    assert res["period_noise"] == 0.3 and len(seen_rho) > 10 and set(seen_rho) == {0.3}  # no instrument is unpitched
    assert res["loop_lowpass"] == 0.2 and len(seen_loop) > 10 and set(seen_loop) == {0.2}
    st = res["stability"]
    assert 0.0 <= st["silent_fraction"] <= 1.0 and st["nan_count"] == 0
    # silence judged before the output stage's gain (-3 dB and the velocity level: below 0 dB), so at
    # most as many windows as at the output
    assert st["stage_gain_db"] < 0 and st["silent_fraction"] <= st["silent_fraction_at_output"]
    # the per-note list is the grid the figures were computed from
    notes = res["pitch_preset"]["notes"]
    names = model.config.conditioning.instruments
    assert [(n["instrument"], n["pitch"]) for n in notes] == [
        (names[i], p) for i in ev.tonal_instruments(model, None) for p in ev.QUICK_GRID]
    errs = [1200.0 if n["cents"] is None else abs(n["cents"]) for n in notes]
    assert np.median(errs) == pytest.approx(res["pitch_preset"]["median_abs_cents"], abs=0.1)
    assert res["bend"]["n"] == len(ev.BEND_SEMITONES) * len(ev.tonal_instruments(model, None)) * len(ev.BEND_PITCHES)
    for bad in (-0.5, float("nan")):  # the bound of the preset and the engine: >= 0, 0 being argmax
        with pytest.raises(ValueError, match=f"--temperature {bad}: must be >= 0"):
            ev.evaluate(str(path), None, quick=True, temperature=bad)
        with pytest.raises(ValueError, match="period noise"):
            ev.evaluate(str(path), None, quick=True, period_noise=bad)
        with pytest.raises(ValueError, match="loop low-pass must be within 0-0.5"):
            ev.evaluate(str(path), None, quick=True, loop_lowpass=bad)


def test_bend_figures_measure_each_move_against_the_intended_bend():
    from models.evaluate import bend_figures

    f = bend_figures([(100.0, 98.0), (100.0, 60.0), (-100.0, -101.0), (-100.0, 0.0), (100.0, None)])
    assert f == {"n": 5, "voiced": 4, "median_abs_error_cents": 21.0, "within_25_cents": 0.5,
                 "median_move_cents": {"-100": -50.5, "+100": 79.0}}
    assert bend_figures([(100.0, None)]) == {"n": 1, "voiced": 0, "median_abs_error_cents": None,
                                             "within_25_cents": 0.0, "median_move_cents": {}}


def test_bent_note_moves_the_wheel_at_its_sample_and_not_before():
    """The same seed gives the same samples until the wheel moves (0.5 s), then the f0 input differs."""
    from models.evaluate import BEND_AT_S, bent_note
    from realtime.control.presets import load_preset

    model, preset = small_model(seed=3), load_preset()
    at = int(BEND_AT_S * SR)
    plain = bent_note(preset, model, 0, 60, 0.0, seconds=0.75)
    bent = bent_note(preset, model, 0, 60, 1.0, seconds=0.75)
    assert np.array_equal(plain[:at], bent[:at]) and np.any(plain[:at] != 0)
    assert not np.array_equal(plain[at:at + 400], bent[at:at + 400])


def test_envelope_shape_error_ignores_gain_and_measures_decay_and_collapse():
    """A held note's level against time: an offset (output gain) costs nothing; a flat note against a linear
    20 dB decay costs the ramp's mean deviation (5 dB); a collapse to silence costs its depth."""
    from models.evaluate import ENVELOPE_FLOOR_DB, envelope_shape_error, level_envelope

    real = np.linspace(-20.0, -40.0, 15)
    assert envelope_shape_error(real - 7.0, real) == pytest.approx(0.0, abs=1e-9)
    assert envelope_shape_error(np.full(15, -30.0), real) == pytest.approx(np.mean(np.abs(real + 30.0)), abs=1e-9)
    assert np.mean(np.abs(real + 30.0)) == pytest.approx(16 / 3)  # 15 steps of 20/14 dB: 2 * (20/14) * 28 / 15
    flat = np.full(15, -25.0)
    collapsed = flat.copy()
    collapsed[5:] = ENVELOPE_FLOOR_DB  # silent from 0.5 s while the real note holds at -25 dBFS
    # each envelope less its mean: 35 dB step, 1/3 of it before -> |dev| 35*(2/3) on 5 windows, 35/3 on 10
    assert envelope_shape_error(collapsed, flat) == pytest.approx((5 * 35 * 2 / 3 + 10 * 35 / 3) / 15, abs=1e-9)
    # windows where the real note is silent do not count
    real_tail = flat.copy()
    real_tail[10:] = -70.0
    assert envelope_shape_error(flat, real_tail) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(envelope_shape_error(flat, np.full(15, -70.0)))
    # level_envelope: dBFS per 100 ms, floored, silence-padded to 1.5 s
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # -23 dBFS (RMS of a 0.1 sine), 1 s
    env = level_envelope(x, sr)
    assert len(env) == 15 and env[:10] == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.05)
    assert (env[10:] == ENVELOPE_FLOOR_DB).all()


def test_envelope_figures_and_card_table(tmp_path):
    import json

    from models.evaluate import envelope_figures, without_notes
    from models.export import write_card

    real = np.linspace(-20.0, -34.0, 15)
    rows = [("piano", real - 3.0, real), ("piano", np.full(15, -30.0), real), ("piano", np.full(15, -28.0), real),
            ("flute", np.full(15, -18.0), np.full(15, -18.0))]
    env = envelope_figures(rows)
    flat_err = float(np.mean(np.abs(real - real.mean())))
    assert env["per_instrument"]["piano"] == pytest.approx(flat_err, abs=0.01)  # median of (0, flat, flat)
    assert env["per_instrument"]["flute"] == 0.0
    assert env["shape_error_db"] == pytest.approx(np.median([0.0, flat_err, flat_err, 0.0]), abs=0.01)
    assert env["curves"]["piano"]["generated_db"][0] == pytest.approx(-28.0)  # median of -23, -30, -28
    assert "curves" not in without_notes({"envelope": env})["envelope"]
    (tmp_path / "eval.json").write_text(json.dumps({"envelope": env}))
    write_card(tmp_path, small_model().config, {"training": {"steps": 5, "hours": 0.1}})
    card = (tmp_path / "MODEL.md").read_text()
    assert "## Level against time" in card and "| 0.0 s | 0.1 s |" in card and "| 1.4 s |" in card
    assert "| piano | real |  | -20 | -21 |" in card
    assert f"| piano | generated | {env['per_instrument']['piano']} | -28 |" in card


@pytest.mark.slow
def test_evaluator_compares_each_generated_notes_level_with_its_real_note(tiny_data, tmp_path):
    """With a dataset, the level curves are the real notes' from key-down and the generated notes' of the
    pitch grid (one real note per instrument at MIDI 60 in the tiny set), and the card tabulates them."""
    import torch
    from tiny_data import TINY

    from models import evaluate as ev
    from models.dataset import load_dataset
    from models.export import export_model
    from models.wavenet import WaveNet
    from realtime.model.config import WaveNetConfig

    torch.manual_seed(0)
    ds = load_dataset(tiny_data)
    path = export_model(WaveNet(WaveNetConfig.from_dict(TINY)), ds, tmp_path, {"steps": 0, "hours": 0.0})
    res = ev.evaluate(str(path), str(tiny_data), quick=True, png=None, log=lambda *a: None)
    env = res["envelope"]
    assert set(env["curves"]) == {"sine", "saw"}
    for i, name in enumerate(("sine", "saw")):
        real = ev.real_note(ds, i, 60)
        expect = ev.level_envelope(real.audio[real.onset:], 16000)
        assert env["curves"][name]["real_db"] == pytest.approx(np.round(expect, 1).tolist(), abs=0.051)
        rms = 0.4 / np.sqrt(2 if name == "sine" else 3)  # the tiny set's tones: amplitude 0.4
        assert env["curves"][name]["real_db"][1] == pytest.approx(20 * np.log10(rms), abs=0.1)
        assert len(env["curves"][name]["generated_db"]) == 15 and env["per_instrument"][name] >= 0.0
    (tmp_path / "eval.json").write_text(__import__("json").dumps(res))
    export_model(WaveNet(WaveNetConfig.from_dict(TINY)), ds, tmp_path, {"steps": 0, "hours": 0.0})  # the card
    assert "| sine | real |" in (tmp_path / "MODEL.md").read_text()


def test_the_presets_notes_play_in_blocks_so_the_watchdog_steps_in(tmp_path):
    """Played in render's blocks, a note is the one-block note (the network alone) to the sample while the
    watchdog is off; with it on, a random model's babble is caught as noise and re-primed mid-note."""
    from wnl_testutil import write_preset

    from models.evaluate import PLAY_BLOCK, generate_note
    from realtime.control.presets import load_preset
    from realtime.model.model_file import load_model

    path = small_model().save(tmp_path / "m.npz")
    model = load_model(path)
    notes = {}
    for on in (False, True):
        preset = load_preset(write_preset(tmp_path / f"{on}.toml", path, f"[watchdog]\nenabled = {str(on).lower()}"))
        notes[on] = (generate_note(preset, model, 0, 60, 2.0), generate_note(preset, model, 0, 60, 2.0, block=PLAY_BLOCK))
    assert np.array_equal(notes[False][0], notes[False][1])
    alone, played = notes[True]
    assert np.array_equal(alone, notes[False][0])  # in one block the watchdog never steps in
    assert np.array_equal(alone[:PLAY_BLOCK], played[:PLAY_BLOCK])
    assert not np.array_equal(alone, played)


def test_sampling_spread_of_known_distributions():
    """A certain network has no spread; a uniform one has the classes' variance; temperature narrows it."""
    from models.evaluate import sampling_spread
    from realtime.model import mulaw

    amp = mulaw.decode(np.arange(256)).astype(np.float64)
    targets = np.array([10, 128, 200, 250])
    certain = np.full((4, 256), -1e4)
    certain[np.arange(4), targets] = 0.0
    signal, var = sampling_spread(certain, targets, 1.0)
    assert signal == pytest.approx(np.mean(amp[targets] ** 2)) and var < 1e-12
    sig_u, var_u = sampling_spread(np.zeros((4, 256)), targets, 0.7)
    assert var_u == pytest.approx(np.mean(amp ** 2) - np.mean(amp) ** 2, rel=1e-9)
    # a bell of width 8 classes around each target: the variance falls as the temperature does
    bell = -0.5 * ((np.arange(256)[None, :] - targets[:, None]) / 8.0) ** 2
    spreads = [sampling_spread(bell, targets, t)[1] for t in (1.0, 0.5, 0.25)]
    assert spreads[0] > spreads[1] > spreads[2] > 0
    assert sampling_spread(bell, targets, 0.0)[1] == 0.0  # argmax


def test_teacher_forced_spread_is_per_instrument_and_deterministic():
    from types import SimpleNamespace

    from models.dataset import Note
    from models.evaluate import teacher_forced_spread_db

    model = small_model(seed=2)
    notes = [Note(tone(k, 220.0 * (1 + i), 0.5), instrument_id=i % 2, pitch=57 + 12 * i, velocity=100, onset=0,
                  release=SR // 2, tonal=True, file="x.wav") for i, k in enumerate(("sine", "saw"))]
    data = SimpleNamespace(notes=notes)
    names = model.config.conditioning.instruments
    hot = teacher_forced_spread_db(model, data, "numba", 1.0, every=1, seconds=0.25)
    assert set(hot) == {names[0], names[1]}
    assert hot == teacher_forced_spread_db(model, data, "numba", 1.0, every=1, seconds=0.25)
    cool = teacher_forced_spread_db(model, data, "numba", 0.3, every=1, seconds=0.25)
    assert all(cool[k] > hot[k] for k in hot)  # a lower temperature draws closer to the mode
    assert teacher_forced_spread_db(model, None, "numba", 0.5) is None


@pytest.mark.parametrize("velocity", [30, 90, 127])
def test_stage_gain_is_what_the_output_stage_applies_to_a_held_note(velocity):
    """The evaluator judges silence before this gain (the network's own scale, as the real notes):
    a steady tone through the controller's output stage comes out exactly this much quieter."""
    import math

    from realtime.control.controller import Controller, stage_gain_db
    from realtime.control.presets import Preset, SoundSection
    from realtime.engine.numba_engine import NumbaEngine
    from realtime.sound.output_stage import OutputStage

    e = NumbaEngine(small_model())
    stage = OutputStage(e.sample_rate, dc_hz=1.0)
    p = Preset(sound=SoundSection(gain_db=-7.0, velocity_to_level=0.6))
    c = Controller(e, stage, p)
    c.note_on(60, velocity)
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    y = stage.process(x.copy())
    measured = 20 * math.log10(np.sqrt(np.mean(y[8000:] ** 2)) / np.sqrt(np.mean(x[8000:] ** 2)))
    assert measured == pytest.approx(stage_gain_db(p.sound, velocity), abs=0.05)
    assert stage_gain_db(p.sound, 127) == pytest.approx(-7.0)


@pytest.mark.parametrize("snr_db", [15.0, 25.0, 40.0])
def test_white_noise_sits_the_stated_snr_below_the_given_power(snr_db):
    from models.audio_features import with_white_noise

    x = tone("sine", 440, 2.0)
    p = float(np.mean(x.astype(np.float64) ** 2))
    noisy = with_white_noise(x, snr_db, p, np.random.default_rng(1))
    assert 10 * np.log10(p / np.mean((noisy - x) ** 2)) == pytest.approx(snr_db, abs=0.1)
    assert np.array_equal(noisy, with_white_noise(x, snr_db, p, np.random.default_rng(1)))
    assert not np.array_equal(noisy, with_white_noise(x, snr_db, p, np.random.default_rng(2)))
    assert np.abs(with_white_noise(np.full(4000, 0.99), 0.0, 1.0, np.random.default_rng(0))).max() <= 1.0


def synthetic_notes(kinds: tuple[str, ...], steps) -> list:
    """Dataset-like notes (2 s tones from their first sample) of ``kinds`` at 110 Hz * 2^(step / 4)."""
    from types import SimpleNamespace

    return [SimpleNamespace(audio=tone(k, 110 * 2 ** (i / 4), 2.0), onset=0, instrument_id=j)
            for j, k in enumerate(kinds) for i in steps]


def test_noise_robust_references_hold_each_note_coded_clean_and_at_each_snr():
    from models.evaluate import noisy_logmel
    from realtime.model import mulaw

    notes = synthetic_notes(("sine", "saw"), [0])
    x, y = noisy_logmel(notes, SR, (30.0, 20.0), seed=0)
    assert x.shape == (6, 80) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(x[0], logmel_stats(mulaw.roundtrip(notes[0].audio.astype(np.float64)), SR))
    assert np.array_equal(x, noisy_logmel(notes, SR, (30.0, 20.0), seed=0)[0])  # deterministic
    other = noisy_logmel(notes, SR, (30.0, 20.0), seed=5)[0]
    assert np.array_equal(other[[0, 3]], x[[0, 3]]) and not np.array_equal(other[1], x[1])
    xn, yn = noisy_logmel(notes, SR, (25.0,), seed=0, clean_too=False)
    assert xn.shape == (2, 80) and yn.tolist() == [0, 1]


def test_noise_robust_timbre_names_noisy_notes_but_still_hears_a_wrong_shape():
    """Generated notes over a white noise floor 20 dB down are named by their shape; a saw generated for
    the sine is still heard as a saw (the classifier does not accept any noisy note); the real notes of
    other velocities at 25 dB are scored by both classifiers."""
    from models.evaluate import noise_robust_timbre, noisy_logmel

    ref = synthetic_notes(("sine", "saw"), range(0, 16, 2))
    unseen = synthetic_notes(("sine", "saw"), range(1, 15, 2))
    xg, yg = noisy_logmel(unseen, SR, (20.0,), seed=3, clean_too=False)
    saws = [n for n in unseen if n.instrument_id == 1]
    xw, _ = noisy_logmel(saws, SR, (20.0,), seed=4, clean_too=False)
    xg, yg = np.concatenate([xg, xw]), np.concatenate([yg, np.zeros(len(saws), int)])  # saws "for" the sine
    plain = NearestNeighbour().fit(*noisy_logmel(ref, SR, (), seed=0))
    res = noise_robust_timbre(ref, unseen, xg, yg, ["sine", "saw"], SR, plain)
    assert res["accuracy_generated_noise_robust"] == pytest.approx(2 / 3, abs=1e-4)
    assert res["confusion_noise_robust"] == {"sine": {"sine": 7, "saw": 7}, "saw": {"saw": 7}}
    assert res["real_over_noise"]["n"] == len(unseen) and res["real_over_noise"]["snr_db"] == 25.0
    assert res["real_over_noise"]["accuracy_noise_robust"] == 1.0
    assert "real_over_noise" not in noise_robust_timbre(ref, [], xg, yg, ["sine", "saw"], SR, plain)


def test_profile_excess_is_zero_for_the_same_note_the_filters_gain_when_dulled_positive_over_noise():
    """Band by band (0-0.5-1-2-4-8 kHz): a saw against itself 0 dB; low-passed by a 4-tap moving average
    it is that filter's gain at the band's middle (within 0.5 dB; the last band holds its null at 4 kHz);
    a sine over white noise 30 dB down is brighter in every band above its own (440 Hz)."""
    from models.evaluate import PROFILE_BANDS_HZ, profile_excess_db

    saw = tone("saw", 220.0, 2.0).astype(np.float64)
    assert profile_excess_db([(saw, saw)], SR) == [0.0] * (len(PROFILE_BANDS_HZ) - 1)
    dull = profile_excess_db([(np.convolve(saw, np.ones(4) / 4, mode="same"), saw)], SR)
    f = np.array([250.0, 750.0, 1500.0, 3000.0])
    gain_db = 20 * np.log10(np.abs(np.sin(np.pi * f * 4 / SR) / (4 * np.sin(np.pi * f / SR))))
    assert dull[:4] == pytest.approx(gain_db.tolist(), abs=0.5) and dull[4] < -10.0
    sine = tone("sine", 440.0, 2.0).astype(np.float64)
    noisy = sine + np.random.default_rng(0).standard_normal(len(sine)) * np.sqrt(np.mean(sine ** 2) / 1000)
    bright = profile_excess_db([(noisy, sine)], SR)
    assert all(b > 10.0 for b in bright[1:]), bright
    both = profile_excess_db([(noisy, sine), (sine, sine)], SR)  # the mean over the pairs
    assert both == pytest.approx([b / 2 for b in bright], abs=0.06)


def test_spectral_profile_pairs_each_generated_note_with_its_real_note_from_key_down(tmp_path):
    """The real note (velocity nearest 90) is read from its onset and mu-law coded: a generated note that
    is that note from key-down, mu-law coded, differs by 0 dB; the card tabulates the figure."""
    import json
    from types import SimpleNamespace

    from models.evaluate import spectral_profile
    from models.export import write_card
    from realtime.model import mulaw

    t = np.arange(2 * SR) / SR
    bright_then_dull = sum(np.sin(2 * np.pi * 220 * k * t) * np.exp(-k * t) / k for k in range(1, 20))
    audio = np.concatenate([np.zeros(SR // 2), 0.5 * bright_then_dull]).astype(np.float32)
    mk = lambda i, p, v: SimpleNamespace(instrument_id=i, pitch=p, velocity=v, audio=audio, onset=SR // 2)  # noqa: E731
    data = SimpleNamespace(notes=[mk(0, 57, 80), mk(0, 57, 95), mk(1, 57, 80)])
    same = mulaw.roundtrip(audio[SR // 2:])
    prof = spectral_profile({(0, 57): same, (1, 57): same[SR // 4:]}, data, ["piano", "flute"], SR)
    assert prof["per_instrument"]["piano"] == [0.0] * 5
    assert max(map(abs, prof["per_instrument"]["flute"])) > 1.0  # a quarter second late: duller
    assert prof["bands_hz"] == [0.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0]
    (tmp_path / "eval.json").write_text(json.dumps({"timbre": {"profile_excess_db": prof}}))
    write_card(tmp_path, small_model().config, {"training": {"steps": 5, "hours": 0.1}})
    card = (tmp_path / "MODEL.md").read_text()
    assert "## Spectral shape against the real notes" in card and "| 0-0.5 kHz | 0.5-1 kHz |" in card
    assert "| piano | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 |" in card


def test_draw_classes_is_the_engines_inverse_cdf_sampler():
    """Two classes at 1/4 and 3/4: a uniform below 1/4 draws the first; argmax at temperature 0; a
    lower temperature draws the likelier class more often."""
    from models.evaluate import draw_classes

    logits = np.full((2000, 256), -1e4, np.float32)
    logits[:, 10], logits[:, 200] = np.log(0.25), np.log(0.75)
    u = np.random.default_rng(0).random(2000)
    k = draw_classes(logits, 1.0, u)
    away = np.abs(u - 0.25) > 1e-4  # float32 rounding at the boundary
    np.testing.assert_array_equal(k[away], np.where(u < 0.25, 10, 200)[away])
    assert set(draw_classes(logits, 0.0, u).tolist()) == {200}
    assert np.mean(draw_classes(logits, 0.5, u) == 10) == pytest.approx(0.1, abs=0.02)  # 1 : 9 at T 0.5


def test_resynthesis_redraws_the_real_note_one_sample_at_a_time():
    """At temperature 0 it is the argmax of the teacher-forced logits; a given seed repeats it; a lower
    temperature draws the argmax more often."""
    from models.dataset import Note
    from models.evaluate import note_logits, resynthesized
    from realtime.model import mulaw
    from realtime.offline.render import make_engine

    model = small_model(seed=2)
    note = Note(tone("saw", 220.0, 0.5), instrument_id=1, pitch=57, velocity=100, onset=0, release=SR // 2,
                tonal=True, file="x.wav")
    e = make_engine("numba", model)
    x, logits = note_logits(e, note, 0.25, SR)
    rng = np.random.default_rng
    np.testing.assert_array_equal(resynthesized(e, note, 0.0, rng(0), 0.25, SR), mulaw.decode(logits.argmax(axis=1)))
    hot = resynthesized(e, note, 1.0, rng(1), 0.25, SR)
    np.testing.assert_array_equal(hot, resynthesized(e, note, 1.0, rng(1), 0.25, SR))
    mode = mulaw.decode(logits.argmax(axis=1))
    at_mode = [float(np.mean(resynthesized(e, note, t, rng(1), 0.25, SR) == mode)) for t in (0.3, 1.0)]
    assert at_mode[0] > at_mode[1] + 0.1


def test_resynthesis_timbre_names_other_velocity_notes_with_each_classifier(monkeypatch):
    """The notes re-drawn are the real notes nearest velocity 90 that the classifiers were not fitted on
    (velocity 80 is their reference); a perfect re-draw is named right, a re-draw as the other
    instrument is named wrong, per instrument."""
    from types import SimpleNamespace

    from models import evaluate
    from models.dataset import Note

    model = small_model(seed=2)
    names = model.config.conditioning.instruments

    def note(kind, inst, vel):  # level-free features: the same tone at another velocity is named alike
        return Note(tone(kind, 220.0, 2.0) * vel / 127, instrument_id=inst, pitch=57, velocity=vel, onset=0,
                    release=SR, tonal=True, file=f"{kind}{vel}.wav")

    data = SimpleNamespace(notes=[note("sine", 0, 80), note("saw", 1, 80), note("sine", 0, 110),
                                  note("saw", 1, 50), note("saw", 1, 110)])
    refs = [n for n in data.notes if n.velocity == evaluate.REF_VELOCITY]
    clf = NearestNeighbour().fit(np.stack([logmel_stats(n.audio, SR) for n in refs]), np.asarray([0, 1]))
    used = []
    monkeypatch.setattr(evaluate, "resynthesized", lambda e, n, t, rng, s, sr: (used.append(n), n.audio)[1])
    r = evaluate.resynthesis_timbre(model, data, "numba", [(0, 57), (1, 57)], 0.5, 0, {"plain": clf})
    assert [(n.instrument_id, n.velocity) for n in used] == [(0, 110), (1, 110)]
    assert r["n"] == 2 and r["accuracy_plain"] == 1.0 and r["right_plain"] == {names[0]: 1, names[1]: 1}
    assert r["notes"] == {names[0]: 1, names[1]: 1} and r["temperature"] == 0.5
    swap = {0: data.notes[1].audio, 1: data.notes[0].audio}
    monkeypatch.setattr(evaluate, "resynthesized", lambda e, n, t, rng, s, sr: swap[n.instrument_id])
    assert evaluate.resynthesis_timbre(model, data, "numba", [(0, 57), (1, 57)], 0.5, 0, {"p": clf})["accuracy_p"] == 0.0
    assert evaluate.resynthesis_timbre(model, data, "numba", [(0, 60)], 0.5, 0, {"p": clf}) is None


def test_half_accuracies_name_notes_by_each_half_of_the_descriptor_alone():
    """Notes whose spectral shape (first half) matches their instrument's references but whose course over
    time (second half) matches the other instrument's: named right by the mean half, wrong by the std half."""
    from models.evaluate import half_accuracies

    rng = np.random.default_rng(0)
    y_ref = np.repeat([0, 1], 20)
    x_ref = np.concatenate([y_ref[:, None] * 10.0 + rng.normal(0, 1, (40, 4)),
                            y_ref[:, None] * 10.0 + rng.normal(0, 1, (40, 4))], axis=1)
    y = np.array([0, 1, 0, 1])
    x = np.concatenate([y[:, None] * 10.0 + rng.normal(0, 1, (4, 4)),
                        (1 - y[:, None]) * 10.0 + rng.normal(0, 1, (4, 4))], axis=1)
    assert half_accuracies(x_ref, y_ref, x, y) == {"mean": 1.0, "std": 0.0}
