"""Standard MIDI files -> a timeline of (sample index, raw MIDI bytes), via mido.

Errors are one line naming the file. Bounded: files with absurd event counts
or lengths are refused instead of hanging the renderer.
"""
from __future__ import annotations

from pathlib import Path

MAX_EVENTS = 2_000_000
MAX_SECONDS = 24 * 3600.0
#: the SMF spec's limit for variable-length numbers (delta times, chunk lengths): 0x0FFFFFFF
MAX_VLQ_BYTES = 4


class MidiFileError(ValueError):
    """A MIDI file is missing or cannot be used."""


def _read_vlq_strict(infile) -> int:
    """mido's ``read_variable_int``, refusing numbers longer than the spec's 4 bytes.

    mido accepts any length; a long run of bytes >= 0x80 then builds a huge
    int in quadratic time (a hang) and overflows float time conversion.
    """
    n = 0
    for _ in range(MAX_VLQ_BYTES):
        b = infile.read(1)
        if b == b"":
            raise EOFError("unexpected end of file")
        n = (n << 7) | (b[0] & 0x7F)
        if b[0] < 0x80:
            return n
    raise OSError(f"variable-length number longer than {MAX_VLQ_BYTES} bytes")


def _strict_mido():
    import mido
    import mido.midifiles.midifiles as mf

    mf.read_variable_int = _read_vlq_strict  # module global, looked up by read_track/read_sysex/read_meta
    return mido


def _why(e: BaseException) -> str:
    text = str(e) or ("unexpected end of file" if isinstance(e, EOFError) else "")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_events(path: str | Path, sample_rate: int) -> tuple[list[tuple[int, bytes]], float]:
    """Read a MIDI file; return ([(sample index, message bytes)] sorted by time, length in seconds).

    Channel messages only (notes, program, control, pitch bend, pressure);
    meta and SysEx messages are skipped. Tempo changes are honoured (mido).
    """
    mido = _strict_mido()

    path = Path(path)
    if path.is_dir():
        raise MidiFileError(f"MIDI file {path}: is a directory")
    if not path.is_file():
        raise MidiFileError(f"MIDI file {path}: not found")
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except Exception as e:  # mido raises many types on bad data (OSError, EOFError, KeySignatureError, ...)
        raise MidiFileError(f"MIDI file {path}: unreadable ({_why(e)})") from None
    if mid.type == 2:
        raise MidiFileError(f"MIDI file {path}: type 2 (asynchronous) files are not supported")
    if mid.type not in (0, 1):
        raise MidiFileError(f"MIDI file {path}: bad header (format type {mid.type})")
    if mid.ticks_per_beat <= 0:
        raise MidiFileError(f"MIDI file {path}: bad header (ticks per beat {mid.ticks_per_beat})")
    events: list[tuple[int, bytes]] = []
    t = 0.0
    try:
        for msg in mid:  # merged tracks, delta times in seconds
            t += msg.time
            if t > MAX_SECONDS:
                raise MidiFileError(f"MIDI file {path}: longer than {MAX_SECONDS / 3600:.0f} h")
            if msg.is_meta:
                if msg.type == "set_tempo" and msg.tempo <= 0:
                    raise MidiFileError(f"MIDI file {path}: set_tempo {msg.tempo} at {t:.3f} s (must be > 0)")
                continue
            if msg.type == "sysex":
                continue
            events.append((int(round(t * sample_rate)), bytes(msg.bytes())))
            if len(events) > MAX_EVENTS:
                raise MidiFileError(f"MIDI file {path}: more than {MAX_EVENTS:,} events")
    except MidiFileError:
        raise
    except Exception as e:
        raise MidiFileError(f"MIDI file {path}: unreadable ({_why(e)})") from None
    events.sort(key=lambda e: e[0])
    return events, t
