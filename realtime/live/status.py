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


def format_status(st: HostStats, width: int | None = None) -> str:
    """One line, most useful first: instrument, note, temperature (and voices); any warning or error; time;
    the audio input (``in -18 dB prime``); the model (``model default``); the effect chain (``fx Reverb>Delay``);
    underruns; latency; MIDI port; watchdog recoveries; engine speed
    (RTF); ring fill; the generator thread's scheduling (``prio SCHED_FIFO 3``, ``prio nice -10`` or ``prio normal``).

    With ``width`` (terminal columns, e.g. 80) the parts after the time are dropped from the end until the
    line fits, and the line is cut to ``width`` characters at most.
    """
    temp = "-" if st.temperature is None else f"{st.temperature:.2f}"
    head = [f"{st.instrument or '-'} {note_name(st.note)} T={temp}" + (f" voices {st.voices}" if st.voices else "")]
    if st.warning:
        head.append(f"WARNING {st.warning}")
    if st.error:
        head.append(f"ERROR {st.error}")
    head.append(f"{st.seconds:.1f}s")
    tail = [st.input] if st.input else []  # the audio input's level and mode, "in -18 dB prime"
    tail += [f"model {st.model}"] if st.model else []  # the model playing (a hot-swap changes it)
    tail += [st.effects] if st.effects else []  # the effect chain, "fx Reverb>Delay"
    tail += [f"underruns {st.underruns}" + (f" ({1000.0 * st.missing / st.samplerate:.0f} ms)" if st.missing else ""),
            f"latency ~{st.latency_ms:.0f} ms", f"MIDI {st.midi or 'none'}"]
    if st.recoveries:
        tail.append(f"recoveries {st.recoveries}")
    tail += [f"RTF {st.rtf:.1f}x", f"ring {st.ring_ms:.0f}/{st.lead_ms:.0f} ms"]
    if st.priority:
        tail.append(f"prio {st.priority}")
    line = " | ".join(head + tail)
    while width is not None and len(line) > width and tail:
        tail.pop()
        line = " | ".join(head + tail)
    return line if width is None or len(line) <= width else line[:width - 1] + "…"


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
        if self._live is not None:
            import shutil

            line = format_status(st, shutil.get_terminal_size((80, 24)).columns - 1)
            self._live.update(self._text(line, no_wrap=True, overflow="ellipsis"), refresh=True)
            return
        line = format_status(st)
        now = time.monotonic()
        if now - self._last_plain >= self.plain_every:
            self._last_plain = now
            print(line, file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
