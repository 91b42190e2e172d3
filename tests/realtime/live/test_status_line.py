"""Issue 39 item 1: the status line puts instrument, note and temperature first, has no jargon, fits 80
columns; starts say what they are doing."""
from __future__ import annotations

from realtime.live.host import HostStats
from realtime.live.status import format_status

BUSY = HostStats(seconds=1234.5, underruns=3, missing=480, pa_underflows=2, ring_ms=38.2, lead_ms=40,
                 latency_ms=61, rtf=1.7, instrument="strings", note=61, temperature=0.55, samplerate=48000,
                 midi="Arturia KeyStep 32:Arturia KeyStep 32 MIDI 1 20:0", recoveries=1, voices="3/8",
                 priority="SCHED_FIFO 3")


def test_status_line_starts_with_what_is_playing_and_fits_80_columns():
    line = format_status(BUSY, 80)
    assert line.startswith("strings C#4 T=0.55 voices 3/8 | 1234.5s | underruns 3 (10 ms)")
    assert len(line) <= 80
    assert "xrun" not in format_status(BUSY)


def test_a_warning_survives_the_fitting():
    line = format_status(HostStats(instrument="piano", note=60, temperature=0.5, samplerate=48000,
                                   warning="record x: writing stopped"), 80)
    assert line.startswith("piano C4 T=0.50 | WARNING record x: writing stopped") and len(line) <= 80


def test_start_says_loading_and_compiling_on_a_terminal(tmp_path):
    import io

    from realtime.control.presets import load_preset
    from run_live import _say_starting

    class Tty(io.StringIO):
        def isatty(self):
            return True

    preset = load_preset(None)
    tty, pipe = Tty(), io.StringIO()
    _say_starting(preset, tty)
    _say_starting(preset, pipe)
    assert tty.getvalue().startswith("wavenet-live: loading model model.npz / compiling engines...")
    assert pipe.getvalue() == ""  # a pipe's stderr stays one line on an error
