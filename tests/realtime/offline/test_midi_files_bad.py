"""Bad standard MIDI files: a one-line MidiFileError naming the file, or clean handling; never a hang.

Every load runs under a SIGALRM deadline, so a hang fails the test instead of
stalling the suite.
"""
from __future__ import annotations

import contextlib
import random
import signal
import struct
import time
from pathlib import Path

import mido
import numpy as np
import pytest
from wnl_testutil import run_cli, small_model, write_preset

from realtime.offline.midi_file import MidiFileError, load_events

SR = 16000


class Hang(BaseException):
    """Raised by the deadline; a BaseException so that no ``except Exception`` in the code under test eats it."""


@contextlib.contextmanager
def deadline(seconds: int):
    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def smf(*tracks: bytes, fmt: int = 1, tpb: int = 480, ntracks: int | None = None, magic: bytes = b"MThd",
        hlen: int = 6) -> bytes:
    """A standard MIDI file from raw track bodies (no checks: to build broken files)."""
    b = magic + struct.pack(">L", hlen) + struct.pack(">hhh", fmt, len(tracks) if ntracks is None else ntracks, tpb)
    for t in tracks:
        b += b"MTrk" + struct.pack(">L", len(t)) + t
    return b


EOT = b"\x00\xff\x2f\x00"
NOTE = b"\x00\x90\x3c\x64" + vlq(480) + b"\x80\x3c\x00"        # C4 for one beat (0.5 s at 120 bpm)
NOTE_EVENTS = [(0, b"\x90\x3c\x64"), (SR // 2, b"\x80\x3c\x00")]
GOOD = smf(b"\x00\xff\x51\x03\x07\xa1\x20" + NOTE + EOT,          # tempo 500000, then the note
           b"\x00\xc0\x05" + vlq(240) + b"\xb0\x07\x64" + b"\x00\xf0\x03\x01\x02\xf7" + vlq(240) + b"\xe0\x00\x40" + EOT)
GOOD_EVENTS = sorted(NOTE_EVENTS + [(0, b"\xc0\x05"), (SR // 4, b"\xb0\x07\x64"), (SR // 2, b"\xe0\x00\x40")],
                     key=lambda e: e[0])


def load(path: Path):
    with deadline(10):
        return load_events(path, SR)


def assert_midi_error(path: Path, reason: str) -> str:
    with pytest.raises(MidiFileError) as e:
        load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.count(str(path)) == 1 and reason in msg, msg
    return msg


def test_the_good_file_loads_exactly(tmp_path):
    path = tmp_path / "good.mid"
    path.write_bytes(GOOD)
    events, length = load(path)
    assert sorted(events) == sorted(GOOD_EVENTS) and [e[0] for e in events] == sorted(e[0] for e in events)
    assert length == pytest.approx(0.5)


BAD = {
    # name: (bytes, reason in the message)
    "empty": (b"", "unexpected end of file"),
    "not-mthd": (b"RIFF" + GOOD[4:], "MThd not found"),
    "text": (b"hello, this is not a MIDI file at all\n" * 3, "MThd not found"),
    "header-length-short": (smf(NOTE + EOT, hlen=2), "unexpected end of file"),
    "header-length-huge": (smf(NOTE + EOT, hlen=100), "unexpected end of file"),
    "header-only-half": (GOOD[:10], "unexpected end of file"),
    "track-length-short": (GOOD[:18] + struct.pack(">L", 3) + GOOD[22:], "unexpected end of file"),
    "track-length-huge": (smf(NOTE + EOT)[:18] + struct.pack(">L", 0xFFFFFFFF) + smf(NOTE + EOT)[22:],
                          "unexpected end of file"),
    "not-mtrk": (smf(NOTE + EOT)[:14] + b"XTrk" + smf(NOTE + EOT)[18:], "no MTrk header"),
    "truncated-in-track": (GOOD[:-7], "unexpected end of file"),
    "missing-track": (smf(NOTE + EOT, ntracks=2), "unexpected end of file"),
    "zero-tempo": (smf(b"\x00\xff\x51\x03\x00\x00\x00" + NOTE + EOT), "set_tempo 0"),
    "short-tempo-meta": (smf(b"\x00\xff\x51\x00" + NOTE + EOT), "IndexError"),
    "bad-key-signature": (smf(b"\x00\xff\x59\x02\x20\x05" + NOTE + EOT), "KeySignatureError"),
    "bad-smpte-offset": (smf(b"\x00\xff\x54\x05\xe0\x00\x00\x00\x00" + NOTE + EOT), "KeyError"),
    "undefined-status": (smf(b"\x00\xf4\x00" + EOT), "undefined status byte 0xf4"),
    "running-status-first": (smf(b"\x00\x3c\x64" + EOT), "running status"),
    "huge-delta-time": (smf(vlq(0x0FFFFFFF) + b"\x90\x3c\x64" + EOT), "longer than 24 h"),
    "overlong-delta": (smf(b"\xff" * 200_000 + b"\x7f\x90\x3c\x64" + EOT), "longer than 4 bytes"),
    "overlong-meta-length": (smf(b"\x00\xff\x01" + b"\x80" * 100_000 + b"\x00" + EOT), "longer than 4 bytes"),
    "type-2": (smf(NOTE + EOT, fmt=2), "type 2"),
    "type-7": (smf(NOTE + EOT, fmt=7), "format type 7"),
    "smpte-division": (smf(NOTE + EOT, tpb=-(25 << 8) + 40), "ticks per beat"),
    "zero-division": (smf(NOTE + EOT, tpb=0), "ticks per beat 0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_gives_one_line_error_naming_it(tmp_path, case):
    data, reason = BAD[case]
    path = tmp_path / f"{case}.mid"
    path.write_bytes(data)
    t0 = time.perf_counter()
    assert_midi_error(path, reason)
    assert time.perf_counter() - t0 < 5


def test_missing_file_and_directory(tmp_path):
    assert_midi_error(tmp_path / "nope.mid", "not found")
    (tmp_path / "dir.mid").mkdir()
    assert_midi_error(tmp_path / "dir.mid", "is a directory")


def test_unreadable_file(tmp_path):
    import os

    path = tmp_path / "locked.mid"
    path.write_bytes(GOOD)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anyway
            pytest.skip("running as root: permissions do not apply")
        assert_midi_error(path, "PermissionError")
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------- handled cleanly
def test_track_without_end_of_track(tmp_path):
    path = tmp_path / "no-eot.mid"
    path.write_bytes(smf(NOTE))
    assert load(path) == (NOTE_EVENTS, pytest.approx(0.5))


def test_no_tracks_is_an_empty_timeline(tmp_path):
    path = tmp_path / "no-tracks.mid"
    path.write_bytes(smf(ntracks=0))
    assert load(path) == ([], 0.0)


def test_long_delta_under_the_limit_loads(tmp_path):
    path = tmp_path / "long.mid"  # 0x0FFFFFFF ticks at 960 ticks/s: 77.7 h at 120 bpm; tempo x1/4 -> 19.4 h
    path.write_bytes(smf(b"\x00\xff\x51\x03" + (125000).to_bytes(3, "big") + NOTE + vlq(0x0FFFFFFF - 480)
                         + b"\x90\x40\x64" + EOT))
    events, length = load(path)
    assert length == pytest.approx(0x0FFFFFFF / 480 * 0.125)
    assert events[:2] == [(0, b"\x90\x3c\x64"), (SR // 8, b"\x80\x3c\x00")]
    assert events[2] == (int(round(length * SR)), b"\x90\x40\x64")


def test_tiny_tempo_is_not_zero(tmp_path):
    path = tmp_path / "fast.mid"  # 1 us per beat: legal, everything within microseconds
    path.write_bytes(smf(b"\x00\xff\x51\x03\x00\x00\x01" + NOTE + EOT))
    events, length = load(path)
    assert [e[1] for e in events] == [e[1] for e in NOTE_EVENTS] and length == pytest.approx(1e-6)


def test_every_truncation_of_a_good_file(tmp_path):
    path = tmp_path / "cut.mid"
    for n in range(len(GOOD)):
        path.write_bytes(GOOD[:n])
        try:
            events, _ = load(path)
        except MidiFileError as e:
            assert "\n" not in str(e) and str(path) in str(e)
        else:  # only a cut at a message boundary that mido accepts: a subset of the good events
            assert set(events) <= set(GOOD_EVENTS), n


def test_random_corruptions_never_escape(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "mutant.mid"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        data = bytearray(GOOD)
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(3)
            i = rng.randrange(len(data))
            if op == 0:
                data[i] = rng.randrange(256)
            elif op == 1:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                del data[i:i + rng.randint(1, 8)]
        path.write_bytes(bytes(data))
        try:
            events, length = load(path)
        except MidiFileError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            outcomes["error"] += 1
        else:
            assert all(isinstance(s, int) and s >= 0 and isinstance(b, bytes) and b for s, b in events)
            assert 0 <= length <= 24 * 3600
            outcomes["ok"] += 1
    assert outcomes["ok"] > 10 and outcomes["error"] > 10, outcomes


# ----------------------------------------------------------------- thousands of events per tick
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from realtime.model.model_file import SeedBank

    m = small_model(seed=2)
    rng = np.random.default_rng(0)
    m.seedbank = SeedBank(rng.integers(0, 256, (6, 300)), np.arange(6) % 3, 40 + 10 * np.arange(6), np.full(6, 90))
    m.save(tmp_path_factory.mktemp("model") / "m.npz")
    return m


def test_thousands_of_events_at_one_tick_load_and_render_in_bounded_time(tmp_path, model):
    from realtime.control.presets import load_preset
    from realtime.offline.render import Session, render_timeline

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.Message("note_on", note=30, velocity=90, time=480))   # held through the burst
    for i in range(5000):
        tr.append(mido.Message("note_on", note=40 + i % 60, velocity=1 + i % 127, time=0))
        tr.append(mido.Message("note_off", note=40 + i % 60, velocity=0, time=0))
    tr.append(mido.Message("note_off", note=30, velocity=0, time=480))
    path = tmp_path / "burst.mid"
    mid.save(path)

    t0 = time.perf_counter()
    events, length = load(path)
    assert time.perf_counter() - t0 < 10
    assert len(events) == 10_002 and length == pytest.approx(1.0)
    assert all(s == SR // 2 for s, _ in events[:-1]) and events[-1][0] == SR

    session = Session.open(load_preset(write_preset(tmp_path / "p.toml", model.path)), model)
    t0 = time.perf_counter()
    with deadline(20):
        audio = render_timeline(session, events, int(1.2 * SR))
    assert time.perf_counter() - t0 < 10
    assert len(audio) == int(1.2 * SR) and np.isfinite(audio).all()
    assert len(session.events) == 10_002 and {e["sample"] for e in session.events} == {SR // 2, SR}
    assert session.controller.state.held == [] and session.controller.state.note is None


def test_a_burst_of_reprimes_at_one_tick_is_bounded(tmp_path, model):
    """Non-legato note-ons re-prime the engine (the costly path): 300 of them at one tick."""
    from realtime.control.presets import load_preset
    from realtime.offline.render import Session, render_timeline

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    for i in range(300):
        tr.append(mido.Message("note_on", note=40 + i % 60, velocity=100, time=240 if i == 0 else 0))
        tr.append(mido.Message("note_off", note=40 + i % 60, velocity=0, time=0))
    path = tmp_path / "reprimes.mid"
    mid.save(path)
    events, length = load(path)
    assert len(events) == 600 and length == pytest.approx(0.25) and {s for s, _ in events} == {SR // 4}
    preset = tmp_path / "p.toml"
    preset.write_text(f'[model]\npath = "{model.path}"\nreprime = "note_on"\n')
    session = Session.open(load_preset(preset), model)
    t0 = time.perf_counter()
    with deadline(20):
        audio = render_timeline(session, events, SR // 2)
    assert time.perf_counter() - t0 < 10
    assert session.controller.state.reprimes == 300 and np.isfinite(audio).all()


# ----------------------------------------------------------------- the command line
@pytest.mark.parametrize("case,reason", [("bad-key-signature", "KeySignatureError"),
                                         ("overlong-delta", "longer than 4 bytes"),
                                         ("directory", "is a directory")])
def test_cli_render_with_bad_midi_exits_2_with_one_line(tmp_path, model, case, reason):
    bad = tmp_path / f"{case}.mid"
    if case == "directory":
        bad.mkdir()
    else:
        bad.write_bytes(BAD[case][0])
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--midi", str(bad), "--model", str(model.path),
                  timeout=120)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(bad) in err and reason in err, err
    assert not (tmp_path / "x.wav").exists()
