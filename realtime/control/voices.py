"""Voice allocation for polyphony: which voice plays which note. Pure logic, no audio, no engine.

Thread: whichever thread applies MIDI events (the generator thread in the live host).

Life of a voice: ``free`` -> :meth:`VoiceAllocator.note_on` -> ``held`` (gate on)
-> :meth:`VoiceAllocator.note_off` -> ``released`` (gate off, the sound decays)
-> :meth:`VoiceAllocator.update` sees its output envelope stay below
``silence_level`` for ``silence_hold`` samples (or ``max_release`` samples pass)
-> ``free`` again. A note on when no voice is free steals the oldest voice —
the oldest released voice if there is one, else the oldest held one.

The allocator only decides; the caller applies the decisions to the engine,
e.g. with :class:`realtime.engine.poly_engine.PolyEngine`::

    alloc = VoiceAllocator(max_voices=poly.n_voices)
    a = alloc.note_on(note)                 # an Allocation
    poly.active[a.voice] = True
    if not a.retrigger:                     # a fresh start (free or stolen voice)
        poly.reset(a.voice)                 # (or reprime it from the seed bank)
    poly.set_conditioning(a.voice, pitch=note, velocity=velocity)
    poly.set_note(a.voice, gate=1.0, pitch=note)
    ...
    v = alloc.note_off(note)                # not None -> poly.set_note(v, gate=0.0)
    ...
    out = poly.generate(n)
    for v in alloc.update(poly.levels, n):  # released voices that fell silent
        poly.active[v] = False
"""
from __future__ import annotations

from dataclasses import dataclass

FREE, HELD, RELEASED = "free", "held", "released"


@dataclass
class Voice:
    """One voice's allocation state."""

    index: int
    state: str = FREE
    note: int | None = None
    started: int = -1  # allocation order of the current note (higher = newer)
    released_at: int = 0  # samples since note off
    quiet_for: int = 0  # samples the envelope has been below the silence level


@dataclass(frozen=True)
class Allocation:
    """Result of a note on: the voice to use and what was there before."""

    voice: int
    was_free: bool
    stolen: int | None = None  # the note the voice was playing (held or released) when stolen
    retrigger: bool = False  # the same note was already sounding on this voice


class VoiceAllocator:
    """Note on/off -> voice indices for up to ``max_voices`` voices.

    ``silence_level``: an envelope (peak |output| of a block) below this is silence;
    ``silence_hold``: samples of silence after note off before the voice is free;
    ``max_release``: samples after note off after which the voice is freed anyway.
    A note on for a note that is already sounding reuses its voice (retrigger).
    """

    def __init__(self, max_voices: int, silence_level: float = 1e-3, silence_hold: int = 800,
                 max_release: int = 32000) -> None:
        if max_voices < 1:
            raise ValueError("max_voices must be >= 1")
        self.max_voices = int(max_voices)
        self.silence_level = float(silence_level)
        self.silence_hold = int(silence_hold)
        self.max_release = int(max_release)
        self.voices = [Voice(i) for i in range(self.max_voices)]
        self._counter = 0

    # ------------------------------------------------------------ queries
    def voice_of(self, note: int) -> int | None:
        """The voice currently sounding ``note`` (held preferred over released), or None."""
        best = None
        for v in self.voices:
            if v.note == note and v.state != FREE:
                if best is None or (v.state == HELD, v.started) > (best.state == HELD, best.started):
                    best = v
        return None if best is None else best.index

    def busy(self) -> list[int]:
        """Indices of voices that are held or released (still sounding)."""
        return [v.index for v in self.voices if v.state != FREE]

    def state(self, voice: int) -> str:
        return self.voices[voice].state

    # ------------------------------------------------------------ events
    def note_on(self, note: int) -> Allocation:
        """Allocate a voice for ``note``: its own voice if sounding, else a free one, else steal the oldest."""
        self._counter += 1
        own = self.voice_of(note)
        if own is not None:
            v = self.voices[own]
            self._start(v, note)
            return Allocation(own, was_free=False, stolen=None, retrigger=True)
        free = [v for v in self.voices if v.state == FREE]
        if free:
            v = min(free, key=lambda x: x.index)
            self._start(v, note)
            return Allocation(v.index, was_free=True)
        released = [v for v in self.voices if v.state == RELEASED]
        pool = released if released else self.voices
        v = min(pool, key=lambda x: x.started)
        stolen = v.note
        self._start(v, note)
        return Allocation(v.index, was_free=False, stolen=stolen)

    def note_off(self, note: int) -> int | None:
        """Release the held voice playing ``note``; returns its index (gate it off), or None."""
        for v in sorted(self.voices, key=lambda x: -x.started):
            if v.note == note and v.state == HELD:
                v.state = RELEASED
                v.released_at = 0
                v.quiet_for = 0
                return v.index
        return None

    def retune(self, voice: int, note: int) -> None:
        """A held voice now plays ``note`` (a legato glide: no new attack, no new allocation)."""
        self.voices[voice].note = int(note)

    def release_all(self) -> list[int]:
        """All notes off (sustain/panic): every held voice becomes released."""
        out = []
        for v in self.voices:
            if v.state == HELD:
                v.state, v.released_at, v.quiet_for = RELEASED, 0, 0
                out.append(v.index)
        return out

    def update(self, levels, n: int) -> list[int]:
        """After ``n`` samples whose per-voice envelope was ``levels[v]``: free released voices now silent.

        Returns the indices freed by this call (the caller stops computing them).
        """
        freed = []
        for v in self.voices:
            if v.state != RELEASED:
                continue
            v.released_at += n
            v.quiet_for = v.quiet_for + n if float(levels[v.index]) < self.silence_level else 0
            if v.quiet_for >= self.silence_hold or v.released_at >= self.max_release:
                v.state, v.note, v.started = FREE, None, -1
                freed.append(v.index)
        return freed

    def _start(self, v: Voice, note: int) -> None:
        v.state, v.note, v.started = HELD, int(note), self._counter
        v.released_at = v.quiet_for = 0
