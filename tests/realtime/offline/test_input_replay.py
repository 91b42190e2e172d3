"""Issue 40: render --input-file feeds a file as the audio input; a session folder rendered with it (notes primed from
the input, a CC switching to through mid-way) holds input.wav, and replay reads it back: the same samples.
A missing input file, and bad [input] values, are one-line errors naming the file or field."""
from __future__ import annotations

import json

import mido
import numpy as np
import pytest
import soundfile as sf
from wnl_testutil import run_cli, small_model, write_preset

INPUT = """[input]
mode = "prime"
prime_ms = 100.0
level_db = -12.0
[midi.cc]
30 = "input_mode"
"""


def write_midi(path):
    """Two notes primed from the input, then CC 30 = 127 (through) at 0.9 s, a third note at 1.0 s."""
    evs = [(0.3, mido.Message("note_on", note=57, velocity=100)), (0.6, mido.Message("note_off", note=57)),
           (0.7, mido.Message("note_on", note=60, velocity=90)), (0.85, mido.Message("note_off", note=60)),
           (0.9, mido.Message("control_change", control=30, value=127)),
           (1.0, mido.Message("note_on", note=62, velocity=90)), (1.2, mido.Message("note_off", note=62))]
    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 1 s = 960 ticks
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    now = 0
    for t, msg in evs:
        tick = round(t * 960)
        tr.append(msg.copy(time=tick - now))
        now = tick
    mid.save(str(path))
    return path


def tone_file(path, rate=44100, seconds=2.0):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)
    sf.write(str(path), np.stack([x, 0.5 * x], axis=1).astype(np.float32), rate)  # stereo: channel 1 is taken
    return path


@pytest.mark.slow
def test_render_with_an_input_file_replays_exactly(tmp_path):
    model = tmp_path / "m.npz"
    small_model().save(model)
    preset = write_preset(tmp_path / "p.toml", model, INPUT)
    out = tmp_path / "take"
    r = run_cli("render", "--out", str(out), "--midi", str(write_midi(tmp_path / "in.mid")), "--preset", str(preset),
                "--input-file", str(tone_file(tmp_path / "tone.wav")), "--samplerate", "48000", "--seconds", "1.5")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e.get("prime") for e in evs if e["param"] == "note_on"] == ["input", "input", None]  # through: no prime
    assert [e["value"] for e in evs if e["param"] == "input_mode"] == ["through"]
    man = json.loads((out / "session.json").read_text())
    assert man["input"] == "input.wav" and man["input_rate"] == 16000 and man["input_frames"] == int(1.5 * 16000)
    fed, rate = sf.read(str(out / "input.wav"), dtype="float32")
    assert rate == 16000 and abs(np.sqrt(np.mean(fed ** 2)) - np.sqrt(0.3 ** 2 / 2 + 0.1 ** 2 / 2)) < 0.01
    audio, _ = sf.read(str(out / "audio.wav"), dtype="float32")
    rr = run_cli("replay", str(out), "--out", str(tmp_path / "again.wav"))
    assert rr.returncode == 0, rr.stderr
    assert json.loads(rr.stdout.strip().splitlines()[-1])["matches_recording"] is True
    again, _ = sf.read(str(tmp_path / "again.wav"), dtype="float32")
    np.testing.assert_array_equal(again, audio)
    # without input.wav the replay would differ: the input primed those notes
    (out / "input.wav").rename(tmp_path / "kept.wav")
    man["input"] = ""
    (out / "session.json").write_text(json.dumps(man))
    rr = run_cli("replay", str(out), "--out", str(tmp_path / "other.wav"))
    other, _ = sf.read(str(tmp_path / "other.wav"), dtype="float32")
    assert not np.array_equal(other, audio)


def test_a_missing_input_file_is_one_line(tmp_path):
    model = tmp_path / "m.npz"
    small_model().save(model)
    preset = write_preset(tmp_path / "p.toml", model, INPUT)
    r = run_cli("render", "--out", str(tmp_path / "x.wav"), "--preset", str(preset), "--seconds", "0.1",
                "--input-file", str(tmp_path / "nope.wav"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"wavenet-live: error: input file {tmp_path / 'nope.wav'}: not found"]


@pytest.mark.parametrize("line, field", [('mode = "loop"', "input.mode"), ("prime_ms = 0.0", "input.prime_ms"),
                                         ("level_db = 20.0", "input.level_db"), ("channel = -1", "input.channel"),
                                         ("gate_db = 3.0", "input.gate_db"), ("volume = 1.0", "input.volume")])
def test_bad_input_values_are_one_line_naming_the_field(tmp_path, line, field):
    from realtime.control.presets import PresetError, load_preset

    p = tmp_path / "p.toml"
    p.write_text(f"[input]\n{line}\n")
    with pytest.raises(PresetError) as e:
        load_preset(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}: {field}"), msg
