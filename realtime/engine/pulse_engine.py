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
from realtime.engine.sf_tracks import I_HPOS, RING
from realtime.model import local_cond, mulaw
from realtime.model.model_file import ModelFile
from realtime.model.source_filter import EMPHASIS, ORDER, predict

#: the excitation's harmonic-to-noise ratio (dB) unless told otherwise (issue 37: the prototype's 30 dB)
DEFAULT_HNR_DB = 30.0
#: float state: f0 phase (cycles), de-emphasis memory
F_PHASE, F_X_PREV = range(2)


@njit(cache=True, nogil=True)
def pulse_block(fs: np.ndarray, ring: np.ndarray, ints: np.ndarray, ctrl: np.ndarray, a: np.ndarray, g: np.ndarray,
                tonal: bool, hnr_db: float, sample_rate: float, normals: np.ndarray, out: np.ndarray) -> None:
    """Generate ``len(out)`` samples (see the module docstring) filtered by the LPC rows ``a`` (n, ORDER + 1) with
    gains ``g`` (n,) (realtime.engine.sf_tracks.play_tracks); ``normals`` one standard normal per sample."""
    r = 10.0 ** (hnr_db / 10.0)
    h_amp = math.sqrt(r / (1.0 + r)) if tonal else 0.0
    n_amp = math.sqrt(1.0 / (1.0 + r)) if tonal else 1.0
    inv_sr = 1.0 / sample_rate
    for t in range(out.shape[0]):
        ctrl[local_cond.PITCH] += (ctrl[local_cond.PITCH_TARGET] - ctrl[local_cond.PITCH]) * ctrl[local_cond.PITCH_COEFF]
        f0 = 440.0 * 2.0 ** ((ctrl[local_cond.PITCH] - 69.0) / 12.0)
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
        s = g[t] * e + predict(a[t], ring, pos)
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
        self.fs = np.zeros(2)
        self._tonal = {}
        super().__init__(model, seed=seed, max_block=max_block, **kw)
        if self.mulaw_output:
            self.name = "lpc-pulse-mulaw"
        self._normals = np.empty(self.max_block)
        self._a, self._g = np.empty((self.max_block, ORDER + 1)), np.empty(self.max_block)

    def reset(self, seed: int = 0) -> None:
        self.fs[:] = 0.0
        super().reset(seed)

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
        while done < n:
            m = min(self.max_block, n - done)
            z = self._normals[:m]
            self.rng.standard_normal(out=z)
            a, g = self._a[:m], self._g[:m]
            self.envelope_tracks(a, g)
            pulse_block(self.fs, self.sf_ring, self.sf_i, self.ctrl, a, g, self.tonal(int(self.instrument)),
                        self.hnr_db, float(self.sample_rate), z, out[done:done + m])
            if self.mulaw_output:
                out[done:done + m] = mulaw.roundtrip(out[done:done + m])
            done += m

    def _run(self, n, uniforms, forced, out, logits):  # pragma: no cover - _generate_raw does the work
        raise NotImplementedError
