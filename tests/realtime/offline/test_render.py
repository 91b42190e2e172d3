"""Offline render: right length and rate, finite, audible; MIDI events land at their sample times."""
from __future__ import annotations

import json

import mido
import numpy as np
import soundfile as sf
from wnl_testutil import run_cli, small_model, write_preset

from realtime.control.presets import load_preset
from realtime.engine.numba_engine import ENGINE_NAMES
from realtime.model.model_file import load_model
from realtime.offline.render import Session, render_timeline


def test_render_cli_writes_two_seconds(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    out = tmp_path / "r.wav"
    res = run_cli("render", "--out", str(out), "--seconds", "2", "--model", str(model))
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["samples"] == 32000 and info["sample_rate"] == 16000 and info["engine"] == "numba"
    assert info["rtf"] > 0
    audio, sr = sf.read(str(out))
    assert sr == 16000 and len(audio) == 32000
    assert np.isfinite(audio).all()
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3  # not silent
    assert np.abs(audio).max() <= 0.99


def test_render_resamples_on_request(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    out = tmp_path / "r.wav"
    res = run_cli("render", "--out", str(out), "--seconds", "1", "--model", str(model), "--samplerate", "48000")
    assert res.returncode == 0, res.stderr
    info = sf.info(str(out))
    assert info.samplerate == 48000 and abs(info.frames - 48000) <= 2


def write_midi(path, notes, program_at=None):
    """notes: [(start_s, dur_s, pitch)] at 120 bpm, 480 ticks per beat (1 s = 960 ticks)."""
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    evs = []
    for start, dur, pitch in notes:
        evs.append((round(start * 960), mido.Message("note_on", note=pitch, velocity=100)))
        evs.append((round((start + dur) * 960), mido.Message("note_off", note=pitch, velocity=0)))
    if program_at is not None:
        evs.append((round(program_at[0] * 960), mido.Message("program_change", program=program_at[1])))
    evs.sort(key=lambda e: e[0])
    now = 0
    for tick, msg in evs:
        tr.append(msg.copy(time=tick - now))
        now = tick
    mid.save(str(path))
    return path


def test_midi_events_change_conditioning_at_note_times(tmp_path):
    """Rendering a MIDI file equals rendering silence up to the first note, then diverges exactly there."""
    model_path = small_model().save(tmp_path / "m.npz")
    preset = load_preset(write_preset(tmp_path / "p.toml", model_path))
    midi = write_midi(tmp_path / "n.mid", [(0.25, 0.3, 64), (0.75, 0.2, 71)], program_at=(0.6, 2))
    from realtime.offline.midi_file import load_events

    timeline, length = load_events(midi, 16000)
    assert [t for t, _ in timeline] == [4000, 8800, 9600, 12000, 15200]
    model = load_model(model_path)
    with_notes = Session.open(preset, model)
    a = render_timeline(with_notes, timeline, 17000, block=1000)
    empty = render_timeline(Session.open(preset, model), [], 17000, block=1000)
    first_diff = int(np.flatnonzero(a != empty)[0])
    assert first_diff == 4000
    assert [e["sample"] for e in with_notes.events] == [4000, 8800, 9600, 12000, 15200]
    assert with_notes.events[2]["param"] == "instrument" and with_notes.events[2]["value"] == 2


def test_render_from_midi_file_cli(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    midi = write_midi(tmp_path / "n.mid", [(0.1, 0.5, 60)])
    out = tmp_path / "r.wav"
    res = run_cli("render", "--out", str(out), "--midi", str(midi), "--model", str(model))
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert 0.6 < info["seconds"] < 1.5  # the file's length plus the release tail


def test_engine_auto_says_which_and_uses_it(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    res = run_cli("render", "--out", str(tmp_path / "a.wav"), "--seconds", "0.5", "--model", str(model),
                  "--engine", "auto")
    assert res.returncode == 0, res.stderr
    name = json.loads(res.stdout.strip().splitlines()[-1])["engine"]
    assert name in ENGINE_NAMES
    assert f"engine auto -> {name}: samples/s fp32" in res.stderr
