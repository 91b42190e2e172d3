"""render and replay apply the same effect chain: a session folder rendered through a reverb, with a CC
sweeping one of its parameters, replays sample for sample, tail included; the sweep is logged and heard."""
from __future__ import annotations

import json

import mido
import numpy as np
import pytest
import soundfile as sf
from wnl_testutil import run_cli, small_model, write_preset

EFFECTS = """[sound]
release_ms = 20.0
[[effects]]
type = "Reverb"
room_size = 0.85
wet_level = 0.2
[[effects]]
type = "Delay"
delay_seconds = 0.15
feedback = 0.3
mix = 0.3
[midi.cc]
91 = "fx1.wet_level"
92 = "fx2.feedback"
"""


def write_midi(path, sweep_cc: int | None):
    """Two notes; with ``sweep_cc``, that CC sweeps 0 -> 127 over 0.2-1.0 s in 33 steps."""
    evs = [(0.1, mido.Message("note_on", note=60, velocity=100)), (0.5, mido.Message("note_off", note=60)),
           (0.7, mido.Message("note_on", note=67, velocity=90)), (1.0, mido.Message("note_off", note=67))]
    if sweep_cc is not None:
        evs += [(0.2 + 0.025 * k, mido.Message("control_change", control=sweep_cc, value=min(127, 4 * k)))
                for k in range(33)]
    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 1 s = 960 ticks
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    now = 0
    for t, msg in sorted(evs, key=lambda e: e[0]):
        tick = round(t * 960)
        tr.append(msg.copy(time=tick - now))
        now = tick
    mid.save(str(path))
    return path


def render(tmp_path, name: str, sweep_cc: int | None, rate: int = 44100, voices: int = 1):
    model = tmp_path / "m.npz"
    if not model.exists():
        small_model().save(model)
    preset = write_preset(tmp_path / "p.toml", model, EFFECTS.replace("[sound]\n", f"[sound]\nvoices = {voices}\n"))
    out = tmp_path / name
    r = run_cli("render", "--out", str(out), "--midi", str(write_midi(tmp_path / f"{name}.mid", sweep_cc)),
                "--preset", str(preset), "--samplerate", str(rate), "--seconds", "1.3")
    assert r.returncode == 0, r.stderr
    audio, sr = sf.read(str(out / "audio.wav"), dtype="float32")
    evs = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    return out, audio, evs


@pytest.mark.slow
@pytest.mark.parametrize("cc, param, voices", [(91, "fx1.wet_level", 1), (92, "fx2.feedback", 1),
                                              (91, "fx1.wet_level", 4)])
def test_render_with_effects_and_a_cc_sweep_replays_exactly(tmp_path, cc, param, voices):
    out, audio, evs = render(tmp_path, "take", cc, voices=voices)
    swept = [e for e in evs if e["param"] == param]
    assert len(swept) == 33 and [e["midi"] for e in swept][-1] == [0xB0, cc, 127]
    values = [e["value"] for e in swept]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0
    stop = [e for e in evs if e["param"] == "stop"]
    assert [e["sample"] for e in stop] == [int(1.3 * 16000)]  # the end of the render ...
    man = json.loads((out / "session.json").read_text())
    assert man["preset"]["effects"][0] == {"type": "Reverb", "room_size": 0.85, "wet_level": 0.2}
    assert len(audio) == man["frames_written"] > 1.3 * 44100 + 0.5 * 44100  # ... then the tail rang out
    rr = run_cli("replay", str(out), "--out", str(tmp_path / "again.wav"))
    assert rr.returncode == 0, rr.stderr
    assert json.loads(rr.stdout.strip().splitlines()[-1])["matches_recording"] is True
    again, _ = sf.read(str(tmp_path / "again.wav"), dtype="float32")
    np.testing.assert_array_equal(again, audio)
    # the sweep is heard: without it the render is the same up to the first CC, different after
    _, plain, _ = render(tmp_path, "plain", None, voices=voices)
    first = int(round(swept[0]["device_frame"] if "device_frame" in swept[0] else swept[0]["sample"] * 44100 / 16000))
    n = min(len(plain), len(audio))
    assert np.array_equal(plain[:first - 1000], audio[:first - 1000])
    diff = np.abs(plain[first:n] - audio[first:n]).max()
    assert man["engine"].startswith("poly") == (voices > 1)
    print(f"\n{voices} voice(s), {param} swept: {len(audio) / 44100:.2f} s with the tail, "
          f"max difference from no sweep {diff:.3f}")
    assert diff > 0.01
