"""``--demo``: the built-in demo phrase played live, as if from a MIDI keyboard (realtime.offline.demo).

Thread: a daemon feeder thread appends ``(perf_counter_ns, bytes)`` to ``queue`` at each event's time, as
the rtmidi callback of :class:`realtime.live.midi_in.MidiInput` does; the phrase repeats until
:meth:`close`. Same interface as ``MidiInput`` (queue, received, port_name, api, virtual, close).
"""
from __future__ import annotations

import collections
import threading
import time

from realtime.offline.demo import demo_events

RATE = 1000  # event times in ms

#: what the start line says when no MIDI port was found
NO_MIDI_HINT = ("none (no port found: plug in a keyboard (--list-midi lists ports), or --virtual-midi for a "
                "port other programs can play into, or --demo to hear the demo phrase)")


class DemoMidi:
    """Feeds the demo phrase over ``programs`` into ``queue`` in real time, ``loop_s`` seconds per pass."""

    def __init__(self, programs: list[int], loop_s: float = 8.0, maxlen: int = 8192) -> None:
        self.api, self.port_name, self.virtual = "demo", "demo phrase", False
        self.queue: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=maxlen)
        self.received = 0
        self._events = demo_events(RATE, loop_s, programs)
        self._loop_s = loop_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-midi", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            for ms, data in self._events:
                if self._stop.wait(max(0.0, t0 + ms / RATE - time.perf_counter())):
                    return
                self.queue.append((time.perf_counter_ns(), data))
                self.received += 1
            t0 += self._loop_s

    def close(self) -> None:
        """Main thread: stop feeding (idempotent)."""
        self._stop.set()
        self._thread.join(timeout=1.0)

    def __repr__(self) -> str:
        return "demo phrase (--demo)"
