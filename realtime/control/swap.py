"""Model hot-swap (issue 40): another model or preset while playing, crossfaded, held notes carried over.

A preset's ``[swap]`` lists slots (model files or presets); a CC's value range or a program number on a
chosen channel picks one. The new :class:`~realtime.offline.render.Session` is built off the audio path
(live: :mod:`realtime.live.swap_loader`'s thread; offline: at once, at the sample of the request) and
handed over through ``Swapper.ready``; the generator thread, at a block boundary, replays the held notes
(pitch, velocity, program, bend, CCs) into it, logs a ``swap`` event (model path and hash, resolved
preset) at that exact sample, and runs both sessions for ``crossfade_ms`` with a linear crossfade
(linear: the mix's sample step never exceeds the larger of the two signals' own steps, plus the gain's
slope times their difference) before it drops the old one. A replay loads the same model synchronously at
that sample, so the take re-renders sample for sample.

MIDI during a crossfade goes to both sessions, one message at a time, and every message is logged (the
old session's event, else ``{"param": "midi"}``), so a replay feeds both the same messages.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Callable

import numpy as np

from realtime.control.midi_parse import MidiParser

#: a playing session (realtime.offline.render.Session; not imported: offline/ builds on control/, not back)
Session = Any


def model_label(path: str | Path | None) -> str:
    """A model's name for the status line: its file's stem, or its folder's name for ``.../NAME/model.npz``."""
    if not path:
        return ""
    p = Path(path)
    return p.parent.name if p.stem == "model" and p.parent.name else p.stem


class SwapError(ValueError):
    """A slot could not be loaded (the message names the file and the reason)."""


class HeldState:
    """What the player holds now, from the applied events' MIDI (identical live and in a replay):
    held notes in order, and each channel's program, bend and CCs."""

    def __init__(self) -> None:
        self.notes: dict[tuple[int, int], list[int]] = {}
        self.programs: dict[int, list[int]] = {}
        self.bends: dict[int, list[int]] = {}
        self.ccs: dict[tuple[int, int], list[int]] = {}

    def track(self, ev: dict[str, Any]) -> None:
        msg = ev.get("midi")
        if not msg:
            return
        kind, ch = msg[0] & 0xF0, msg[0] & 0x0F
        if kind == 0x90 and len(msg) > 2 and msg[2] > 0:
            self.notes.pop((ch, msg[1]), None)
            self.notes[(ch, msg[1])] = list(msg)
        elif kind in (0x80, 0x90) and len(msg) > 1:
            self.notes.pop((ch, msg[1]), None)
        elif kind == 0xC0:
            self.programs[ch] = list(msg)
        elif kind == 0xE0:
            self.bends[ch] = list(msg)
        elif kind == 0xB0 and len(msg) > 2:
            if msg[1] in (120, 123):
                self.notes.clear()
            else:
                self.ccs[(ch, msg[1])] = list(msg)

    def messages(self) -> list[list[int]]:
        """The messages that put a fresh controller in this state: programs, CCs, bends, then the notes."""
        return [*self.programs.values(), *self.ccs.values(), *self.bends.values(), *self.notes.values()]


class Swapper:
    """A session's hot-swap: the trigger map, the held state, the incoming session and the crossfade."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.base = session.preset  # the preset with the [swap] table: slots stay selectable after a swap
        sw = self.base.swap
        self.slots, self.cc, self.channel = list(sw.slots), sw.cc, sw.program_channel
        self.fade_len = int(round(sw.crossfade_ms / 1000.0 * session.engine.sample_rate))
        self.parser = MidiParser()
        self.held = HeldState()
        self.current: int | None = None      # the slot playing (None: the preset's own model)
        self.wanted: int | None = None       # the slot last asked for (loading, loaded or failed)
        #: loader -> generator thread: (Session, swap event) ready to crossfade to
        self.ready: collections.deque = collections.deque()
        #: one line per failed load (the host prints them; render says them)
        self.messages: list[str] = []
        #: live: a function that loads a slot on another thread (realtime.live.swap_loader); None = at once
        self.loader: Callable[[int], None] | None = None
        self.say: Callable[[str], None] | None = None
        self.incoming: "Session | None" = None
        self.pos = 0
        self._tmp = np.zeros(0, np.float32)
        self.label = model_label(session.model.path or self.base.model_path())
        #: prepared re-prime states by (model file, engine): they depend on nothing else
        #: (realtime/engine/prime_bank.py), so a slot of a model already played shares them and loads at once
        self.banks: dict[tuple[str, str, str], dict] = {}
        self._share_bank(session)
        self.loading = ""   # the slot being loaded (status line)

    # ------------------------------------------------------------ triggers
    def slot_for(self, msg: list[int]) -> int | None:
        kind, ch = msg[0] & 0xF0, (msg[0] & 0x0F) + 1
        if self.cc and kind == 0xB0 and len(msg) > 2 and msg[1] == self.cc:
            return min(len(self.slots) - 1, msg[2] * len(self.slots) // 128)
        if self.channel and kind == 0xC0 and ch == self.channel and len(msg) > 1 and msg[1] < len(self.slots):
            return msg[1]
        return None

    def request(self, slot: int) -> dict[str, Any] | None:
        """Ask for slot ``slot`` (generator thread): live the loader thread builds it; offline now."""
        if slot == self.wanted:  # the knob moved within the same slot's range (or a failed slot again)
            return None
        self.wanted = slot
        if slot == self.current and not self.loading and not self.ready:  # back to what plays: nothing to do
            return None
        ev = self.session.emit({"param": "swap_request", "value": slot, "path": self.slots[slot]})
        if self.loader is not None:
            self.loading = model_label(self.slots[slot])
            self.loader(slot)
        else:
            self.load_now(slot)
        return ev

    def load_now(self, slot: int) -> None:
        """Build slot ``slot`` in this thread and queue it; a failure is one message and playing goes on."""
        try:
            self.ready.append(self.build(slot))
        except Exception as e:  # noqa: BLE001 - any failure to load: one line, keep playing
            self.failed(slot, e)

    def failed(self, slot: int, e: BaseException) -> None:
        path = self.slots[slot]
        why = str(e).replace("\n", " ").strip() or type(e).__name__
        line = f"swap: cannot load {path}: {why}; playing on with {self.label}"
        self.messages.append(line)
        self.loading = ""
        if self.say is not None:
            self.say(line)

    def build(self, slot: int) -> tuple[Session, dict[str, Any]]:
        """The session of slot ``slot`` and its ``swap`` event (any thread but the generator's)."""
        from realtime.control.presets import load_preset, override

        path = Path(self.slots[slot])
        if not path.is_file():
            raise SwapError("file not found")
        if path.suffix.lower() == ".toml":
            preset = load_preset(path)
            label = preset.name
        else:
            preset = override(self.base, "model", path=str(path))
            label = model_label(path)
        return self.open(preset, slot, label)

    def open(self, preset, slot: int, label: str) -> tuple[Session, dict[str, Any]]:
        from dataclasses import asdict

        from realtime.engine.numba_engine import preset_engine_name as engine_name
        from realtime.model.model_file import load_model, model_bytes_hash

        model = load_model(preset.model_path())
        new = type(self.session).open(preset, model)  # the playing session's class (offline.render.Session)
        new.swapper = None
        new.keep_log = False
        shared = self._share_bank(new)
        if self.loader is not None and not shared:  # live: every re-prime state now, not at a note-on
            new.controller.primes.prepare(threads=1)
        d = asdict(new.preset)
        d.pop("path", None)
        d["model"]["engine"] = engine_name(new.engine)
        mpath = Path(model.path or preset.model_path()).resolve()
        d["model"]["path"] = str(mpath)
        ev = {"param": "swap", "value": label, "slot": slot, "model": str(mpath),
              "sha256": model_bytes_hash(mpath), "preset": d}
        return new, ev

    def _share_bank(self, session: Session) -> bool:
        """Give ``session`` the prepared states of an earlier session of the same model file and engine, or
        keep its own for later ones; True if it got an earlier one."""
        from realtime.engine.numba_engine import preset_engine_name as engine_name

        primes = getattr(session.controller, "primes", None)
        if primes is None or session.model.path is None:
            return False
        path = Path(session.model.path).resolve()
        key = (f"{path}:{path.stat().st_mtime_ns}", type(session.engine).__name__, engine_name(session.engine))
        if key in self.banks:
            primes._states = self.banks[key]
            return True
        self.banks[key] = primes._states
        return False

    def open_event(self, ev: dict[str, Any]) -> None:
        """Replay: build the logged swap's session now (same model bytes required) and queue it."""
        from realtime.control.presets import preset_from_dict
        from realtime.model.model_file import model_bytes_hash

        path = Path(ev["model"])
        if not path.is_file():
            raise SwapError(f"swap at sample {ev.get('sample')}: model file {path} not found")
        if ev.get("sha256") and model_bytes_hash(path) != ev["sha256"]:
            raise SwapError(f"swap at sample {ev.get('sample')}: model file {path} changed since the recording")
        preset = preset_from_dict(ev["preset"], None)
        preset.model.path = str(path)
        new, _ = self.open(preset, int(ev.get("slot", 0)), str(ev.get("value", "")))
        self.ready.append((new, ev))

    # ---------------------------------------------------- generator thread
    def apply_midi(self, data) -> list[dict[str, Any]]:
        """Session.apply_midi with swap triggers taken out and, during a crossfade, both sessions fed."""
        s = self.session
        msgs = self.parser.feed(data)
        slots = [self.slot_for(m) for m in msgs]
        if self.incoming is None and all(k is None for k in slots):
            evs = s._apply_midi(data)
        else:
            evs = []
            for m, k in zip(msgs, slots):
                if k is not None:
                    ev = self.request(k)
                    if ev is not None:
                        evs.append(ev)
                elif self.incoming is None:
                    evs += s._apply_midi(bytes(m))
                else:
                    own = s._apply_midi(bytes(m))
                    self.incoming.controller.feed(bytes(m))
                    evs += own or [s.emit({"param": "midi", "value": m[0], "midi": list(m)})]
        for ev in evs:
            self.held.track(ev)
        return evs

    @property
    def active(self) -> bool:
        return self.incoming is not None or bool(self.ready)

    def generate(self, out: np.ndarray) -> np.ndarray:
        """Session.generate during a swap: begin a ready one, crossfade, adopt the new session at the end."""
        s = self.session
        if self.incoming is None:
            self.begin(*self.ready.popleft())
        s._generate(out)
        new, n = self.incoming, len(out)
        if len(self._tmp) < n:
            self._tmp = np.zeros(max(n, 1024), np.float32)
        y = new._generate(self._tmp[:n])
        if self.fade_len <= 0:
            out[:] = y
        else:
            g = np.minimum(1.0, (self.pos + np.arange(1, n + 1, dtype=np.float64)) / self.fade_len)
            out[:] = (out * (1.0 - g) + y * g).astype(np.float32)
        self.pos += n
        if self.pos >= self.fade_len:
            self.adopt()
        return out

    def begin(self, new: Session, ev: dict[str, Any]) -> None:
        s = self.session
        ctl = new.controller
        if hasattr(ctl, "state") and not self.held.programs and hasattr(ctl, "_set_instrument"):
            old = s.controller  # one voice, no program sent: the same instrument, where the new model has it
            name = old.instruments[old.state.instrument] if 0 <= old.state.instrument < len(old.instruments) else ""
            if name in ctl.instruments:
                ctl._set_instrument(ctl.instruments.index(name))
        for m in self.held.messages():
            ctl.feed(bytes(m))
        if new.watchdog is not None and self.held.notes:
            new.watchdog.note_started()
        if s.stopped:
            new.stopped = True
        self.incoming, self.pos = new, 0
        self.current = ev.get("slot")
        self.loading = ""
        self.label = str(ev.get("value", ""))
        s.emit({k: v for k, v in ev.items() if k != "sample"} | {"crossfade": self.fade_len})

    def adopt(self) -> None:
        """The crossfade is over: the session plays the new engine, controller, stage and chain."""
        s, new = self.session, self.incoming
        old_engine = s.engine
        for f in ("preset", "model", "engine", "stage", "controller", "watchdog", "effects"):
            setattr(s, f, getattr(new, f))
        self.incoming = None
        close = getattr(old_engine, "close", None)
        if close is not None:
            close()
