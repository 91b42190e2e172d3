"""Issue 39 item 11: with no MIDI port the start line says how to get one, and ``--demo`` plays the demo
phrase live (fed in real time like a keyboard)."""
from __future__ import annotations

import time

from realtime.live.demo_midi import NO_MIDI_HINT, DemoMidi


def test_no_midi_hint_says_what_to_do():
    for word in ("keyboard", "--list-midi", "--virtual-midi", "--demo"):
        assert word in NO_MIDI_HINT


def test_demo_midi_feeds_the_phrase_in_real_time_and_stops():
    t0 = time.perf_counter_ns()
    demo = DemoMidi([2, 5], loop_s=1.0)
    try:
        time.sleep(0.3)
        first = list(demo.queue)
        assert [d for _, d in first[:2]] == [bytes([0xC0, 2]), bytes([0x90, 48, 96])]  # program, then a note
        assert all(t >= t0 for t, _ in first) and demo.received == len(first)
        assert not any(d[0] == 0x80 for _, d in first)  # the note-off comes at 0.425 s, not before
        time.sleep(0.3)
        assert any(d == bytes([0x80, 48, 0]) for _, d in demo.queue)
    finally:
        demo.close()
    n = demo.received
    time.sleep(0.6)
    assert demo.received == n  # closed: nothing more
