"""A built-in demo phrase (used when render/play get no MIDI input)."""
from __future__ import annotations

from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac")


def demo_path(record: str | None = None) -> Path:
    """Where ``play`` with no audio device writes its demo: ``record`` if it names a .wav/.flac file (the
    user's choice), else a new file ``wavenet-live-demo-XXXX.wav`` in the temp folder that no other process
    has (created empty here, so two demos at once never share a file)."""
    import tempfile

    if record and Path(record).suffix.lower() in AUDIO_SUFFIXES:
        return Path(record)
    import os

    fd, name = tempfile.mkstemp(prefix="wavenet-live-demo-", suffix=".wav")
    os.close(fd)
    return Path(name)


def demo_programs(programs: dict[int, str], instruments) -> list[int]:
    """One program per instrument, in the model's order: the lowest program number the preset's program map
    (the controller's, ``{}`` for none) gives to it from the instrument's own General MIDI family (73 for a
    flute, not 64, a reed that plays flute), else the lowest of any; with no map, 0..N-1."""
    from realtime.control.gm import substitution

    if not programs:
        return list(range(len(instruments)))
    first: dict[str, int] = {}
    for own in (True, False):
        for prog in sorted(programs):
            name = programs[prog]
            if not own or substitution(prog, name, instruments) is None:
                first.setdefault(name, prog)
    return [first[name] for name in instruments if name in first]


def demo_events(sample_rate: int, seconds: float, programs: list[int],
                step_s: float = 0.5) -> list[tuple[int, bytes]]:
    """A slow C-minor arpeggio that moves to the next program every 4 notes; (sample, bytes) events."""
    pattern = [48, 55, 60, 63, 62, 58, 55, 51]
    events: list[tuple[int, bytes]] = []
    t, k = 0.0, 0
    while t + step_s * 0.9 <= seconds:
        if k % 4 == 0 and programs:
            events.append((int(t * sample_rate), bytes([0xC0, programs[(k // 4) % len(programs)]])))
        note = pattern[k % len(pattern)]
        events.append((int(t * sample_rate), bytes([0x90, note, 96])))
        events.append((int((t + step_s * 0.85) * sample_rate), bytes([0x80, note, 0])))
        t += step_s
        k += 1
    return sorted(events, key=lambda e: e[0])
