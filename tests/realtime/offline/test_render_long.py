"""Long renders: a MIDI file far longer than its notes is refused unless asked for, a long render shows
its progress on a terminal (and only there), and the output streams to disk with flat memory."""
from __future__ import annotations

import io
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from test_midi_files_bad import EOT, NOTE, smf, vlq
from wnl_testutil import run_cli, small_model, write_preset

from realtime.control.presets import load_preset
from realtime.model.config import ConditioningSpec, WaveNetConfig
from realtime.model.model_file import random_model
from realtime.offline import progress as progress_mod
from realtime.offline.midi_file import check_length, load_events
from realtime.offline.progress import RenderProgress
from realtime.offline.render import Session, render_timeline
from realtime.offline.render_file import render_to_file

SR = 16000
#: the issue's file: one note, then one delta time of 0x00FFFFFF ticks (4.85 h at 120 bpm, 480 ticks per beat)
HUGE_GAP = smf(NOTE + vlq(0x00FFFFFF) + b"\x90\x40\x64" + vlq(480) + b"\x80\x40\x00" + EOT)
#: a 0.5 s note, then 90 s of nothing before the end of the track
SILENT_TAIL = smf(NOTE + vlq(90 * 960) + EOT[1:])  # the end of track 90 s after the note


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return small_model().save(tmp_path_factory.mktemp("long") / "m.npz")


def one_line(res) -> str:
    err = res.stderr.strip()
    assert res.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, res.stderr
    return err


def test_check_length_states_the_length_and_asks_for_a_flag(tmp_path):
    for name, data, length, why in (("gap.mid", HUGE_GAP, "4:51:", "over an hour"),
                                    ("tail.mid", SILENT_TAIL, "1:30.5", "1:30.0 of silence after its last event")):
        path = tmp_path / name
        path.write_bytes(data)
        events, seconds = load_events(path, SR)
        with pytest.raises(ValueError) as e:
            check_length(path, events, seconds, SR)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and length in msg and why in msg, msg
        assert "--seconds" in msg and "--max-seconds" in msg
    path = tmp_path / "ok.mid"
    path.write_bytes(smf(NOTE + vlq(20 * 960) + EOT[1:]))  # 20 s of silence at the end: a normal file
    check_length(path, *load_events(path, SR), SR)


def test_cli_refuses_the_four_hour_file_unless_asked(tmp_path, model_path):
    midi = tmp_path / "gap.mid"
    midi.write_bytes(HUGE_GAP)
    out = tmp_path / "x.wav"
    err = one_line(run_cli("render", "--out", str(out), "--midi", str(midi), "--model", str(model_path)))
    assert str(midi) in err and "4:51:" in err and "--max-seconds" in err, err
    assert not out.exists()
    for flag, value, seconds in (("--seconds", "0.5", 0.5), ("--max-seconds", "0.75", 0.75)):
        res = run_cli("render", "--out", str(out), "--midi", str(midi), "--model", str(model_path), flag, value,
                      timeout=300)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout.strip().splitlines()[-1])["seconds"] == seconds
        assert sf.info(str(out)).frames == int(seconds * SR)
        assert "real time" not in res.stderr  # stderr is a pipe here: no progress bar


def test_max_seconds_caps_and_a_shorter_file_renders_whole(tmp_path, model_path):
    midi = tmp_path / "tail.mid"
    midi.write_bytes(SILENT_TAIL)
    res = run_cli("render", "--out", str(tmp_path / "t.wav"), "--midi", str(midi), "--model", str(model_path),
                  "--max-seconds", "1")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["seconds"] == 1.0
    short = tmp_path / "short.mid"
    short.write_bytes(smf(NOTE + EOT))  # 0.5 s: rendered to its length and the release tail, as without the flag
    res = run_cli("render", "--out", str(tmp_path / "s.wav"), "--midi", str(short), "--model", str(model_path),
                  "--max-seconds", "100")
    assert res.returncode == 0, res.stderr
    assert 0.6 < json.loads(res.stdout.strip().splitlines()[-1])["seconds"] < 1.5


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: now[0])
    return now


def test_progress_shows_audio_seconds_speed_and_time_left_on_a_terminal(clock):
    out = Tty()
    p = RenderProgress(300 * SR, SR, stream=out, min_seconds=3.0, probe_s=0.5)
    clock[0] += 0.2
    p(SR)
    assert not p.shown  # too early to judge
    clock[0] += 0.4
    p(6 * SR)  # 6 s of audio in 0.6 s: 10x real time, 294 s of audio left: 29 s
    assert p.shown
    p.close(6 * SR)
    text = out.getvalue()
    assert "6.0 / 300.0 s audio" in text and "10.0x real time" in text and "0:00:29 left" in text, text


def test_progress_stays_off_for_a_short_render_or_a_pipe(clock):
    quick = Tty()
    p = RenderProgress(10 * SR, SR, stream=quick, min_seconds=3.0, probe_s=0.5)
    clock[0] += 0.6
    p(5 * SR)  # half done in 0.6 s: 1.2 s in all
    p.close(10 * SR)
    assert not p.shown and quick.getvalue() == ""
    pipe = io.StringIO()
    p = RenderProgress(300 * SR, SR, stream=pipe, min_seconds=0.0, probe_s=0.0)
    clock[0] += 5.0
    p(SR)
    p.close(SR)
    assert not p.enabled and pipe.getvalue() == ""


def tiny_session(tmp_path) -> Session:
    """A small fast model (one stack of 4 layers) with the local inputs, no seed bank."""
    spec = ConditioningSpec(instruments=("a", "b"), local=("gate", "f0_sin", "f0_cos"))
    path = random_model(WaveNetConfig(8, 16, 4, 1, conditioning=spec), seed=1, scale=2.0).save(tmp_path / "t.npz")
    return Session.open(load_preset(write_preset(tmp_path / "p.toml", path)))


def note_timeline(seconds: float) -> list[tuple[int, bytes]]:
    """A note every 0.5 s for 0.3 s, stepping through an octave."""
    tl = []
    for i, t in enumerate(np.arange(0.1, seconds, 0.5)):
        p = 60 + i % 12
        tl += [(int(t * SR), bytes([0x90, p, 100])), (int((t + 0.3) * SR), bytes([0x80, p, 0]))]
    return tl


NOTES = note_timeline(180.0)


@pytest.mark.slow
def test_a_three_minute_render_streams_to_disk_with_flat_memory(tmp_path):
    """Three minutes of audio (11.5 MB as float32) rendered to a WAV: the Python heap (numpy arrays
    included) never holds more than a small fraction of it."""
    session = tiny_session(tmp_path)
    n = 180 * SR
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        info = render_to_file(session, NOTES, n, tmp_path / "long.wav", block=1024)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    print(f"\n3 min render: peak Python heap growth {peak / 1e6:.2f} MB (the audio: {4 * n / 1e6:.1f} MB), "
          f"{info['rtf']:.1f}x real time")
    assert info["frames"] == n and sf.info(str(tmp_path / "long.wav")).frames == n
    assert peak < 2e6


@pytest.mark.parametrize("rate", [SR, 44100])
def test_the_streamed_file_is_the_render(tmp_path, rate):
    tl = NOTES[:8]
    a = render_timeline(tiny_session(tmp_path), tl, 2 * SR, block=1024)
    info = render_to_file(tiny_session(tmp_path), tl, 2 * SR, tmp_path / "s.wav", block=1024, out_rate=rate)
    y, sr = sf.read(str(tmp_path / "s.wav"), dtype="float32")
    assert sr == rate and len(y) == info["frames"] and abs(len(y) - 2 * rate) <= 1
    if rate == SR:
        np.testing.assert_allclose(y, a, atol=1.0 / 32767)  # 16-bit PCM
    else:
        import soxr

        ref = soxr.resample(a, SR, rate, quality="HQ")
        np.testing.assert_allclose(y[:len(ref)], ref[:len(y)], atol=2e-3)
