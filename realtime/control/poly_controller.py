"""Multi-timbral, polyphonic MIDI meaning: each MIDI channel a part, its notes on voices of one PolyEngine.

Thread: generator (live) or the render loop. Used when the preset's ``sound.voices`` > 1; the
monophonic :class:`realtime.control.controller.Controller` stays as it is otherwise.

Each MIDI channel is a part, as in a General MIDI synth: its own program (instrument), volume (the CC
bound to ``gain``, CC 7 in the presets), expression (``expression``, CC 11), morph, glide, pitch bend and
sustain pedal (CC 64). The drum channel (``[midi] drum_channel``, 10) plays the model's drums, a note
picking the drum, and ignores program changes. Every part's notes take voices from one pool of
``sound.voices`` (the VoiceAllocator: a free voice, else the oldest released, else the oldest held is
stolen), so all channels sound together and the pool is still one batched kernel call per block.
With ``sound.legato`` each channel other than the drums is monophonic as the one-voice preset is: a note
played while another is held glides to it on the same voice, releasing it returns to the note still held.

Each voice has an amplitude envelope (attack on note on, ``release_ms`` after note off), its own watchdog
(a drum hit decaying to silence is its instrument's nature, not a dropout) and, for ``bank_attack``
instruments, the recorded attack before the network (realtime.control.attack). Temperature, period
noise and the loop low-pass are global.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from realtime.control.attack import AttackLine, attack_audio
from realtime.control.controller import BEND_GLIDE_S, Controller, expression_offset, velocity_level
from realtime.control.presets import Preset, instrument_names
from realtime.control.voices import HELD, VoiceAllocator
from realtime.engine.poly_engine import PolyEngine
from realtime.engine.prime_bank import SILENCE
from realtime.model.one_pole import one_pole_coeff
from realtime.sound.output_stage import OutputStage
from realtime.sound.watchdog import Watchdog


@dataclass
class Part:
    """One MIDI channel's state."""

    channel: int
    instrument: int
    drums: bool = False
    program: int | None = None
    gain_db: float = 0.0      # the part's volume (dB); the voices' gain is relative to the preset's gain_db
    gain: float = 1.0         # ... as a linear factor on its voices' envelopes
    expression: float = 1.0
    morph: float = 0.0
    glide_s: float = 0.04
    bend: float = 0.0         # semitones
    sustain: bool = False
    velocity: int = 100
    held: list[int] = field(default_factory=list)       # keys down, most recent last
    sustained: set[int] = field(default_factory=set)    # released keys the pedal holds
    voice: int | None = None  # legato: the part's sounding voice


class PolyController(Controller):
    """Drives ``poly`` (its voices share one batched kernel call per block), one part per MIDI channel."""

    def __init__(self, poly: PolyEngine, stage: OutputStage, preset: Preset) -> None:
        self.poly = poly
        V = poly.n_voices
        self.voice_inst = [0] * V                            # each voice's instrument ...
        self.voice_part = [1] * V                            # ... and channel
        super().__init__(poly.voice(0), stage, preset)
        sr = poly.sample_rate
        self.alloc = VoiceAllocator(V, silence_level=1e-4, silence_hold=int(0.01 * sr),
                                    max_release=int(max(0.05, 4 * preset.sound.release_ms / 1000.0) * sr))
        for e in poly.voices:  # self.primes (voice 0's) serves every voice: they share the weights
            e.set_temperature(self.state.temperature)
        poly.active[:] = False
        self.env = np.zeros(V, np.float64)         # per-voice amplitude envelope
        self.env_target = np.zeros(V, np.float64)
        self.attack_c = one_pole_coeff(0.002, sr)
        self.release_c = one_pole_coeff(max(preset.sound.release_ms, 1.0) / 1000.0, sr)
        stage.set_targets(env=1.0)  # the voices carry the envelopes
        self._levels = np.zeros(V, np.float32)
        self.parts: dict[int, Part] = {}
        self.drums = self.instruments.index("drums") if "drums" in self.instruments else None
        self.bank_attack = instrument_names(preset.model.bank_attack)
        rf = poly.cfg.receptive_field
        n_attack = rf if self.seedbank is None else max(rf, self.seedbank.snippets.shape[1])
        self.lines = [AttackLine(n_attack) for _ in range(V)]
        self._attacks: dict[int, np.ndarray] = {}
        self._release_after_attack = np.zeros(V, bool)
        self.dogs = [Watchdog(preset.watchdog, sr) for _ in range(V)]
        self.raw = np.zeros((V, 0), np.float32)   # each voice's output of the last block, before its envelope
        self._sounding: list[tuple[int, int]] = []  # (channel, note) held, most recent last (the status line's)

    def _voice_engines(self) -> list:
        return self.poly.voices

    def _set_pitched_loop(self) -> None:
        """Each voice's period noise and loop low-pass by its own instrument (none for an unpitched one), and the
        preset's probability floor."""
        if not hasattr(self, "poly"):
            return
        for v, e in enumerate(self.poly.voices):
            pitched = self.instruments[self.voice_inst[v]] not in self.unpitched
            e.set_period_noise(self.state.period_noise if pitched else 0.0)
            e.set_loop_lowpass(self.state.loop_lowpass if pitched else 0.0)
            e.set_prob_floor(self.preset.model.prob_floor)

    def part(self, ch: int | None = None) -> Part:
        """The part of channel ``ch`` (default: the channel of the message being applied)."""
        ch = self.ch if ch is None else ch
        p = self.parts.get(ch)
        if p is None:
            drums = ch == self.preset.midi.drum_channel and self.drums is not None
            # a part starts on GM program 0 (as the one-voice preset starts on instrument 0)
            inst = self.drums if drums else (self._program_instrument(0) if self.programs else 0)
            p = self.parts[ch] = Part(ch, 0 if inst is None else inst, drums=drums,
                                      gain_db=self.preset.sound.gain_db, glide_s=self.preset.sound.glide_ms / 1000.0,
                                      morph=self.state.morph, expression=self.state.expression)
        return p

    def _key(self, ch: int, note: int) -> int:
        return (ch - 1) * 128 + note

    def _voices_of(self, p: Part) -> list[int]:
        return [v for v in self.alloc.busy() if self.voice_part[v] == p.channel]

    def _morph_of(self, p: Part) -> tuple[int, float] | None:
        if p.morph <= 0:
            return None
        other = self.morph_to if self.morph_to is not None else (p.instrument + 1) % len(self.instruments)
        return other, p.morph

    # ---------------------------------------------------------------- notes
    def note_on(self, note: int, velocity: int) -> dict[str, Any]:
        s, p, ch = self.state, self.part(), self.ch
        p.sustained.discard(note)
        if note in p.held:
            p.held.remove(note)
        p.held.append(note)
        p.velocity = velocity
        s.note, s.velocity, s.instrument = note, velocity, p.instrument
        if (ch, note) in self._sounding:
            self._sounding.remove((ch, note))
        self._sounding.append((ch, note))
        level = velocity_level(self.preset.sound, velocity) * p.gain
        name = self.instruments[p.instrument]
        if self.preset.sound.legato and not p.drums and p.voice is not None and self.alloc.state(p.voice) == HELD:
            v = p.voice  # legato: the part's voice glides to the note, no new attack
            self.alloc.retune(v, self._key(ch, note))
            self._glide(v, p, note, velocity)
            self.env_target[v] = level
            return {"param": "note_on", "value": note, "velocity": velocity, "voice": v, "channel": ch,
                    "instrument": name, "legato": True}
        a = self.alloc.note_on(self._key(ch, note))
        v = a.voice
        if a.stolen is not None or not a.was_free:
            old = self.parts.get(self.voice_part[v])
            if old is not None and old.voice == v:
                old.voice = None
        self.voice_part[v], self.voice_inst[v] = ch, p.instrument
        e = self.poly.voice(v)
        self.poly.active[v] = True
        e.set_note(gate=1.0, pitch=note + p.bend, glide_s=0.0)
        e.play_level(p.instrument, note, velocity)
        e.set_expression(expression_offset(p.expression))
        e.set_conditioning(pitch=e.embed_pitch(note, p.bend), instrument=p.instrument, velocity=velocity,
                           morph=self._morph_of(p))
        e.set_temperature(s.temperature)
        pitched = name not in self.unpitched
        e.set_period_noise(s.period_noise if pitched else 0.0)
        e.set_loop_lowpass(s.loop_lowpass if pitched else 0.0)
        k = None
        if self.preset.model.reprime != "off":
            k = self.primes.index(p.instrument, note, velocity)
            if k is not None:  # a prepared state (realtime.engine.prime_bank): a copy, no network pass
                e.reprime_state(self.primes.get(k), self.crossfade)
                s.reprimes += 1
        # the recorded attack (a drum hit) plays first when the network goes on from that very snippet
        audio = attack_audio(self.seedbank, k, self._attacks) if name in self.bank_attack else None
        self.lines[v].start(audio)
        self._release_after_attack[v] = False
        self.dogs[v].note_started()
        self.env_target[v] = level
        p.voice = v
        ev = {"param": "note_on", "value": note, "velocity": velocity, "voice": v, "channel": ch, "instrument": name}
        if a.stolen is not None:
            ev["stolen"] = a.stolen % 128
        return ev

    def _glide(self, v: int, p: Part, note: int, velocity: int) -> None:
        e = self.poly.voice(v)
        e.set_note(gate=1.0, pitch=note + p.bend, glide_s=p.glide_s)
        e.play_level(p.instrument, note, velocity, attack=False)
        e.set_conditioning(pitch=e.embed_pitch(note, p.bend), velocity=velocity,
                           glide_samples=int(p.glide_s * self.poly.sample_rate))

    def note_off(self, note: int) -> dict[str, Any]:
        p = self.part()
        if p.sustain and note in p.held:  # the pedal holds it until it comes up
            p.sustained.add(note)
            return {"param": "note_off", "value": note, "channel": p.channel, "sustained": True}
        return self._release(p, note)

    def _release(self, p: Part, note: int) -> dict[str, Any]:
        ch = p.channel
        if note in p.held:
            p.held.remove(note)
        if (ch, note) in self._sounding:
            self._sounding.remove((ch, note))
        self.state.note = self._sounding[-1][1] if self._sounding else None
        key = self._key(ch, note)
        if self.preset.sound.legato and not p.drums:
            v = p.voice
            if v is None or self.alloc.state(v) != HELD or self.alloc.voices[v].note != key:
                return {"param": "note_off", "value": note, "channel": ch, "voice": None}
            if p.held:  # last-note priority: back to the note still held
                prev = p.held[-1]
                self.alloc.retune(v, self._key(ch, prev))
                self._glide(v, p, prev, p.velocity)
                return {"param": "note_off", "value": note, "channel": ch, "voice": v, "back_to": prev}
            p.voice = None
        v = self.alloc.note_off(key)
        if v is not None:
            self.poly.voice(v).set_note(gate=0.0)
            if p.drums and self.lines[v].playing_attack:  # the whole recorded hit sounds, then the release
                self._release_after_attack[v] = True
            else:
                self.env_target[v] = 0.0
        return {"param": "note_off", "value": note, "channel": ch, "voice": v}

    def all_notes_off(self, ch: int | None = None) -> dict[str, Any]:
        """Every note (of channel ``ch``, or of every channel) released; the pedal let go."""
        for v in list(self.alloc.busy()):
            if ch is not None and self.voice_part[v] != ch:
                continue
            if self.alloc.state(v) == HELD:
                self.alloc.voices[v].state = "released"
                self.alloc.voices[v].released_at = self.alloc.voices[v].quiet_for = 0
                self.poly.voice(v).set_note(gate=0.0)
                self.env_target[v] = 0.0
        for p in self.parts.values():
            if ch is None or p.channel == ch:
                p.held.clear()
                p.sustained.clear()
                p.sustain = False
                p.voice = None
        self._sounding = [(c, n) for c, n in self._sounding if ch is not None and c != ch]
        self.state.held.clear()
        self.state.note = self._sounding[-1][1] if self._sounding else None
        return {"param": "all_notes_off", "value": 0} | ({} if ch is None else {"channel": ch})

    def recover(self) -> None:
        """Re-prime every sounding voice from the seed bank (or from silence)."""
        for v in self.alloc.busy():
            self._reprime_voice(v)
        self.state.reprimes += 1

    def _reprime_voice(self, v: int) -> None:
        p = self.parts.get(self.voice_part[v])
        vel = p.velocity if p is not None else self.state.velocity
        k = self.primes.index(self.voice_inst[v], self.alloc.voices[v].note % 128, vel)
        self.poly.voice(v).reprime_state(self.primes.get(SILENCE if k is None else k), self.crossfade)

    def watch(self, out: np.ndarray, dog: Watchdog) -> list[str]:
        """Each sounding voice's own watchdog on its own output and instrument (a drum hit decays to silence,
        a flute does not); a voice in trouble is re-primed alone. Recoveries are counted in ``dog``."""
        reasons = []
        for v in self.alloc.busy():
            if v >= len(self.raw) or self.raw.shape[1] != len(out):
                continue
            inst = self.instruments[self.voice_inst[v]]
            r = self.dogs[v].check(self.raw[v], self.poly.voices[v].nonfinite_count,
                                   self.alloc.state(v) == HELD, inst in dog.noise_ok, inst in dog.decay_ok)
            if r is not None:
                self._reprime_voice(v)
                self.state.reprimes += 1
                dog.recoveries[r] = dog.recoveries.get(r, 0) + 1
                reasons.append(r)
        return reasons

    # ------------------------------------------------- per-part parameters
    def program_change(self, program: int) -> dict[str, Any] | None:
        p = self.part()
        if p.drums:  # GM drum kits: the model has one
            return None
        inst = self._program_instrument(program)
        if inst is None:
            return None
        p.program, p.instrument = program, inst
        self.state.instrument = inst
        mode = self.preset.model.reprime
        voices = self._voices_of(p)
        for v in voices:
            e = self.poly.voice(v)
            self.voice_inst[v] = inst
            e.set_conditioning(instrument=inst, glide_samples=self.smooth)
            e.play_level(inst, self.alloc.voices[v].note % 128, p.velocity, attack=False)
            if mode == "note_on_program":  # re-primed from the new instrument's snippet
                self._reprime_voice(v)
        if mode == "note_on_program" and voices:
            self.state.reprimes += 1
        self._set_pitched_loop()
        return {"param": "instrument", "value": inst, "name": self.instruments[inst], "channel": p.channel}

    def pitch_bend(self, value: int) -> dict[str, Any]:
        p = self.part()
        p.bend = value / 8192.0 * self.preset.sound.bend_range
        for v in self._voices_of(p):
            self.poly.voice(v).set_bend(self.alloc.voices[v].note % 128, p.bend, BEND_GLIDE_S)
        return {"param": "bend", "value": round(p.bend, 5), "channel": p.channel}

    def control_change(self, cc: int, value: int) -> dict[str, Any] | None:
        if cc in (120, 123):
            return self.all_notes_off(self.ch)
        if cc == 64 and 64 not in self.preset.midi.cc:  # the sustain pedal (unless a preset binds CC 64)
            p = self.part()
            down = value >= 64
            if p.sustain and not down:
                for note in sorted(p.sustained):
                    self._release(p, note)
                p.sustained.clear()
            p.sustain = down
            return {"param": "sustain", "value": int(down), "channel": p.channel}
        return super().control_change(cc, value)

    def set_param(self, param: str, x: float) -> dict[str, Any]:
        p, snd = self.part(), self.preset.sound
        if param == "gain":  # the part's volume
            p.gain_db = -60.0 + 66.0 * x if x > 0 else -np.inf
            p.gain = 0.0 if x <= 0 else 10 ** ((p.gain_db - snd.gain_db) / 20.0)
            for v in self._voices_of(p):
                if self.alloc.state(v) == HELD:
                    self.env_target[v] = velocity_level(snd, p.velocity) * p.gain
            return {"param": "gain", "value": round(float(p.gain_db), 3), "channel": p.channel}
        if param == "expression":
            p.expression = x
            for v in self._voices_of(p):
                self.poly.voice(v).set_expression(expression_offset(x))
            return {"param": "expression", "value": round(x, 6), "channel": p.channel}
        if param == "morph":
            p.morph = x
            for v in self._voices_of(p):
                self.poly.voice(v).set_conditioning(morph=self._morph_of(p) or None, glide_samples=self.smooth)
            return {"param": "morph", "value": round(x, 6), "channel": p.channel}
        if param == "glide":
            p.glide_s = x * snd.max_glide_ms / 1000.0
            return {"param": "glide", "value": round(p.glide_s, 6), "channel": p.channel}
        ev = super().set_param(param, x)  # global: temperature, period noise, loop low-pass (and effects)
        if param == "temperature":
            for e in self.poly.voices:
                e.set_temperature(self.state.temperature)
        return ev

    # ----------------------------------------------------------- audio
    def generate(self, out: np.ndarray) -> np.ndarray:
        """All sounding voices for ``len(out)`` samples, each under its envelope, summed into ``out``."""
        n = len(out)
        busy = self.alloc.busy()
        waiting = [v for v in busy if not self.lines[v].needs_network(n)]  # an attack fills the whole block
        self.poly.active[waiting] = False
        vout = self.poly.generate_voices(n)
        self.poly.active[waiting] = True
        for v in busy:
            line = self.lines[v]
            if not line.idle:
                net = None if v in waiting else vout[v].copy()
                line.process(vout[v], net)
            if self._release_after_attack[v] and not line.playing_attack:
                self._release_after_attack[v] = False
                self.env_target[v] = 0.0
        self.raw = vout
        t = np.arange(1, n + 1)
        rising = self.env_target > self.env
        c = np.where(rising, self.attack_c, self.release_c)
        decay = (1.0 - c)[:, None] ** t[None, :]
        env = self.env_target[:, None] + (self.env - self.env_target)[:, None] * decay
        self.env = env[:, -1].copy()
        mixed = vout * env
        np.sum(mixed, axis=0, out=out)
        self._levels[:] = np.abs(mixed).max(axis=1) if n else 0.0
        for v in busy:  # an attack still to play is not silence
            if self.lines[v].playing_attack or self._release_after_attack[v]:
                self._levels[v] = max(self._levels[v], 1.0)
        for v in self.alloc.update(self._levels, n):
            self.poly.active[v] = False
            self.env[v] = 0.0
            self.lines[v].start(None)
            self._release_after_attack[v] = False
        return out

    def nonfinite_count(self) -> int:
        return sum(e.nonfinite_count for e in self.poly.voices)
