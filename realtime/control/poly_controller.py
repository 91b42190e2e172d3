"""Polyphonic MIDI meaning: notes -> voices of a PolyEngine through the VoiceAllocator.

Thread: generator (live) or the render loop. Used when the preset's
``sound.voices`` > 1; the monophonic :class:`realtime.control.controller.Controller`
stays as it is otherwise. Each voice gets its own note (global pitch and f0),
velocity, gate and an amplitude envelope (attack on note on, ``release_ms``
after note off); a released voice is freed once its enveloped output is
silent, and a note on with every voice busy steals the oldest. Program
change, pitch bend, morph and temperature apply to every voice.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from realtime.control.controller import BEND_GLIDE_S, Controller, expression_offset, velocity_level
from realtime.control.presets import Preset
from realtime.control.voices import VoiceAllocator
from realtime.engine.poly_engine import PolyEngine
from realtime.engine.prime_bank import SILENCE
from realtime.model.one_pole import one_pole_coeff
from realtime.sound.output_stage import OutputStage


class PolyController(Controller):
    """Drives ``poly`` (its voices share one batched kernel call per block)."""

    def __init__(self, poly: PolyEngine, stage: OutputStage, preset: Preset) -> None:
        self.poly = poly
        super().__init__(poly.voice(0), stage, preset)
        sr = poly.sample_rate
        self.alloc = VoiceAllocator(poly.n_voices, silence_level=1e-4, silence_hold=int(0.01 * sr),
                                    max_release=int(max(0.05, 4 * preset.sound.release_ms / 1000.0) * sr))
        for e in poly.voices:  # self.primes (voice 0's) serves every voice: they share the weights
            e.set_temperature(self.state.temperature)
        poly.active[:] = False
        self.env = np.zeros(poly.n_voices, np.float64)         # per-voice amplitude envelope
        self.env_target = np.zeros(poly.n_voices, np.float64)
        self.attack_c = one_pole_coeff(0.002, sr)
        self.release_c = one_pole_coeff(max(preset.sound.release_ms, 1.0) / 1000.0, sr)
        stage.set_targets(env=1.0)  # the voices carry the envelopes
        self._levels = np.zeros(poly.n_voices, np.float32)

    def _voice_engines(self) -> list:
        return self.poly.voices

    # ---------------------------------------------------------------- notes
    def note_on(self, note: int, velocity: int) -> dict[str, Any]:
        s = self.state
        a = self.alloc.note_on(note)
        v = a.voice
        e = self.poly.voice(v)
        self.poly.active[v] = True
        if note in s.held:
            s.held.remove(note)
        s.held.append(note)
        s.note, s.velocity = note, velocity
        e.set_note(gate=1.0, pitch=note + s.bend, glide_s=0.0)
        e.play_level(s.instrument, note, velocity)
        e.set_expression(expression_offset(s.expression))
        morph = None
        if s.morph > 0:
            morph = (self.morph_to if self.morph_to is not None else (s.instrument + 1) % len(self.instruments),
                     s.morph)
        e.set_conditioning(pitch=e.embed_pitch(note, s.bend), instrument=s.instrument, velocity=velocity,
                           morph=morph)
        e.set_temperature(s.temperature)
        if self.preset.model.reprime != "off":
            k = self.primes.index(s.instrument, note, velocity)
            if k is not None:  # a prepared state (realtime.engine.prime_bank): a copy, no network pass
                e.reprime_state(self.primes.get(k), self.crossfade)
                s.reprimes += 1
        level = velocity_level(self.preset.sound, velocity)
        self.env_target[v] = level
        ev = {"param": "note_on", "value": note, "velocity": velocity, "voice": v}
        if a.stolen is not None:
            ev["stolen"] = a.stolen
        return ev

    def note_off(self, note: int) -> dict[str, Any]:
        s = self.state
        if note in s.held:
            s.held.remove(note)
        s.note = s.held[-1] if s.held else None
        v = self.alloc.note_off(note)
        if v is not None:
            self.poly.voice(v).set_note(gate=0.0)
            self.env_target[v] = 0.0
        return {"param": "note_off", "value": note, "voice": v}

    def all_notes_off(self) -> dict[str, Any]:
        for v in self.alloc.release_all():
            self.poly.voice(v).set_note(gate=0.0)
            self.env_target[v] = 0.0
        self.state.held.clear()
        self.state.note = None
        return {"param": "all_notes_off", "value": 0}

    def recover(self) -> None:
        """Watchdog recovery: re-prime every sounding voice from the seed bank (or from silence)."""
        s = self.state
        for v in self.alloc.busy():
            k = self.primes.index(s.instrument, self.alloc.voices[v].note, s.velocity)
            self.poly.voice(v).reprime_state(self.primes.get(SILENCE if k is None else k), self.crossfade)
        s.reprimes += 1

    # ------------------------------------------------- shared parameters
    def program_change(self, program: int) -> dict[str, Any] | None:
        mode = self.preset.model.reprime
        self.preset.model.reprime = "off" if mode == "note_on_program" else mode  # voice 0 alone: no
        try:
            ev = super().program_change(program)  # sets state.instrument (and voice 0's conditioning)
        finally:
            self.preset.model.reprime = mode
        if ev is not None:
            for v in self.alloc.busy():
                e = self.poly.voice(v)
                e.set_conditioning(instrument=self.state.instrument, glide_samples=self.smooth)
                e.play_level(self.state.instrument, self.alloc.voices[v].note, self.state.velocity, attack=False)
            if mode == "note_on_program":
                self.recover()  # every sounding voice re-primed from the new instrument's snippet
        return ev

    def pitch_bend(self, value: int) -> dict[str, Any]:
        s = self.state
        s.bend = value / 8192.0 * self.preset.sound.bend_range
        for v in self.alloc.busy():
            self.poly.voice(v).set_bend(self.alloc.voices[v].note, s.bend, BEND_GLIDE_S)
        return {"param": "bend", "value": round(s.bend, 5)}

    def set_param(self, param: str, x: float) -> dict[str, Any]:
        ev = super().set_param(param, x)  # state, stage gain and voice 0
        s = self.state
        for e in self.poly.voices:
            if param == "temperature":
                e.set_temperature(s.temperature)
            elif param == "expression":
                e.set_expression(expression_offset(x))
            elif param == "morph" and e is not self.engine:
                other = self.morph_to if self.morph_to is not None else (s.instrument + 1) % len(self.instruments)
                e.set_conditioning(morph=(other, x) if x > 0 else None, glide_samples=self.smooth)
        return ev

    # ----------------------------------------------------------- audio
    def generate(self, out: np.ndarray) -> np.ndarray:
        """All sounding voices for ``len(out)`` samples, each under its envelope, summed into ``out``."""
        n = len(out)
        vout = self.poly.generate_voices(n)
        t = np.arange(1, n + 1)
        rising = self.env_target > self.env
        c = np.where(rising, self.attack_c, self.release_c)
        decay = (1.0 - c)[:, None] ** t[None, :]
        env = self.env_target[:, None] + (self.env - self.env_target)[:, None] * decay
        self.env = env[:, -1].copy()
        mixed = vout * env
        np.sum(mixed, axis=0, out=out)
        self._levels[:] = np.abs(mixed).max(axis=1) if n else 0.0
        for v in self.alloc.update(self._levels, n):
            self.poly.active[v] = False
            self.env[v] = 0.0
        return out

    def nonfinite_count(self) -> int:
        return sum(e.nonfinite_count for e in self.poly.voices)
