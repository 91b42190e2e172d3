"""Standard MIDI files -> a timeline of (sample index, raw MIDI bytes), via mido.

Errors are one line naming the file. Bounded: files with absurd event counts
or lengths are refused instead of hanging the renderer.
"""
from __future__ import annotations

from pathlib import Path

MAX_EVENTS = 2_000_000
MAX_SECONDS = 24 * 3600.0


class MidiFileError(ValueError):
    """A MIDI file is missing or cannot be used."""


def load_events(path: str | Path, sample_rate: int) -> tuple[list[tuple[int, bytes]], float]:
    """Read a MIDI file; return ([(sample index, message bytes)] sorted by time, length in seconds).

    Channel messages only (notes, program, control, pitch bend, pressure);
    meta and SysEx messages are skipped. Tempo changes are honoured (mido).
    """
    import mido

    path = Path(path)
    if not path.is_file():
        raise MidiFileError(f"MIDI file {path}: not found")
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise MidiFileError(f"MIDI file {path}: unreadable ({type(e).__name__}: {e})") from None
    if mid.type == 2:
        raise MidiFileError(f"MIDI file {path}: type 2 (asynchronous) files are not supported")
    if mid.ticks_per_beat <= 0:
        raise MidiFileError(f"MIDI file {path}: bad header (ticks per beat {mid.ticks_per_beat})")
    events: list[tuple[int, bytes]] = []
    t = 0.0
    try:
        for msg in mid:  # merged tracks, delta times in seconds
            t += msg.time
            if t > MAX_SECONDS:
                raise MidiFileError(f"MIDI file {path}: longer than {MAX_SECONDS / 3600:.0f} h")
            if msg.is_meta or msg.type == "sysex":
                continue
            events.append((int(round(t * sample_rate)), bytes(msg.bytes())))
            if len(events) > MAX_EVENTS:
                raise MidiFileError(f"MIDI file {path}: more than {MAX_EVENTS:,} events")
    except (ValueError, KeyError, IndexError, ZeroDivisionError) as e:
        raise MidiFileError(f"MIDI file {path}: unreadable ({type(e).__name__}: {e})") from None
    events.sort(key=lambda e: e[0])
    return events, t
