"""MIDI input through python-rtmidi: ports, APIs, and a callback that only timestamps and enqueues.

Threads: rtmidi's MIDI thread runs the callback, which appends
``(time.perf_counter_ns(), bytes)`` to a bounded ``collections.deque``
(append/popleft are atomic in CPython, no lock of ours); the generator
thread pops and parses (``Session.apply_midi``). Opening, listing and
closing happen in the main thread.

APIs: ``alsa``, ``jack``, ``coremidi``, ``winmm`` (``--midi-api``, else env
``RTMIDI_API``, else every compiled API in rtmidi's order, first that works).
rtmidi's JACK client would otherwise start a JACK server on demand; we set
``JACK_NO_START_SERVER=1`` (unless already set) before probing.
"""
from __future__ import annotations

import collections
import contextlib
import os
import time
from typing import Iterator

API_ALIASES = {"alsa": "alsa", "jack": "jack", "coremidi": "core", "core": "core", "macosx": "core",
               "winmm": "winmm", "windows": "winmm", "web": "web", "dummy": "dummy"}


class MidiError(ValueError):
    """A MIDI port or API could not be opened (one-line message listing what exists)."""


def _rtmidi():
    import rtmidi

    return rtmidi


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (ALSA/JACK libraries print when a backend is absent)."""
    try:
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def api_names() -> list[str]:
    """Compiled rtmidi APIs by short name (``alsa``, ``jack`` ...), in rtmidi's preference order."""
    rt = _rtmidi()
    return [rt.get_api_name(a) for a in rt.get_compiled_api() if a != rt.API_RTMIDI_DUMMY]


def _api_id(name: str) -> int:
    rt = _rtmidi()
    key = API_ALIASES.get(name.strip().lower())
    api = rt.get_compiled_api_by_name(key) if key else rt.API_UNSPECIFIED
    if key is None or api == rt.API_UNSPECIFIED:
        raise MidiError(f"MIDI API {name!r}: not available (compiled: {', '.join(api_names()) or 'none'})")
    return api


def _candidate_apis(api: str | None) -> list[int]:
    api = api or os.environ.get("RTMIDI_API", "")
    if api:
        return [_api_id(api)]
    rt = _rtmidi()
    return [a for a in rt.get_compiled_api() if a != rt.API_RTMIDI_DUMMY]


def _new_midi_in(api: int, client_name: str):
    rt = _rtmidi()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    with _quiet_stderr():
        return rt.MidiIn(api, client_name)


def list_ports(api: str | None = None) -> dict[str, list[str] | None]:
    """Input ports per API name; None for an API whose backend is not running."""
    rt = _rtmidi()
    out: dict[str, list[str] | None] = {}
    for a in _candidate_apis(api):
        try:
            m = _new_midi_in(a, "wavenet-live-probe")
        except rt.RtMidiError:
            out[rt.get_api_name(a)] = None
            continue
        try:
            out[rt.get_api_name(a)] = list(m.get_ports())
        finally:
            with _quiet_stderr():
                m.delete()
    return out


def describe_ports(api: str | None = None) -> str:
    """One line: ``api: [0] port, [1] port; api2: (not running)``."""
    parts = []
    for name, ports in list_ports(api).items():
        if ports is None:
            parts.append(f"{name}: (not running)")
        else:
            parts.append(f"{name}: " + (", ".join(f"[{i}] {p}" for i, p in enumerate(ports)) or "no ports"))
    return "; ".join(parts) or "no MIDI API"


class MidiInput:
    """An open rtmidi input. ``queue`` holds ``(perf_counter_ns, bytes)``; the generator pops from the left."""

    def __init__(self, midi_in, api: str, port_name: str, virtual: bool, maxlen: int = 8192) -> None:
        self._midi_in = midi_in
        self.api = api
        self.port_name = port_name
        self.virtual = virtual
        self.queue: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=maxlen)
        self.received = 0
        midi_in.ignore_types(sysex=False, timing=True, active_sense=True)
        midi_in.set_callback(self._on_message)

    def _on_message(self, event, data=None) -> None:
        """rtmidi's thread: timestamp and enqueue, nothing else."""
        self.queue.append((time.perf_counter_ns(), bytes(event[0])))
        self.received += 1

    def close(self) -> None:
        """Main thread: stop callbacks and close the port (idempotent)."""
        m, self._midi_in = self._midi_in, None
        if m is None:
            return
        with _quiet_stderr():
            m.cancel_callback()
            m.close_port()
            m.delete()

    def __repr__(self) -> str:
        kind = "virtual port" if self.virtual else "port"
        return f"{self.api} {kind} {self.port_name}"


def open_input(port: str | int | None = None, virtual: str | None = None, api: str | None = None,
               client_name: str = "wavenet-live-midi", required: bool = False) -> MidiInput | None:
    """Open a MIDI input.

    * ``virtual``: create a virtual input port of that name (others connect to it).
    * ``port``: a number or a case-insensitive name substring; missing -> :class:`MidiError`
      listing the ports.
    * neither: the first input port of the first API that has one; None if there is none
      (``required=False``), else :class:`MidiError`.
    """
    rt = _rtmidi()
    errors = []
    spec = None if port is None or str(port).strip() == "" else str(port).strip()
    for a in _candidate_apis(api):
        name = rt.get_api_name(a)
        try:
            m = _new_midi_in(a, client_name)
        except rt.RtMidiError as e:
            errors.append(f"{name}: {e}")
            continue
        try:
            if virtual:
                with _quiet_stderr():
                    m.open_virtual_port(virtual)
                return MidiInput(m, name, f"{client_name}:{virtual}" if name == "jack" else virtual, True)
            ports = list(m.get_ports())
            idx = _match_port(spec, ports)
            if idx is not None:
                m.open_port(idx, "midi_in")
                return MidiInput(m, name, ports[idx], False)
        except rt.RtMidiError as e:
            errors.append(f"{name}: {e}")
        with _quiet_stderr():
            m.delete()
    if spec is None and not virtual and not required:
        return None
    if virtual:
        raise MidiError(f"virtual MIDI port {virtual!r}: cannot open ({'; '.join(errors) or 'no MIDI API'})")
    what = f"MIDI port {spec!r}" if spec else "a MIDI input"
    raise MidiError(f"{what}: not found (available: {describe_ports(api)})")


def _match_port(spec: str | None, ports: list[str]) -> int | None:
    if not ports:
        return None
    if spec is None:
        return 0
    if spec.isdigit():
        i = int(spec)
        return i if i < len(ports) else None
    hits = [i for i, p in enumerate(ports) if spec.lower() in p.lower()]
    return hits[0] if len(hits) == 1 else next((i for i in hits if ports[i].lower() == spec.lower()), None)
