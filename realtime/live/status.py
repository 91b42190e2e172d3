"""The one-line live status (main thread only, never the audio callback).

On a terminal it is a ``rich.live.Live`` line redrawn ~4x/s; otherwise (a
pipe, a log) a plain line is printed every ``plain_every`` seconds. Quiet
mode shows nothing.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from realtime.live.host import HostStats

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(note: int | None) -> str:
    """MIDI note number -> name (60 -> C4); '-' for none."""
    return "-" if note is None else f"{NOTE_NAMES[note % 12]}{note // 12 - 1}"


def format_status(st: HostStats) -> str:
    """One line: time, engine speed, ring fill, underruns, latency, instrument/pitch/temperature, MIDI, and the
    generator thread's scheduling (``prio SCHED_FIFO 3``, ``prio nice -10`` or ``prio normal``)."""
    xruns = f"underruns {st.underruns}" + (f" ({1000.0 * st.missing / st.samplerate:.0f} ms)" if st.missing else "")
    if st.pa_underflows:
        xruns += f" +{st.pa_underflows} xrun flags"
    temp = "-" if st.temperature is None else f"{st.temperature:.2f}"
    parts = [
        f"{st.seconds:6.1f}s",
        f"RTF {st.rtf:4.1f}x",
        f"ring {st.ring_ms:5.1f}/{st.lead_ms:.0f} ms",
        xruns,
        f"latency ~{st.latency_ms:.0f} ms",
        f"{st.instrument or '-'} {note_name(st.note)} T={temp}" + (f" voices {st.voices}" if st.voices else ""),
        f"MIDI {st.midi or 'none'}",
    ]
    if st.priority:
        parts.append(f"prio {st.priority}")
    if st.recoveries:
        parts.append(f"recoveries {st.recoveries}")
    if st.warning:
        parts.append(f"WARNING {st.warning}")
    if st.error:
        parts.append(f"ERROR {st.error}")
    return " | ".join(parts)


class StatusLine:
    """Shows :class:`HostStats` as one refreshed line. Use as a context manager; call :meth:`update`."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, plain_every: float = 1.0) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.plain_every = plain_every
        self._live = None
        self._last_plain = 0.0

    def __enter__(self) -> "StatusLine":
        if not self.quiet and self.stream.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._live = Live(Text(""), console=Console(file=self.stream), auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def update(self, st: HostStats) -> None:
        if self.quiet:
            return
        line = format_status(st)
        if self._live is not None:
            self._live.update(self._text(line, no_wrap=True, overflow="ellipsis"), refresh=True)
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_every:
            self._last_plain = now
            print(line, file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
