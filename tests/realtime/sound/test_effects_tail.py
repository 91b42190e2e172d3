"""A reverb's tail rings out after note-off and after stop (Session.stop: silence into the chain until its
output is below -90 dBFS), offline as live; without effects a stop ends the stream at once."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import small_model, write_preset

from realtime.control.presets import load_preset
from realtime.offline.render import Session, run_stream, tail_room
from realtime.sound.effects import TAIL_DB, TAIL_MAX_S

SR = 16000
NOTE_ON, NOTE_OFF, STOP = int(0.1 * SR), int(0.6 * SR), int(1.2 * SR)
TIMELINE = [(NOTE_ON, bytes([0x90, 60, 110])), (NOTE_OFF, bytes([0x80, 60, 0]))]


def db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def session(tmp_path, effects: str) -> Session:
    model = small_model().save(tmp_path / "m.npz")
    p = write_preset(tmp_path / "p.toml", model, f"[sound]\nrelease_ms = 20.0\n{effects}")
    return Session.open(load_preset(p), small_model())


@pytest.mark.parametrize("effects, rings_s", [
    ('[[effects]]\ntype = "Reverb"\nroom_size = 0.9\nwet_level = 0.5\n', 1.0),
    ('[[effects]]\ntype = "Delay"\ndelay_seconds = 0.3\nfeedback = 0.6\nmix = 0.5\n', 1.0),
    ('[[effects]]\ntype = "Reverb"\nroom_size = 0.5\n[[effects]]\ntype = "Gain"\ngain_db = -12\n', 0.2),
])
def test_tail_rings_after_note_off_and_after_stop_then_decays(tmp_path, effects, rings_s):
    dry = run_stream(session(tmp_path / "dry", ""), TIMELINE, STOP, 256, stop_at=STOP)
    s = session(tmp_path, effects)
    wet = run_stream(s, TIMELINE, STOP + int(TAIL_MAX_S * SR), 256, stop_at=STOP)
    assert len(dry) == STOP  # no effects: the stop ends the stream there
    held = db(dry[NOTE_ON:NOTE_OFF])
    after_off = slice(NOTE_OFF + int(0.2 * SR), NOTE_OFF + int(0.5 * SR))  # 10 release times after note-off
    print(f"\nheld {held:.1f} dB; 0.2-0.5 s after note-off: dry {db(dry[after_off]):.1f} dB, "
          f"wet {db(wet[after_off]):.1f} dB; tail after stop {(len(wet) - STOP) / SR:.2f} s")
    assert db(dry[after_off]) < held - 60  # the dry note is gone ...
    assert db(wet[after_off]) > held - 40  # ... its reverb or echo still sounds
    tail = wet[STOP:]
    assert s.stopped and not s.ringing
    assert rings_s * SR <= len(tail) < TAIL_MAX_S * SR  # rang out after the stop, and ended by decaying
    assert db(tail[:int(0.1 * SR)]) > held - 60
    assert 20 * np.log10(np.abs(tail[-256:]).max() + 1e-30) < TAIL_DB  # the last block is below -90 dBFS
    quarter = [db(q) for q in np.array_split(tail, 4)]
    assert quarter == sorted(quarter, reverse=True)  # and it decays
    stops = [e for e in s.events if e["param"] == "stop"]
    assert [e["sample"] for e in stops] == [STOP]  # logged where it happened, for a replay


def test_render_adds_room_for_the_tail_only_with_effects(tmp_path):
    s = session(tmp_path, '[[effects]]\ntype = "Reverb"\n')
    assert tail_room(s, 1000) == (1000 + int(TAIL_MAX_S * SR) + 1, 1000)
    assert tail_room(session(tmp_path / "dry", ""), 1000) == (1000, None)


def test_an_endless_echo_stops_at_the_maximum_tail(tmp_path):
    s = session(tmp_path, '[[effects]]\ntype = "Delay"\ndelay_seconds = 0.25\nfeedback = 1.0\nmix = 0.5\n')
    out = run_stream(s, TIMELINE, STOP + int(2 * TAIL_MAX_S * SR), 1000, stop_at=STOP)
    assert len(out) == STOP + int(TAIL_MAX_S * SR) and db(out[-SR:]) > db(out[NOTE_ON:NOTE_OFF]) - 20
