"""Standard MIDI files -> a timeline of (sample index, raw MIDI bytes), via mido.

Errors are one line naming the file. Bounded: files with absurd event counts
or lengths are refused instead of hanging the renderer.
"""
from __future__ import annotations

from pathlib import Path

MAX_EVENTS = 2_000_000
MAX_SECONDS = 24 * 3600.0
#: a render of a MIDI file longer than this (s) must be asked for (--seconds or --max-seconds): see check_length
LONG_SECONDS = 3600.0
#: ... and so must one whose end lies more than this (s) beyond its last event (a long silent tail)
SILENT_TAIL_SECONDS = 60.0
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


def _clock(seconds: float) -> str:
    """``seconds`` as h:mm:ss (or m:ss.s under an hour)."""
    if seconds < 3600:
        return f"{int(seconds // 60)}:{seconds % 60:04.1f}"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def check_length(path: str | Path, events: list[tuple[int, bytes]], length: float, sample_rate: int) -> None:
    """Refuse to render a MIDI file by its own length when that length is surely not meant.

    A file longer than :data:`LONG_SECONDS`, or whose end lies more than :data:`SILENT_TAIL_SECONDS`
    beyond its last event (one huge delta time: a long silence), raises a one-line :class:`MidiFileError`
    stating its length and asking for ``--seconds`` or ``--max-seconds``; the caller skips this check when
    one of them is given.
    """
    last = events[-1][0] / sample_rate if events else 0.0
    if length <= LONG_SECONDS and length - last <= SILENT_TAIL_SECONDS:
        return
    why = "over an hour" if length > LONG_SECONDS else f"{_clock(length - last)} of silence after its last event"
    raise MidiFileError(f"MIDI file {path}: {_clock(length)} long ({why}, last event at {_clock(last)}); "
                        f"give --seconds N to render N seconds of it, or --max-seconds N to render up to N")


def peak_notes(events: list[tuple[int, bytes]]) -> int:
    """The most notes the timeline holds down at once, over all channels (a note-on of a key already down
    counts once): how many voices it needs to sound as written."""
    down: set[tuple[int, int]] = set()
    peak = 0
    for _, data in events:
        if len(data) < 3 or data[0] & 0xE0 != 0x80:  # note on (0x9n) and note off (0x8n) only
            continue
        key = (data[0] & 0x0F, data[1])
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            down.add(key)
            peak = max(peak, len(down))
        else:
            down.discard(key)
    return peak
