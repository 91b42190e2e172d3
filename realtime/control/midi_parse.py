"""A streaming MIDI byte parser: running status, SysEx, interleaved realtime bytes.

Pure Python, thread: generator. Never raises on bad input: garbage is
dropped and counted, valid messages around it still come out.
"""
from __future__ import annotations

from operator import index

#: data bytes that follow each channel-voice status nibble
_CHANNEL_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
#: data bytes after system-common statuses
_COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}


class MidiParser:
    """Feed bytes, get complete messages (lists of ints). SysEx is skipped (counted, not returned)."""

    def __init__(self) -> None:
        self.running: int | None = None
        self.pending: list[int] = []
        self.implicit = False  # pending[0] is the running status, not a byte received for this message
        self.need = 0
        self.in_sysex = False
        self.dropped = 0   # bytes that belonged to no valid message
        self.sysex = 0     # complete or aborted SysEx messages skipped

    def feed(self, data) -> list[list[int]]:
        """Parse ``data`` (bytes or ints); returns the complete messages it finished."""
        out: list[list[int]] = []
        try:
            data = iter(data)
        except TypeError:  # not a sequence at all (None, a lone int): one bad item
            self.dropped += 1
            return out
        for b in data:
            try:
                if isinstance(b, bool):
                    raise TypeError
                b = index(b)  # ints only: no floats, strings or inf slip through int()
            except TypeError:
                self.dropped += 1
                continue
            if not 0 <= b <= 0xFF:
                self.dropped += 1
                continue
            if b >= 0xF8:  # realtime: may appear anywhere, never disturbs running status
                if b in (0xF9, 0xFD):
                    self.dropped += 1
                continue
            if b == 0xF0:
                self._abort_partial()
                if self.in_sysex:  # unterminated SysEx aborted by a new SysEx
                    self.sysex += 1
                self.in_sysex = True
                self.running = None
                continue
            if b == 0xF7:
                if self.in_sysex:
                    self.in_sysex = False
                    self.sysex += 1
                else:  # a stray EOX is a system-common status: it ends a partial message and running status
                    self._abort_partial()
                    self.running = None
                    self.dropped += 1
                continue
            if b & 0x80:  # a status byte
                if self.in_sysex:  # unterminated SysEx aborted by a new status
                    self.in_sysex = False
                    self.sysex += 1
                self._abort_partial()
                hi = b & 0xF0
                if hi in _CHANNEL_LEN:
                    self.running = b
                    self.pending = [b]
                    self.implicit = False
                    self.need = _CHANNEL_LEN[hi]
                elif b in _COMMON_LEN:
                    self.running = None
                    if _COMMON_LEN[b] == 0:
                        out.append([b])
                    else:
                        self.pending = [b]
                        self.implicit = False
                        self.need = _COMMON_LEN[b]
                else:  # 0xF4, 0xF5: undefined
                    self.running = None
                    self.dropped += 1
                continue
            # a data byte
            if self.in_sysex:
                continue
            if not self.pending:
                if self.running is None:
                    self.dropped += 1
                    continue
                self.pending = [self.running]
                self.implicit = True
                self.need = _CHANNEL_LEN[self.running & 0xF0]
            self.pending.append(b)
            if len(self.pending) == self.need + 1:
                out.append(self.pending)
                self.pending = []
        return out

    def _abort_partial(self) -> None:
        if self.pending:
            self.dropped += len(self.pending) - self.implicit
            self.pending = []
