"""Issue 40, the audio input's modes on the shipped model (models/default/model.npz, which plays in tune):

* prime: a note-on primes the network from the input's last 128 ms, and the note goes on from it: over its first
  100 ms (after the 5 ms crossfade) its f0 is the tone's within 50 cents and its level the tone's within 4 dB; a
  louder tone gives a louder start (the level follows the input, not the seed bank); an input below gate_db primes
  from the seed bank as before;
* continue: the footswitch (a CC bound to input_capture) captures the input while held; at release the network
  goes on from the capture, at its f0, with no key held, until the next note;
* through: the input is mixed into the output at [input] level_db (and input_level's CC), before the limiter;
* input_mode's CC switches modes.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from wnl_testutil import ROOT

from realtime.control.presets import load_preset, override
from realtime.offline.render import Session, render_timeline
from realtime.sound.audio_input import FileFeed, estimate_f0, rms_db

SR = 16000
MODEL = ROOT / "models/default/model.npz"


def tone(hz: float, seconds: float, amp: float) -> np.ndarray:
    """A harmonic tone (six partials falling 4.4 dB each) at ``hz``, peak ``amp``."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(0.6 ** (k - 1) * np.sin(2 * np.pi * hz * k * t) for k in range(1, 7))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def session(mode: str = "prime", cc: dict[int, str] | None = None, **inp) -> Session:
    p = override(load_preset(), "sound", gain_db=0.0, velocity_to_level=0.0)
    p = override(p, "model", path=str(MODEL))
    p = replace(p, input=replace(p.input, mode=mode, **inp))
    if cc:
        p.midi.cc.update(cc)
    return Session.open(p)


def cents(f: float | None, hz: float) -> float:
    return float("inf") if f is None else 1200 * np.log2(f / hz)


@pytest.mark.parametrize("hz, note", [(220.0, 57), (261.63, 60)])
def test_prime_mode_a_note_goes_on_from_the_input(hz, note):
    s = session("prime")
    x = tone(hz, 2.0, 0.1)
    s.attach_input(FileFeed(x))
    on = int(0.5 * SR)
    y = render_timeline(s, [(on, bytes([0x90, note, 100]))], int(1.0 * SR), 256)
    assert [e.get("prime") for e in s.events if e["param"] == "note_on"] == ["input"]
    assert s.input.prime_s > 0
    first = y[on + 80:on + 80 + 1600]  # after the 5 ms crossfade, 100 ms
    f0, level, want = estimate_f0(first, SR), rms_db(first), rms_db(x[on - 1600:on])
    print(f"\n{hz} Hz: first 100 ms f0 {f0:.1f} Hz ({cents(f0, hz):+.1f} cents), level {level:.1f} dBFS "
          f"(input {want:.1f}); prime pass {1000 * s.input.prime_s:.1f} ms")
    assert abs(cents(f0, hz)) < 50
    assert abs(level - want) < 4.0


def start_level(amp: float) -> float:
    s = session("prime")
    s.attach_input(FileFeed(tone(220.0, 2.0, amp)))
    on = int(0.5 * SR)
    y = render_timeline(s, [(on, bytes([0x90, 57, 100]))], int(0.7 * SR), 256)
    return rms_db(y[on + 80:on + 80 + 320])  # the first 20 ms after the crossfade


def test_prime_mode_the_start_follows_the_input_level():
    loud, soft = start_level(0.5), start_level(0.05)
    print(f"\nfirst 20 ms: input peak 0.5 -> {loud:.1f} dBFS, 0.05 -> {soft:.1f} dBFS (20 dB apart)")
    assert 14 < loud - soft < 26


def test_prime_mode_a_silent_input_primes_from_the_seed_bank():
    s = session("prime")
    s.attach_input(FileFeed(np.zeros(SR, np.float32)))
    y = render_timeline(s, [(4000, bytes([0x90, 57, 100]))], 8000, 256)
    assert [e.get("prime") for e in s.events if e["param"] == "note_on"] == [None]
    assert s.controller.state.reprimes == 1 and rms_db(y[4080:5680]) > -40  # the seed bank's note sounds


def test_continue_mode_the_network_goes_on_from_a_capture_at_its_pitch():
    s = session("continue", cc={64: "input_capture", 30: "input_mode"})
    hz = 196.0  # G3 (55), no key played
    x = np.concatenate([np.zeros(SR // 2, np.float32), tone(hz, 0.5, 0.1), np.zeros(2 * SR, np.float32)])
    s.attach_input(FileFeed(x))
    press, release, note = int(0.6 * SR), int(0.95 * SR), int(1.6 * SR)
    tl = [(press, bytes([0xB0, 64, 127])), (release, bytes([0xB0, 64, 0])), (note, bytes([0x90, 60, 100]))]
    y = render_timeline(s, tl, int(2.0 * SR), 256)
    cap = [e for e in s.events if e["param"] == "input_capture"]
    assert [e["value"] for e in cap] == [1, 0] and abs(cap[1]["continued"] - 55.0) < 0.3, cap
    after = y[release + 80:release + 80 + 1600]
    later = y[release + SR // 2:release + SR // 2 + 1600]  # the input is silent by now: the network alone
    f0 = estimate_f0(after, SR)
    print(f"\ncontinue: captured {cap[1]['continued']:.2f} (MIDI), first 100 ms f0 {f0:.1f} Hz "
          f"({cents(f0, hz):+.1f} cents), level {rms_db(after):.1f} dBFS, 0.5 s on {rms_db(later):.1f} dBFS")
    assert abs(cents(f0, hz)) < 50
    assert rms_db(later) > -45  # free-running: still sounding with no key held
    assert s.controller.state.note == 60 and rms_db(y[note + 800:note + 2400]) > -45  # the next note takes over
    assert [e["legato"] for e in s.events if e["param"] == "note_on"] == [False]


def test_through_mode_mixes_the_input_at_its_level():
    s = session("through", cc={31: "input_level"}, level_db=-6.0)
    x = tone(330.0, 1.0, 0.5)
    s.attach_input(FileFeed(x))
    half = SR // 2
    y = render_timeline(s, [(half, bytes([0xB0, 31, 64]))], SR, 256)  # no note: the output is the input alone
    lvl = [e["value"] for e in s.events if e["param"] == "input_level"]
    assert lvl == [pytest.approx(-60 + 66 * 64 / 127, abs=1e-3)]
    np.testing.assert_allclose(y[:half], x[:half] * 10 ** (-6 / 20), atol=1e-6)
    np.testing.assert_allclose(y[half:], x[half:SR] * 10 ** (lvl[0] / 20), atol=1e-6)


def test_input_mode_cc_switches_modes():
    s = session("prime", cc={30: "input_mode"})
    s.attach_input(FileFeed(tone(330.0, 1.0, 0.5)))
    tl = [(1000, bytes([0xB0, 30, 127])), (2000, bytes([0xB0, 30, 0])), (3000, bytes([0xB0, 30, 70]))]
    y = render_timeline(s, tl, 4000, 256)
    assert [e["value"] for e in s.events if e["param"] == "input_mode"] == ["through", "off", "continue"]
    assert np.all(y[:1000] == 0) and rms_db(y[1000:2000]) > -20 and np.all(y[2000:] == 0)
    assert s.input.describe() == "in -6 dB continue"


def test_polyphony_mixes_through_and_its_notes_prime_from_the_seed_bank():
    p = override(load_preset(), "sound", gain_db=0.0, velocity_to_level=0.0, voices=2)
    p = replace(p, input=replace(p.input, mode="through", level_db=-6.0))
    p.midi.cc.update({64: "input_capture", 30: "input_mode"})
    s = Session.open(p)
    x = tone(330.0, 1.0, 0.5)
    s.attach_input(FileFeed(x))
    tl = [(4000, bytes([0xB0, 30, 40])), (4000, bytes([0x90, 57, 100])),  # prime mode: one voice only
          (6000, bytes([0xB0, 30, 70])), (6000, bytes([0xB0, 64, 127])), (7000, bytes([0xB0, 64, 0]))]
    y = render_timeline(s, tl, 8000, 256)
    np.testing.assert_allclose(y[:4000], x[:4000] * 10 ** (-6 / 20), atol=1e-6)
    assert [e.get("prime") for e in s.events if e["param"] == "note_on"] == [None]
    assert [e["value"] for e in s.events if e["param"] == "input_capture"] == [1, 0]  # logged, nothing captured
    assert s.input.capture_from is None and not s.controller._continuing
