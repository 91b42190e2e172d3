"""The source-filter reference engine (``lpc-pulse``): no network, the envelope bank's synthesis filter driven by a
pulse train at f0 plus white noise. Thread: generator.

It plays what the structure alone carries (issue 37, step 2): the bar the network's excitation has to keep.
Per sample, on the pre-emphasised signal: the excitation ``e_t = g_t * (h * pulse_t + n * noise_t)`` (``pulse``
a band-limited impulse train at the note's f0, every harmonic below Nyquist at equal amplitude, unit RMS;
``noise`` standard normal; ``h^2 / n^2`` the harmonic-to-noise ratio ``hnr_db``, ``h^2 + n^2 = 1``; an unpitched
instrument, one whose bank notes are not tonal, is noise alone), through the all-pole filter ``s_t = e_t + p_t``
(realtime.model.source_filter.predict: ``p_t = -sum_k a_k s_(t-k)``), then de-emphasis. The LPC polynomial and
the gain ``g_t`` come from the model file's envelope bank (realtime.model.envelope) with the timing training
uses (:func:`realtime.model.envelope.tracks_into`): every 1 ms of the note the played (instrument, glided and bent
pitch, velocity) is looked up at its time since key-down and key-up, the LSFs become the next 1 ms's polynomial and
the gain runs linearly to the new knot. The morph mixes two instruments' envelopes (LSFs linearly, gains
geometrically); the expression pedal scales the gain (its level offset, 1 unit = 60 dB).

It shares the engine interface (controller, output stage, watchdog, render, evaluate), so its notes are scored
exactly where the network's are; the noise is one PCG64 normal per sample, so the output does not depend on
block sizes. ``lpc-pulse-mulaw``: the same, its output 8-bit mu-law coded as the network's samples are (the
evaluator's timbre references are coded so: a clean output lacks their codec noise floor). The network's
weights are not used (re-priming does nothing; teacher forcing is refused).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from realtime.engine.base import Engine
from realtime.model import local_cond, mulaw
from realtime.model.envelope import envelope_at, neighbours, update_samples
from realtime.model.model_file import ModelFile
from realtime.model.source_filter import EMPHASIS, ORDER, lsf_to_lpc_into, predict

#: the excitation's harmonic-to-noise ratio (dB) unless told otherwise (issue 37: the prototype's 30 dB)
DEFAULT_HNR_DB = 30.0
#: float state: f0 phase (cycles), gain knots (previous, next), de-emphasis memory
F_PHASE, F_K_PREV, F_K_NEXT, F_X_PREV = range(4)
#: int state: samples since key-down (-1: no note yet), key-up at this many samples after key-down (-1: held),
#: the filter ring's position
I_SINCE_ON, I_OFF_AT, I_HPOS = range(3)
#: the all-pole filter's ring of past pre-emphasised samples (a power of two > ORDER)
RING = 32


@njit(cache=True, nogil=True)
def _lookup(tables, inst: int, pitch: float, vel: float, morph_inst: int, morph_amt: float, tau: int, off_at: int,
            known_at: int, hop: float, idx, w, lsf, lsf2) -> float:
    """The envelope (LSFs into ``lsf``, log gain returned) of the played note ``tau`` samples after key-down,
    released when its key-up (``off_at``) came by ``known_at``; morphed towards ``morph_inst`` by ``morph_amt``."""
    pos_off = (tau - off_at) / hop if 0 <= off_at <= known_at else -1.0
    n = neighbours(tables, inst, pitch, vel, idx, w)
    lg = envelope_at(tables, idx, w, n, tau / hop, pos_off, lsf)
    if morph_amt > 0.0:
        n2 = neighbours(tables, morph_inst, pitch, vel, idx, w)
        lg2 = envelope_at(tables, idx, w, n2, tau / hop, pos_off, lsf2)
        for k in range(lsf.shape[0]):
            lsf[k] = (1.0 - morph_amt) * lsf[k] + morph_amt * lsf2[k]
        lg = (1.0 - morph_amt) * lg + morph_amt * lg2
    return lg


@njit(cache=True, nogil=True)
def pulse_block(tables, fs: np.ndarray, ints: np.ndarray, ctrl: np.ndarray, ring: np.ndarray, a: np.ndarray,
                lsf: np.ndarray, lsf2: np.ndarray, work: np.ndarray, idx: np.ndarray, w: np.ndarray, inst: int,
                vel: float, morph_inst: int, morph_amt: float, tonal: bool, hnr_db: float, hop: int, update: int,
                sample_rate: float, normals: np.ndarray, out: np.ndarray) -> None:
    """Generate ``len(out)`` samples (see the module docstring); ``normals`` one standard normal per sample."""
    r = 10.0 ** (hnr_db / 10.0)
    h_amp = math.sqrt(r / (1.0 + r)) if tonal else 0.0
    n_amp = math.sqrt(1.0 / (1.0 + r)) if tonal else 1.0
    inv_sr = 1.0 / sample_rate
    level = 10.0 ** (3.0 * ctrl[local_cond.LEVEL_OFFSET])  # level units: 1 = 60 dB
    for t in range(out.shape[0]):
        ctrl[local_cond.PITCH] += (ctrl[local_cond.PITCH_TARGET] - ctrl[local_cond.PITCH]) * ctrl[local_cond.PITCH_COEFF]
        pitch = ctrl[local_cond.PITCH]
        g = 0.0
        since = ints[I_SINCE_ON]
        if since >= 0:
            j = since % update
            if j == 0:
                if since == 0:
                    fs[F_K_PREV] = level * math.exp(_lookup(tables, inst, pitch, vel, morph_inst, morph_amt, 0,
                                                            ints[I_OFF_AT], -update, hop, idx, w, lsf, lsf2))
                else:
                    fs[F_K_PREV] = fs[F_K_NEXT]
                fs[F_K_NEXT] = level * math.exp(_lookup(tables, inst, pitch, vel, morph_inst, morph_amt, since + update,
                                                        ints[I_OFF_AT], since, hop, idx, w, lsf, lsf2))
                lsf_to_lpc_into(lsf, a, work)
            g = fs[F_K_PREV] + (fs[F_K_NEXT] - fs[F_K_PREV]) * (j + 1) / update
            ints[I_SINCE_ON] = since + 1
        f0 = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
        ph = fs[F_PHASE] + f0 * inv_sr
        ph -= math.floor(ph)
        fs[F_PHASE] = ph
        e = n_amp * normals[t]
        if h_amp > 0.0:
            k = max(1, int((0.5 * sample_rate - 1.0) / f0))  # harmonics below Nyquist
            den = math.sin(math.pi * ph)
            d = (2 * k + 1) if abs(den) < 1e-9 else math.sin((2 * k + 1) * math.pi * ph) / den
            e += h_amp * 0.5 * (d - 1.0) / math.sqrt(0.5 * k)  # sum of k unit cosines, unit RMS
        pos = ints[I_HPOS]
        s = g * e + predict(a, ring, pos)
        pos = (pos + 1) & (RING - 1)
        ring[pos] = s
        ints[I_HPOS] = pos
        x = s + EMPHASIS * fs[F_X_PREV]
        fs[F_X_PREV] = x
        out[t] = np.float32(x)


class PulseEngine(Engine):
    """The model file's envelope bank played with a pulse train plus noise (no network)."""

    name = "lpc-pulse"

    def __init__(self, model: ModelFile, seed: int = 0, max_block: int = 4096, hnr_db: float = DEFAULT_HNR_DB,
                 mulaw_output: bool = False, **kw) -> None:
        """``hnr_db``: the excitation's harmonic-to-noise ratio (dB); ``mulaw_output``: the output 8-bit mu-law
        coded and decoded, as the network's samples are and as the evaluator codes its timbre references (engine
        name ``lpc-pulse-mulaw``). ValueError when ``model`` has no envelope bank (``python -m models.envelope
        build`` adds one)."""
        bank = model.envelopebank
        if bank is None:
            raise ValueError(f"engine lpc-pulse: the model file {model.path or ''} has no envelope bank "
                             "(python -m models.envelope build adds one)")
        if not np.isfinite(hnr_db):
            raise ValueError(f"engine lpc-pulse: hnr_db must be finite, got {hnr_db}")
        self.bank, self.hnr_db, self.mulaw_output = bank, float(hnr_db), bool(mulaw_output)
        self.fs = np.zeros(4)
        self.pints = np.zeros(3, np.int64)
        self.ring = np.zeros(RING)
        self.a = np.zeros(ORDER + 1)
        self.lsf, self.lsf2 = np.zeros(ORDER), np.zeros(ORDER)
        self.work = np.zeros((2, ORDER + 2))
        self.idx, self.wts = np.zeros(4, np.int64), np.zeros(4)
        self._tonal = {}
        super().__init__(model, seed=seed, max_block=max_block, **kw)
        if self.mulaw_output:
            self.name = "lpc-pulse-mulaw"
        self._normals = np.empty(self.max_block)
        self.update = update_samples(self.sample_rate)

    def reset(self, seed: int = 0) -> None:
        self.fs[:] = 0.0
        self.pints[:] = (-1, -1, 0)
        self.ring[:] = 0.0
        self.a[:] = 0.0
        self.a[0] = 1.0
        super().reset(seed)

    def set_note(self, gate: float | None = None, pitch: float | None = None, glide_s: float | None = None) -> None:
        """As :meth:`Engine.set_note`; the gate opening starts the note's envelope from its key-down, closing it
        starts the release."""
        if gate is not None:
            was, now = self.ctrl[local_cond.GATE_TARGET] > 0.5, gate > 0.5
            if now and not was:
                self.pints[I_SINCE_ON], self.pints[I_OFF_AT] = 0, -1
            elif was and not now and self.pints[I_SINCE_ON] >= 0:
                self.pints[I_OFF_AT] = self.pints[I_SINCE_ON]
        super().set_note(gate, pitch, glide_s)

    def prime_classes(self, classes: np.ndarray, key=None) -> None:
        """Nothing to prime: the filter keeps its own past."""

    def reprime(self, classes: np.ndarray, crossfade: int, key=None) -> None:
        """Nothing to re-prime."""

    def teacher_force(self, classes: np.ndarray) -> np.ndarray:
        raise NotImplementedError("lpc-pulse has no network to teacher-force")

    def tonal(self, instrument: int) -> bool:
        if instrument not in self._tonal:
            self._tonal[instrument] = self.bank.is_tonal(instrument)
        return self._tonal[instrument]

    def _generate_raw(self, out: np.ndarray) -> None:
        n = len(out)
        done = 0
        morph_inst, morph_amt = (self.morph[0], float(self.morph[1])) if self.morph is not None else (0, 0.0)
        while done < n:
            m = min(self.max_block, n - done)
            z = self._normals[:m]
            self.rng.standard_normal(out=z)
            pulse_block(self.bank.tables, self.fs, self.pints, self.ctrl, self.ring, self.a, self.lsf, self.lsf2,
                        self.work, self.idx, self.wts, int(self.instrument), float(self.velocity), int(morph_inst),
                        morph_amt, self.tonal(int(self.instrument)), self.hnr_db, self.bank.hop_samples, self.update,
                        float(self.sample_rate), z, out[done:done + m])
            if self.mulaw_output:
                out[done:done + m] = mulaw.roundtrip(out[done:done + m])
            done += m

    def _run(self, n, uniforms, forced, out, logits):  # pragma: no cover - _generate_raw does the work
        raise NotImplementedError
