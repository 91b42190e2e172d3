"""A render can be a session folder, the same kind of thing as a live take: replay reproduces it exactly."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from test_render import write_midi
from wnl_testutil import run_cli, small_model, write_preset

from realtime.engine.numba_engine import ENGINE_NAMES
from realtime.live.host import HostStats
from realtime.live.status import format_status


def test_render_session_folder_replays_exactly(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    midi = write_midi(tmp_path / "n.mid", [(0.1, 0.4, 60), (0.6, 0.3, 67)], program_at=(0.5, 1))
    out = tmp_path / "take"
    r = run_cli("render", "--out", str(out), "--midi", str(midi), "--model", str(model), "--samplerate", "44100")
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "session.json").read_text())
    assert man["kind"] == "render" and man["device_rate"] == 44100 and man["model_rate"] == 16000
    evs = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e["sample"] for e in evs if e["param"] in ("note_on", "note_off")] == [1600, 8000, 9600, 14400]
    rr = run_cli("replay", str(out), "--out", str(tmp_path / "again.wav"))
    assert rr.returncode == 0, rr.stderr
    assert json.loads(rr.stdout.strip().splitlines()[-1])["matches_recording"] is True
    a, _ = sf.read(str(out / "audio.wav"), dtype="float32")
    b, _ = sf.read(str(tmp_path / "again.wav"), dtype="float32")
    assert len(a) == man["frames_written"] > 44100 and np.array_equal(a, b)


def test_status_line_shows_a_recording_warning():
    line = format_status(HostStats(warning="record x: writing stopped (No space left on device)", samplerate=48000))
    assert "WARNING record x: writing stopped (No space left on device)" in line


def test_status_line_shows_voices():
    assert "piano C4 T=0.90 voices 3/4" in format_status(HostStats(instrument="piano", note=60, temperature=0.9,
                                                                   voices="3/4", samplerate=48000))


def test_auto_engine_is_resolved_in_the_session_so_replay_does_not_reprobe(tmp_path):
    """``engine = "auto"`` probes the machine; the take records what it picked, and replay uses that."""
    model = small_model().save(tmp_path / "m.npz")
    preset = write_preset(tmp_path / "p.toml", model, 'engine = "auto"\n[sound]\nvoices = 3\n')
    midi = write_midi(tmp_path / "n.mid", [(0.05, 0.5, 60), (0.1, 0.4, 64), (0.2, 0.5, 67)])
    out = tmp_path / "take"
    r = run_cli("render", "--out", str(out), "--midi", str(midi), "--preset", str(preset))
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "session.json").read_text())
    picked = man["preset"]["model"]["engine"]
    assert picked in ENGINE_NAMES and f"engine auto -> {picked}:" in r.stderr
    rr = run_cli("replay", str(out), "--out", str(tmp_path / "again.wav"))
    assert rr.returncode == 0, rr.stderr
    assert "engine auto" not in rr.stderr  # no second probe
    assert json.loads(rr.stdout.strip().splitlines()[-1])["matches_recording"] is True
