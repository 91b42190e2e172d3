"""MIDI meaning: raw MIDI bytes -> engine conditioning and output-stage targets.

Thread: generator (live) or the render loop (offline); the same code drives
both, so a take re-renders exactly. Monophonic, last-note priority, legato
glide. Every applied change is returned as an event dict for the session log.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from realtime.control import gm
from realtime.control.attack import AttackLine, attack_audio
from realtime.control.midi_parse import _CHANNEL_LEN, MidiParser
from realtime.control.presets import Preset, SoundSection, instrument_names
from realtime.engine.base import Engine
from realtime.engine.prime_bank import SILENCE, PrimeBank
from realtime.kernel import loop_lowpass, period_noise
from realtime.model import mulaw
from realtime.sound.output_stage import OutputStage

BEND_GLIDE_S = 0.005  # a pitch-wheel move glides this long (s), so a coarse wheel does not click


@dataclass
class ControlState:
    """What the musician is doing now (read by the status line)."""

    held: list[int] = field(default_factory=list)   # held notes, most recent last
    note: int | None = None                          # sounding note (MIDI)
    velocity: int = 100
    instrument: int = 0
    bend: float = 0.0                                # semitones
    temperature: float = 0.9
    morph: float = 0.0
    gain_db: float = 0.0
    glide_s: float = 0.04
    expression: float = 1.0                          # 0..1: the level input, 1 = as recorded
    period_noise: float = 0.0                        # the sampler's noise correlation one f0 period back
    loop_lowpass: float = 0.0                        # the low-pass inside the feedback loop (0..0.5)
    reprimes: int = 0


class Controller:
    """Applies MIDI messages to an engine and an output stage according to a preset."""

    def __init__(self, engine: Engine, stage: OutputStage, preset: Preset) -> None:
        self.engine, self.stage, self.preset = engine, stage, preset
        self.instruments = list(engine.cfg.conditioning.instruments)
        preset.check_instruments(self.instruments)
        snd = preset.sound
        self.state = ControlState(temperature=preset.model.temperature, gain_db=snd.gain_db,
                                  glide_s=snd.glide_ms / 1000.0, period_noise=preset.model.period_noise,
                                  loop_lowpass=preset.model.loop_lowpass)
        self.morph_to = self.instruments.index(snd.morph_to) if snd.morph_to else None
        self.parser = MidiParser()
        self.learn: str | None = None                  # parameter waiting for MIDI learn
        self.learned: tuple[int, str] | None = None    # (cc, parameter) once learned
        self.seedbank = engine.model.seedbank
        self.programs = preset.program_map(self.instruments)  # [midi.programs], if it is for this model
        self.ch = 1                                    # the channel of the message being applied (1-16)
        self._note_ch = 1                              # the channel of the sounding note
        #: one line per GM family the model lacks that a program change asked for (the status line and
        #: render summary say each once): "program 56 (brass): the model has no brass; plays lead, the closest"
        self.program_notes: list[str] = []
        self._noted: set[str] = set()
        self.channel_inst: dict[int, int] = {}         # one voice: each channel's instrument, taken at its notes
        self.sustain: dict[int, bool] = {}             # each channel's sustain pedal (CC 64) is down
        self.sustained: set[tuple[int, int]] = set()   # (channel, note) released while its pedal was down
        self.drums = self.instruments.index("drums") if "drums" in self.instruments else None
        self.bank_attack = instrument_names(preset.model.bank_attack)
        rf = engine.cfg.receptive_field
        self.line = AttackLine(rf if self.seedbank is None else max(rf, self.seedbank.snippets.shape[1]))
        self._attacks: dict[int, np.ndarray] = {}
        self._net = np.zeros(0, np.float32)
        #: the re-prime states, prepared ahead (live) or made at first use (render): a note-on only copies one
        self.primes = PrimeBank(engine)
        self.crossfade = int(preset.model.reprime_crossfade_ms / 1000.0 * engine.sample_rate)
        self.smooth = max(1, int(0.01 * engine.sample_rate))  # 10 ms for morph changes
        engine.set_temperature(self.state.temperature)
        #: the session's audio input (realtime/sound/audio_input.py; Session.attach_input), None without one
        self.input = None
        self._continuing = False  # continue mode: the network goes on from a capture (no key held)
        self.unpitched = instrument_names(preset.model.unpitched)
        self._set_pitched_loop()
        stage.set_targets(env=0.0, level=1.0, gain=10 ** (snd.gain_db / 20.0))
        stage.set_release(snd.release_ms / 1000.0)

    def _voice_engines(self) -> list[Engine]:
        """The engines whose sampler settings follow this controller (one here; every voice when polyphonic)."""
        return [self.engine]

    def _set_pitched_loop(self) -> None:
        """The period-noise correlation and the loop low-pass (the preset's, or their CCs') for a pitched
        instrument, neither for an unpitched one; the preset's probability floor for any."""
        pitched = self.instruments[self.state.instrument] not in self.unpitched
        for e in self._voice_engines():
            e.set_period_noise(self.state.period_noise if pitched else 0.0)
            e.set_loop_lowpass(self.state.loop_lowpass if pitched else 0.0)
            e.set_prob_floor(self.preset.model.prob_floor)

    # ---------------------------------------------------------------- audio
    def generate(self, out: np.ndarray) -> np.ndarray:
        """Generate ``len(out)`` samples of the instrument into ``out`` (model rate)."""
        n, line = len(out), self.line
        if line.idle:
            return self.engine.generate(n, out)
        net = None
        if line.needs_network(n):  # else the recorded attack fills the block and the network waits
            if len(self._net) < n:
                self._net = np.zeros(n, np.float32)
            net = self.engine.generate(n, self._net[:n])
        return line.process(out, net)

    def watch(self, out: np.ndarray, dog) -> list[str]:
        """The watchdog (realtime.sound.watchdog) on the block just generated; a recovery when it asks.
        Returns the reasons (logged by the session)."""
        inst = self.instruments[self.state.instrument]
        reason = dog.check(out, self.nonfinite_count(), self.state.note is not None,
                           inst in dog.noise_ok, inst in dog.decay_ok)
        if reason is None:
            return []
        self.recover()
        return [reason]

    def nonfinite_count(self) -> int:
        """Samples so far whose logits were not finite."""
        return self.engine.nonfinite_count

    # ---------------------------------------------------------------- input
    def feed(self, data) -> list[dict[str, Any]]:
        """Parse raw MIDI bytes and apply every complete message; returns the applied events."""
        events = []
        for msg in self.parser.feed(data):
            ev = self.apply(msg)
            if ev is not None:
                events.append(ev)
        return events

    def apply(self, msg: list[int]) -> dict[str, Any] | None:
        """Apply one complete MIDI message; None if it maps to nothing or is malformed."""
        msg = _as_message(msg)
        if msg is None:
            return None
        status = msg[0]
        kind, ch = status & 0xF0, (status & 0x0F) + 1
        if status >= 0xF0 or (self.preset.midi.channel and ch != self.preset.midi.channel):
            return None
        self.ch = ch
        if kind == 0x90 and msg[2] > 0:
            return self.note_on(msg[1], msg[2]) | {"midi": msg}
        if kind == 0x80 or kind == 0x90:
            return self.note_off(msg[1]) | {"midi": msg}
        if kind == 0xC0:
            ev = self.program_change(msg[1])
            return None if ev is None else ev | {"midi": msg}
        if kind == 0xE0:
            return self.pitch_bend((msg[2] << 7 | msg[1]) - 8192) | {"midi": msg}
        if kind == 0xB0:
            ev = self.control_change(msg[1], msg[2])
            return None if ev is None else ev | {"midi": msg}
        return None

    # ---------------------------------------------------------------- notes
    def note_on(self, note: int, velocity: int) -> dict[str, Any]:
        s, e = self.state, self.engine
        was_sounding = s.note is not None and not self._continuing  # a continuation ends at the next note
        self._continuing = False
        want = self._channel_instrument(self.ch)
        if want is not None and want != s.instrument:  # one voice: it plays the instrument of this note's channel
            self._set_instrument(want)
        self._note_ch = self.ch
        self.sustained.discard((self.ch, note))
        if note in s.held:
            s.held.remove(note)
        s.held.append(note)
        s.note, s.velocity = note, velocity
        snd = self.preset.sound
        level = velocity_level(snd, velocity)
        self.stage.set_targets(env=1.0, level=level)
        if was_sounding:  # legato: glide, no re-attack
            glide = int(s.glide_s * e.sample_rate)
            e.set_note(gate=1.0, pitch=note + s.bend, glide_s=s.glide_s)
            e.play_level(s.instrument, note, velocity, attack=False)
            e.set_conditioning(pitch=e.embed_pitch(note, s.bend), velocity=velocity, glide_samples=glide)
            return {"param": "note_on", "value": note, "velocity": velocity, "legato": True}
        e.set_note(gate=1.0, pitch=note + s.bend, glide_s=0.0)
        e.play_level(s.instrument, note, velocity)
        e.set_conditioning(pitch=e.embed_pitch(note, s.bend), velocity=velocity)
        primed = self._prime_from_input()  # prime mode: the input's last prime_ms, not the seed bank
        k = self._reprime() if self.preset.model.reprime != "off" and not primed else None
        # the recorded attack (a drum hit) first, when the network goes on from that very snippet
        bank = self.instruments[s.instrument] in self.bank_attack
        self.line.start(attack_audio(self.seedbank, k, self._attacks) if bank else None)
        return {"param": "note_on", "value": note, "velocity": velocity, "legato": False} | (
            {"prime": "input"} if primed else {})

    def note_off(self, note: int) -> dict[str, Any]:
        s, e = self.state, self.engine
        if self.sustain.get(self.ch) and note in s.held:  # the pedal holds it until it comes up
            self.sustained.add((self.ch, note))
            return {"param": "note_off", "value": note, "sustained": True}
        if note in s.held:
            s.held.remove(note)
        if note == s.note and not self._continuing:  # a continuation goes on until the next capture or note
            if s.held:  # last-note priority: fall back to the previous held note
                prev = s.held[-1]
                s.note = prev
                e.set_note(pitch=prev + s.bend, glide_s=s.glide_s)
                e.play_level(s.instrument, prev, s.velocity, attack=False)
                e.set_conditioning(pitch=e.embed_pitch(prev, s.bend), glide_samples=int(s.glide_s * e.sample_rate))
            else:
                s.note = None
                e.set_note(gate=0.0)
                self.stage.set_targets(env=0.0)
        return {"param": "note_off", "value": note}

    def sustain_pedal(self, down: bool) -> dict[str, Any]:
        """CC 64 on this channel: down holds the notes released from now on; up releases them."""
        ch = self.ch
        was, self.sustain[ch] = self.sustain.get(ch, False), down
        if was and not down:
            for c, note in sorted(k for k in self.sustained if k[0] == ch):
                self.sustained.discard((c, note))
                self.note_off(note)
        return {"param": "sustain", "value": int(down)}

    def all_notes_off(self) -> dict[str, Any]:
        self._continuing = False
        self.state.held.clear()
        self.sustained.clear()
        self.state.note = None
        self.engine.set_note(gate=0.0)
        self.stage.set_targets(env=0.0)
        return {"param": "all_notes_off", "value": 0}

    def recover(self) -> None:
        """Watchdog recovery: re-prime from the seed bank (crossfaded), else restart from silence."""
        if self.seedbank is not None and self.state.note is not None:
            self._reprime()
            return
        self.engine.reprime_state(self.primes.get(SILENCE), self.crossfade)
        self.state.reprimes += 1

    def _prime_from_input(self, audio: np.ndarray | None = None) -> bool:
        """Re-prime from the audio input (issue 40): ``audio``, else in prime mode the input's last prime_ms
        (None when it is quieter than [input] gate_db). One prime pass under the note's conditioning, on this
        thread (the generator's, live: ~10-25 ms, ``input.prime_s``); returns whether it primed."""
        inp = self.input
        if inp is None:
            return False
        if audio is None:
            if inp.mode != "prime":
                return False
            audio = inp.prime_audio()
            if audio is None:
                return False
        t0 = time.perf_counter()
        self.engine.reprime(mulaw.encode(audio), self.crossfade)
        inp.prime_s = time.perf_counter() - t0
        self.state.reprimes += 1
        return True

    def _input_param(self, param: str, x: float) -> dict[str, Any]:
        """input_mode, input_level and input_capture (the continue mode's footswitch: press captures the
        input, release primes the network from the capture at its pitch and opens the gate)."""
        from realtime.sound.audio_input import estimate_f0, midi_of_hz, rms_db

        inp, s, e = self.input, self.state, self.engine
        if inp is None:  # no input: logged, nothing to change
            return {"param": param, "value": round(x, 6)}
        if param == "input_mode":
            return {"param": param, "value": inp.set_mode_from(x)}
        if param == "input_level":
            inp.level_db = -60.0 + 66.0 * x if x > 0 else -math.inf
            return {"param": param, "value": round(float(inp.level_db), 3)}
        pressed = x >= 0.5
        if inp.mode != "continue" or getattr(self, "alloc", None) is not None:  # continue plays one voice
            return {"param": param, "value": int(pressed), "mode": inp.mode}
        if pressed:
            if inp.capture_from is None:
                inp.capture_from = inp.total
                if self._continuing:  # a new capture ends the continuation
                    self._continuing, s.note = False, None
                    e.set_note(gate=0.0)
                    self.stage.set_targets(env=0.0)
            return {"param": param, "value": 1}
        if inp.capture_from is None:
            return {"param": param, "value": 0}
        n, inp.capture_from = inp.total - inp.capture_from, None
        audio = inp.last(min(n, e.cfg.receptive_field))
        if len(audio) == 0 or rms_db(audio) < inp.cfg.gate_db:
            return {"param": param, "value": 0, "continued": None}
        f0 = estimate_f0(inp.last(min(n, 2048)), e.sample_rate)
        pitch = float(np.clip(midi_of_hz(f0), 0.0, 127.0)) if f0 else float(s.note if s.note is not None else e.pitch)
        note = int(round(pitch))
        s.held.clear()
        s.note = note
        e.set_note(gate=1.0, pitch=pitch, glide_s=0.0)
        e.play_level(s.instrument, note, s.velocity)
        e.set_conditioning(pitch=e.embed_pitch(note, pitch - note), velocity=s.velocity)
        self.stage.set_targets(env=1.0, level=velocity_level(self.preset.sound, s.velocity))
        self._prime_from_input(audio)
        self._continuing = True
        return {"param": param, "value": 0, "continued": round(pitch, 4)}

    def _reprime(self) -> int | None:
        s = self.state
        pitch = s.note if s.note is not None else int(round(self.engine.pitch))
        k = self.primes.index(s.instrument, pitch, s.velocity)
        if k is not None:  # the snippet's prepared state (realtime.engine.prime_bank): a copy, no network pass
            self.engine.reprime_state(self.primes.get(k), self.crossfade)
            s.reprimes += 1
        return k

    # ------------------------------------------------------- other messages
    def _program_instrument(self, program: int) -> int | None:
        """The instrument ``program`` plays: the preset's [midi.programs] (None: not in it), else the
        program modulo the model's instruments. A GM family the model lacks is noted once."""
        progs = self.programs
        if not progs:
            return program % len(self.instruments)
        if program not in progs:
            return None
        name = progs[program]
        sub = gm.substitution(program, name, self.instruments)
        if sub is not None and sub[0] not in self._noted:
            self._noted.add(sub[0])
            self.program_notes.append(sub[1])
        return self.instruments.index(name)

    def _channel_instrument(self, ch: int) -> int | None:
        """One voice: the instrument channel ``ch`` last chose (the drums on the drum channel); None if it
        chose none (the voice keeps what it plays)."""
        if ch == self.preset.midi.drum_channel and self.drums is not None:
            return self.drums
        return self.channel_inst.get(ch)

    def program_change(self, program: int) -> dict[str, Any] | None:
        if self.ch == self.preset.midi.drum_channel and self.drums is not None:
            return None  # GM drum kits: the model has one
        inst = self._program_instrument(program)
        if inst is None:
            return None
        self.channel_inst[self.ch] = inst
        if self.state.note is not None and self._note_ch != self.ch:  # another channel's note: its next note
            return {"param": "instrument", "value": inst, "name": self.instruments[inst], "channel": self.ch}
        return self._set_instrument(inst)

    def _set_instrument(self, inst: int) -> dict[str, Any]:
        self.state.instrument = inst
        self.engine.set_conditioning(instrument=inst, glide_samples=self.smooth)
        self._set_pitched_loop()
        if self.state.note is not None:  # the sounding note heads for the new instrument's level
            self.engine.play_level(inst, self.state.note, self.state.velocity, attack=False)
        if self.preset.model.reprime == "note_on_program" and self.state.note is not None:
            self._reprime()
        return {"param": "instrument", "value": inst, "name": self.instruments[inst]}

    def pitch_bend(self, value: int) -> dict[str, Any]:
        s = self.state
        s.bend = value / 8192.0 * self.preset.sound.bend_range
        if s.note is not None:
            self.engine.set_bend(s.note, s.bend, BEND_GLIDE_S)
        return {"param": "bend", "value": round(s.bend, 5)}

    def control_change(self, cc: int, value: int) -> dict[str, Any] | None:
        if cc in (120, 123):
            return self.all_notes_off()
        if cc == 64 and 64 not in self.preset.midi.cc:  # the sustain pedal (unless a preset binds CC 64)
            return self.sustain_pedal(value >= 64)
        if self.learn is not None:  # MIDI learn: the first CC that moves is bound to the parameter
            for old in [k for k, v in self.preset.midi.cc.items() if v == self.learn]:
                del self.preset.midi.cc[old]
            self.preset.midi.cc[cc] = self.learn
            self.learned, self.learn = (cc, self.learn), None
        param = self.preset.midi.cc.get(cc)
        if param is None:
            return None
        x = value / 127.0
        return self.set_param(param, x)

    def set_param(self, param: str, x: float) -> dict[str, Any]:
        """Set a mapped parameter from a normalised position ``x`` in 0..1."""
        if param.startswith("fx") and getattr(self, "effects", None) is not None:  # fxN.PARAM: the effect chain
            return self.effects.set_param(param, x)
        if param.startswith("input_"):  # the audio input (issue 40)
            return self._input_param(param, x)
        s, snd = self.state, self.preset.sound
        if param == "temperature":
            s.temperature = snd.temperature_min + x * (snd.temperature_max - snd.temperature_min)
            self.engine.set_temperature(s.temperature)
            return {"param": "temperature", "value": round(s.temperature, 6)}
        if param == "morph":
            s.morph = x
            other = self.morph_to if self.morph_to is not None else (s.instrument + 1) % len(self.instruments)
            self.engine.set_conditioning(morph=(other, x) if x > 0 else None, glide_samples=self.smooth)
            return {"param": "morph", "value": round(x, 6)}
        if param == "gain":
            s.gain_db = -60.0 + 66.0 * x if x > 0 else -np.inf
            self.stage.set_targets(gain=0.0 if x <= 0 else 10 ** (s.gain_db / 20.0))
            return {"param": "gain", "value": round(float(s.gain_db), 3)}
        if param == "glide":
            s.glide_s = x * snd.max_glide_ms / 1000.0
            return {"param": "glide", "value": round(s.glide_s, 6)}
        if param == "expression":  # the network plays softer (its level input), not just a gain
            s.expression = x
            self.engine.set_expression(expression_offset(x))
            return {"param": "expression", "value": round(x, 6)}
        if param == "period_noise":  # 0 = independent noise (breathier), up = the noise follows the pitch
            s.period_noise = x * period_noise.RHO_MAX
            self._set_pitched_loop()
            return {"param": "period_noise", "value": round(s.period_noise, 6)}
        if param == "loop_lowpass":  # 0 = off, up = the upper harmonics die faster (a damped string)
            s.loop_lowpass = x * loop_lowpass.A_MAX
            self._set_pitched_loop()
            return {"param": "loop_lowpass", "value": round(s.loop_lowpass, 6)}
        raise ValueError(f"unknown parameter {param!r}")


def velocity_level(snd: SoundSection, velocity: int) -> float:
    """The output stage's level (linear, 1 at velocity 127) for a note of MIDI ``velocity``."""
    return 1.0 - snd.velocity_to_level * (1.0 - velocity / 127.0)


def stage_gain_db(snd: SoundSection, velocity: int) -> float:
    """The output stage's steady gain (dB) on a held note of ``velocity``: preset gain times level."""
    return snd.gain_db + 20.0 * math.log10(max(velocity_level(snd, velocity), 1e-6))


#: the level input's range under the expression pedal: pedal up = as recorded, down = 30 dB softer
EXPRESSION_RANGE = 0.5


def expression_offset(x: float) -> float:
    """Level-input offset (level units) for an expression position ``x`` in 0..1."""
    return (x - 1.0) * EXPRESSION_RANGE


def _as_message(msg: Any) -> list[int] | None:
    """``msg`` as a list of ints if it is a well-formed MIDI message (status 0x80-0xFF, a channel
    message with its exact number of data bytes 0-127), else None."""
    try:
        m = list(msg)
    except TypeError:  # not iterable
        return None
    if not m or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in m):
        return None
    m = [int(b) for b in m]
    if not 0x80 <= m[0] <= 0xFF:
        return None
    if m[0] < 0xF0 and len(m) != 1 + _CHANNEL_LEN[m[0] & 0xF0]:
        return None
    return m if all(0 <= b <= 0x7F for b in m[1:]) else None
