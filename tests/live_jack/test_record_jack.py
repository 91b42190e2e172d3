"""Recording live takes under a real JACK server: exact replay, every note logged, SIGKILL-safe."""
from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf
from jack_server import wait_for_ports
from live_rig import write_preset
from test_host_jack import LiveProcess, _run, sharp_random_model

from realtime.model.model_file import SeedBank, load_model

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def take_preset(tmp, name: str):
    model = sharp_random_model(tmp / "m.npz")
    m = load_model(model)  # add a seed bank so note-ons re-prime (the replay must reproduce that too)
    rng = np.random.default_rng(0)
    m.seedbank = SeedBank(rng.integers(0, 256, (6, 300)), [0, 0, 0, 1, 1, 1], [48, 60, 72] * 2, [100] * 6)
    m.save(model)
    return write_preset(tmp / f"{name}.toml", model, name=name, reprime="note_on", extra="""[midi.cc]
21 = "temperature"
1 = "morph"
""")


def keyboard(client_name: str):
    import jack
    import rtmidi

    kbd = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, f"{client_name}-kbd")
    kbd.open_virtual_port("out")
    c = jack.Client(f"{client_name}-patch", no_start_server=True)
    wait_for_ports(c, rf"{client_name}-midi:midi_in", is_midi=True)
    c.connect(f"{client_name}-kbd:out", f"{client_name}-midi:midi_in")
    return kbd, c


@contextmanager
def live_take(tmp_path, name: str, take, preset=None):
    """run_live.py recording ``take``, played from a JACK keyboard: yields (process, keyboard); always cleaned up."""
    proc = LiveProcess(["--preset", str(preset or take_preset(tmp_path, name)), "--virtual-midi", "--midi-api",
                        "jack", "--client-name", name, "--record", str(take), "--seconds", "60"])
    kbd = patch = None
    try:
        proc.wait_for_line("playing", timeout=120)
        proc.t_playing = time.monotonic()
        kbd, patch = keyboard(name)
        yield proc, kbd
    finally:
        if patch is not None:
            patch.close()
        proc.stop(signal.SIGKILL)
        if kbd is not None:
            kbd.close_port()


def replay_of(take, tmp_path) -> tuple[np.ndarray, dict]:
    """``wavenet-live replay`` of a session folder: (replayed audio, the command's JSON line)."""
    r = _run(["replay", str(take), "--out", str(tmp_path / "replay.wav")], timeout=300)
    assert r.returncode == 0, r.stderr
    replayed, _ = sf.read(str(tmp_path / "replay.wav"), dtype="float32")
    return replayed, json.loads(r.stdout.strip().splitlines()[-1])


def test_live_take_replays_exactly_and_logs_every_note(jack_server, tmp_path):
    take = tmp_path / "take"
    notes = [48, 55, 60, 64, 67, 72, 60, 52, 57, 62, 69, 74]
    with live_take(tmp_path, "wnl-rec", take) as (proc, kbd):
        t0 = time.monotonic()
        for k, n in enumerate(notes):
            if k == 6:
                kbd.send_message([0xC0, 1])
            kbd.send_message([0xB0, 21, (k * 11) % 128])
            kbd.send_message([0x90, n, 90 + k])
            time.sleep(0.35)
            kbd.send_message([0x80, n, 0])
            time.sleep(0.2)
        time.sleep(max(0.0, 8.0 - (time.monotonic() - t0)))
        rc = proc.stop(signal.SIGINT)
    assert rc == 0, proc.err[-10:]
    man = json.loads((take / "session.json").read_text())
    audio, rate = sf.read(str(take / "audio.wav"), dtype="float32")
    assert rate == 48000 and man["device_rate"] == 48000
    assert len(audio) == man["frames_written"] >= 8 * 48000 and man["frames_dropped"] == 0
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    assert [e["value"] for e in evs if e["param"] == "note_on"] == notes
    assert [e["value"] for e in evs if e["param"] == "note_off"] == notes
    assert any(e["param"] == "instrument" and e["value"] == 1 for e in evs)
    assert sum(e["param"] == "temperature" for e in evs) == len(notes)
    replayed, info = replay_of(take, tmp_path)
    assert len(replayed) == len(audio)
    np.testing.assert_array_equal(replayed, audio)
    assert info["matches_recording"] is True
    p = _run(["plot", str(take)], timeout=120)
    assert p.returncode == 0 and (take / "session.png").stat().st_size > 10000


def test_sigkill_loses_at_most_one_second(jack_server, tmp_path):
    take = tmp_path / "killed"
    with live_take(tmp_path, "wnl-kill", take) as (proc, kbd):
        t_play = proc.t_playing
        for n in (60, 64, 67, 72):
            kbd.send_message([0x90, n, 100])
            time.sleep(0.9)
            kbd.send_message([0x80, n, 0])
        proc.proc.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        proc.proc.wait(10)
    generated_at_least = (t_kill - t_play) * 48000  # playing started after the prefill, so more was generated
    info = sf.info(str(take / "audio.wav"))
    audio, _ = sf.read(str(take / "audio.wav"), dtype="float32")
    print(f"\nSIGKILL after {t_kill - t_play:.2f} s of playing: {info.frames / 48000:.2f} s on disk")
    assert len(audio) == info.frames >= generated_at_least - 48000
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01
    # what survived is exactly the start of the take: replay reproduces it
    replayed, _ = replay_of(take, tmp_path)
    np.testing.assert_array_equal(replayed, audio)


def test_unwritable_record_path_fails_before_sound(jack_server, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _run(["--preset", str(take_preset(tmp_path, "bad")), "--client-name", "wnl-bad", "--record",
              str(blocker / "take"), "--seconds", "5", "--quiet"], timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "file/take" in r.stderr and "Traceback" not in r.stderr
    assert "playing" not in r.stderr


def test_polyphonic_take_under_jack_replays_exactly(jack_server, tmp_path):
    take = tmp_path / "poly"
    preset = take_preset(tmp_path, "wnl-poly")
    preset.write_text(preset.read_text().replace("[sound]\n", "[sound]\nvoices = 4\n"))
    with live_take(tmp_path, "wnl-poly", take, preset) as (proc, kbd):
        for notes in ([48, 55, 64], [50, 57, 65, 72, 76]):  # a triad, then five notes on four voices
            for n in notes:
                kbd.send_message([0x90, n, 100])
            time.sleep(0.8)
            for n in notes:
                kbd.send_message([0x80, n, 0])
            time.sleep(1.0)  # >> the 0.12 s (4 x release_ms) of model time after which a released voice is free
        rc = proc.stop(signal.SIGINT)
    assert rc == 0, proc.err[-10:]
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    ons = [e for e in evs if e["param"] == "note_on"]
    offs = [e for e in evs if e["param"] == "note_off"]
    assert [e["voice"] for e in ons[:3]] == [0, 1, 2]
    # the triad's voices are free again only if the generator ran >= 0.12 s of model time between its
    # note offs and the next chord (a generator stalled by a loaded machine applies both in one go)
    sr = json.loads((take / "session.json").read_text())["model_rate"]
    gap_s = (ons[3]["sample"] - offs[2]["sample"]) / sr
    print(f"\nmodel time between the triad's note offs and the next chord: {gap_s:.3f} s (wall: 1.0 s)")
    assert gap_s >= 0.12, f"the generator ran only {gap_s:.3f} s of model time in 1.0 s of wall time"
    assert sum("stolen" in e for e in ons) == 1  # the fifth note of the second chord
    assert replay_of(take, tmp_path)[1]["matches_recording"] is True
