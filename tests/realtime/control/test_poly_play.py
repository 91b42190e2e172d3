"""Polyphonic playing (sound.voices > 1): chords, stealing, release, determinism, replay."""
from __future__ import annotations

import json

import numpy as np
import pytest
from wnl_testutil import run_cli, small_model, write_preset

from realtime.control.presets import load_preset
from realtime.model.model_file import load_model
from realtime.offline.render import Session, render_timeline

SR = 16000


def session(tmp_path, voices: int = 4):
    path = small_model().save(tmp_path / "m.npz")
    preset = write_preset(tmp_path / "p.toml", path, f'[sound]\nvoices = {voices}\nrelease_ms = 50.0\n'
                                                    '[watchdog]\nenabled = false')
    return Session.open(load_preset(preset), load_model(path)), preset


def chord(notes, at: int, off: int):
    return ([(at, bytes([0x90, n, 100])) for n in notes] + [(off, bytes([0x80, n, 0])) for n in notes])


def test_a_chord_sounds_on_its_own_voices_and_releases_to_silence(tmp_path):
    s, _ = session(tmp_path)
    assert s.engine.name == "poly-fp32x4"
    out = render_timeline(s, chord([60, 64, 67], 1600, 12000), 8000)
    assert sorted(s.controller.alloc.busy()) == [0, 1, 2]
    assert s.engine.active.tolist() == [True, True, True, False]
    assert np.sqrt(np.mean(out[2000:8000] ** 2)) > 1e-3 and np.all(out[:1600] == 0)
    for n in (60, 64, 67):
        s.apply_midi(bytes([0x80, n, 0]))
    tail = np.zeros(16000, np.float32)
    s.generate(tail)  # release (50 ms) then the voices free themselves
    assert s.controller.alloc.busy() == [] and not s.engine.active.any()
    assert np.abs(tail[-4000:]).max() < 1e-6  # only the DC blocker's decaying tail (-120 dBFS)


def test_a_voice_does_not_hear_the_others(tmp_path):
    """Voice 0 plays the same samples whatever voice 1 plays (independent queues, uniforms, controls)."""
    runs = []
    for other in (67, 71):
        s, _ = session(tmp_path)
        render_timeline(s, chord([60, other], 0, 4000), 3000)
        runs.append(s.controller.poly.voice_out.copy())
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert np.abs(runs[0][0]).max() > 0 and not np.array_equal(runs[0][1], runs[1][1])


def test_fifth_note_steals_the_oldest(tmp_path):
    s, _ = session(tmp_path)
    tl = [(i * 800, bytes([0x90, n, 100])) for i, n in enumerate([48, 52, 55, 59, 62])]
    render_timeline(s, tl, 5000)
    stolen = [e for e in s.events if e.get("stolen") is not None]
    assert len(stolen) == 1 and stolen[0]["value"] == 62 and stolen[0]["stolen"] == 48 and stolen[0]["voice"] == 0


def test_render_is_deterministic_and_replays_exactly(tmp_path):
    _, preset = session(tmp_path)
    out = tmp_path / "take"
    mid = tmp_path / "c.mid"
    import mido

    m = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    m.tracks.append(tr)
    for n in (60, 64, 67):
        tr.append(mido.Message("note_on", note=n, velocity=90, time=0))
    tr.append(mido.Message("note_off", note=64, velocity=0, time=480))
    tr.append(mido.Message("note_off", note=60, velocity=0, time=240))
    tr.append(mido.Message("note_off", note=67, velocity=0, time=0))
    m.save(str(mid))
    r = run_cli("render", "--out", str(out), "--midi", str(mid), "--preset", str(preset))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["engine"] == "poly-fp32x4"
    rr = run_cli("replay", str(out), "--out", str(tmp_path / "again.wav"))
    assert rr.returncode == 0, rr.stderr
    assert json.loads(rr.stdout.strip().splitlines()[-1])["matches_recording"] is True


@pytest.mark.parametrize("bad", ["0", "17", "2.5"])
def test_voices_out_of_range(tmp_path, bad):
    from realtime.control.presets import PresetError

    path = write_preset(tmp_path / "p.toml", tmp_path / "m.npz", f"[sound]\nvoices = {bad}")
    with pytest.raises(PresetError, match="sound.voices"):
        load_preset(path)


def test_program_change_reprimes_every_sounding_voice(tmp_path):
    from realtime.model.model_file import SeedBank

    path = small_model().save(tmp_path / "m.npz")
    m = load_model(path)
    rng = np.random.default_rng(1)
    m.seedbank = SeedBank(rng.integers(0, 256, (4, 200)), [0, 0, 1, 1], [60, 64, 60, 64], [100] * 4)
    m.save(path)
    preset = write_preset(tmp_path / "p.toml", path, '[sound]\nvoices = 4\n[watchdog]\nenabled = false')
    preset.write_text(preset.read_text().replace('reprime = "off"', 'reprime = "note_on_program"'))
    s = Session.open(load_preset(preset), load_model(path))
    render_timeline(s, chord([60, 64], 0, 99999), 800)
    before = s.controller.state.reprimes
    s.apply_midi(bytes([0xC0, 1]))
    assert s.controller.state.reprimes == before + 1
    assert {e.instrument for e in (s.engine.voice(0), s.engine.voice(1))} == {1}
    bank = s.controller.primes  # each sounding voice now holds its note's snippet of instrument 1 (rows 2, 3)
    for v, note, row in ((0, 60, 2), (1, 64, 3)):
        assert bank.index(1, note, 100) == row
        np.testing.assert_array_equal(s.engine.voice(v).queues, bank.get(row).queues)
