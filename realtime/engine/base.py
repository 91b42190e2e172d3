"""The engine interface shared by the Numba and TorchScript engines.

Thread: generator. All control calls (conditioning, note, temperature,
priming) take effect at the next generated sample; callers split blocks at
event positions to place changes exactly. The state (queues, per-layer bias,
local-control state, next input) lives in numpy arrays owned here, so both
engines start from the same numbers and priming is shared.
Random numbers: a PCG64 stream of float64 uniforms, one per sample, so the
output does not depend on block sizes and is identical across engines. With a period-noise
correlation (:meth:`Engine.set_period_noise`, :mod:`realtime.kernel.period_noise`) the stream is of
normals turned into uniforms correlated one f0 period back (the period each sample's lag reads).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from realtime.engine import priming, sf_tracks
from realtime.kernel import aligned, loop_lowpass, period_noise
from realtime.model import level, local_cond, mulaw
from realtime.model.config import LOCAL_CHANNELS, WaveNetConfig
from realtime.model.model_file import ModelFile
from realtime.model.source_filter import ORDER

#: ints[] layout: next input class, glide samples left, non-finite logit count, lag ring position
INT_NEXT, INT_GLIDE, INT_BAD, INT_HPOS = 0, 1, 2, 3
#: sf_f[] layout after sf_tracks' two gain knots: the current short-term prediction, the de-emphasis memory
SF_P, SF_X = 2, 3

#: the per-voice generation state, as attributes of an :class:`Engine` (see :func:`allocate_state`)
STATE_ARRAYS = ("queues", "q_pos", "bias", "bias_target", "bias_step", "ints", "temperature", "ctrl", "hist",
                "sf_f", "sf_i", "sf_lpc", "sf_ring")


def allocate_state(cfg: WaveNetConfig, voices: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Zeroed state arrays of one engine; with ``voices=(N,)`` each gets a leading voice axis.

    queues (sum(d), R) float32 layer input histories; q_pos (L,) ring positions; bias,
    bias_target, bias_step (L, 2R) float32 per-layer bias (conditioning folded in) and its glide;
    ints (4,) (see INT_*); temperature (2,) float64 [the sampling temperature, the probability floor];
    ctrl (local_cond.STATE_SIZE,) float64;
    hist (local_cond.HIST,) float32 the ring of past inputs the lag channel reads; the envelope and filter state of
    a source-filter model (realtime.engine.sf_tracks; unused otherwise): sf_f (4,) float64 [gain knot before,
    after, the current prediction, de-emphasis memory], sf_i (3,) int64 [samples since key-down, key-up,
    ring position], sf_lpc (ORDER + 1,) float64 the current polynomial, sf_ring (sf_tracks.RING,) float64 the
    past pre-emphasised samples.
    """
    r, L = cfg.residual_channels, cfg.n_layers
    f32 = np.float32
    return {  # queue rows and biases are read as 64-byte vectors: cache-line aligned
        "queues": aligned.zeros(voices + (int(sum(cfg.dilations)), r), f32),
        "q_pos": np.zeros(voices + (L,), np.int64),
        "bias": aligned.zeros(voices + (L, 2 * r), f32),
        "bias_target": aligned.zeros(voices + (L, 2 * r), f32),
        "bias_step": aligned.zeros(voices + (L, 2 * r), f32),
        "ints": np.zeros(voices + (4,), np.int64),
        "temperature": np.tile(np.array([1.0, 0.0]), voices + (1,)),
        "ctrl": np.zeros(voices + (local_cond.STATE_SIZE,), np.float64),
        "hist": aligned.zeros(voices + (local_cond.HIST,), f32),
        "sf_f": np.zeros(voices + (4,), np.float64),
        "sf_i": np.zeros(voices + (3,), np.int64),
        "sf_lpc": np.zeros(voices + (ORDER + 1,), np.float64),
        "sf_ring": np.zeros(voices + (sf_tracks.RING,), np.float64),
    }


def pitch_row(table: np.ndarray, pitch: float, interp: bool) -> np.ndarray:
    """Pitch-embedding row (P,) for MIDI ``pitch``, clipped to 0..127: with ``interp`` the two nearest
    rows linearly interpolated (models.wavenet.interpolated_rows), else the nearest row."""
    p = float(np.clip(pitch, 0.0, 127.0))
    if not interp:
        return table[int(round(p))]
    p32 = np.float32(p)  # as training's float32 pitches
    lo = int(np.floor(p32))
    f = p32 - np.float32(lo)
    return table[lo] * (np.float32(1.0) - f) + table[min(lo + 1, 127)] * f


class Engine(ABC):
    """Sample-by-sample WaveNet generation with block-wise control."""

    name = "base"
    prime_cache_size = 64  # cached keyed primes (prime_classes; ~R x sum(dilations) floats each: 262 KB at R32)

    def __init__(self, model: ModelFile, seed: int = 0, max_block: int = 4096,
                 attack_s: float = 0.002, release_s: float = 0.05,
                 state: dict[str, np.ndarray] | None = None) -> None:
        """``state``: the arrays of :func:`allocate_state` to use (e.g. one voice's views into a
        batch, see :class:`realtime.engine.poly_engine.PolyEngine`); by default the engine allocates its own."""
        self.model = model
        self.cfg = cfg = model.config
        #: a source-filter model: the network's samples are the excitation of the envelope bank's filter
        self.source_filter = cfg.source_filter is not None
        if self.source_filter and model.envelopebank is None:
            raise ValueError(f"model {model.path or 'in memory'}: a source-filter model without its envelope bank")
        self.sample_rate: int = cfg.sample_rate
        self.max_block = int(max_block)
        w = model.weights
        self.w = w
        self.dilations = np.asarray(cfg.dilations, dtype=np.int64)
        self.q_off = np.concatenate(([0], np.cumsum(self.dilations)[:-1])).astype(np.int64)
        st = allocate_state(cfg) if state is None else state
        for name in STATE_ARRAYS:
            setattr(self, name, st[name])
        self.loc_idx = np.asarray([LOCAL_CHANNELS.index(c) for c in cfg.conditioning.local], np.int64)
        self.ctrl[:] = local_cond.new_state(60.0, self.sample_rate, attack_s, release_s)
        self._ctrl_rest = self.ctrl.copy()
        self._uniforms = np.empty(self.max_block, np.float64)
        self.period_noise = 0.0  # see set_period_noise
        self._pn_ring, self._pn_ints, self._pn_acc = period_noise.new_state()
        self._pn_normals = np.empty(self.max_block, np.float64)
        self._pn_ctrl = np.empty_like(self.ctrl)
        self._pn_feats = np.empty((self.max_block, local_cond.N_LOCAL), np.float32)
        self._empty_forced = np.zeros(0, np.int64)
        self._empty_logits = np.zeros((0, 256), np.float32)
        self._xfade_old = np.zeros(0, np.float32)  # pending crossfade tail (old state's continuation)
        self._xfade_pos = 0
        self._prime_cache: dict[Any, priming.PrimeState] = {}
        bank = model.envelopebank
        self.tracks = sf_tracks.Tracks(bank, self.sample_rate) if bank is not None else None
        self.pitch, self.instrument, self.velocity = 60.0, 0, 100
        self.morph: tuple[int, float] | None = None
        self.reset(seed)

    # ----------------------------------------------------------- conditioning
    def global_vector(self, pitch: float, instrument: int, velocity: float,
                      morph: tuple[int, float] | None = None) -> np.ndarray:
        """Global conditioning vector (G,) for MIDI ``pitch``, instrument id, MIDI ``velocity``.

        ``morph=(other_instrument, amount)`` interpolates the instrument
        embedding towards another instrument (amount 0..1).
        """
        c = self.cfg.conditioning
        parts = []
        if c.pitch_dim:
            parts.append(pitch_row(self.w["pitch_embed"], pitch, c.pitch_interp))
        if c.instrument_dim:
            emb = self.w["instrument_embed"]
            e = emb[self._instrument_index(instrument)]
            if morph is not None:
                e = (1.0 - morph[1]) * e + morph[1] * emb[self._instrument_index(morph[0])]
            parts.append(e)
        if c.velocity:
            parts.append(np.array([velocity / 127.0], np.float32))
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)

    def embed_pitch(self, note: int, bend: float) -> float:
        """The pitch the embedding should say for ``note`` bent by ``bend`` semitones: the bent pitch
        for a model that interpolates its pitch embeddings (``pitch_interp``), else the note."""
        return note + bend if self.cfg.conditioning.pitch_interp else float(note)

    def set_bend(self, note: int, bend: float, glide_s: float) -> None:
        """The pitch wheel (generator thread): the f0 input heads for ``note`` + ``bend`` semitones and,
        for a pitch_interp model, the pitch embedding too, both over about ``glide_s`` seconds."""
        self.set_note(pitch=note + bend, glide_s=glide_s)
        if self.cfg.conditioning.pitch_interp:
            self.set_conditioning(pitch=note + bend, glide_samples=int(glide_s * self.sample_rate))

    def _instrument_index(self, instrument: int) -> int:
        n = self.cfg.conditioning.n_instruments
        if not 0 <= int(instrument) < n:
            raise ValueError(f"instrument {instrument} out of range 0..{n - 1}")
        return int(instrument)

    def layer_bias(self, gvec: np.ndarray) -> np.ndarray:
        """Per-layer bias (L, 2R): the dilated conv bias plus the global projection, once per change."""
        if gvec.size == 0:
            return self.w["b_dil"].copy()
        return (self.w["b_dil"] + np.einsum("g,lgo->lo", gvec, self.w["w_glob"])).astype(np.float32)

    def set_conditioning(self, pitch: float | None = None, instrument: int | None = None,
                         velocity: float | None = None, morph: tuple[int, float] | None | bool = False,
                         glide_samples: int = 0) -> None:
        """Change global conditioning; glides linearly over ``glide_samples`` (0 = next sample).

        Arguments left as None keep their value; ``morph=False`` keeps the morph, None clears it.
        """
        if pitch is not None:
            self.pitch = float(pitch)
        if instrument is not None:
            self.instrument = self._instrument_index(instrument)
        if velocity is not None:
            self.velocity = float(velocity)
        if morph is not False:
            self.morph = morph  # type: ignore[assignment]
        target = self.layer_bias(self.global_vector(self.pitch, self.instrument, self.velocity, self.morph))
        self.bias_target[:] = target
        if glide_samples <= 0:
            self.bias[:] = target
            self.bias_step[:] = 0
            self.ints[INT_GLIDE] = 0
        else:
            self.bias_step[:] = (target - self.bias) / np.float32(glide_samples)
            self.ints[INT_GLIDE] = int(glide_samples)
        self._state_changed()

    def set_note(self, gate: float | None = None, pitch: float | None = None, glide_s: float | None = None) -> None:
        """Local control: gate target (0..1), pitch target (MIDI, fractional for bends), glide time (s)."""
        if gate is not None:
            was, now = self.ctrl[local_cond.GATE_TARGET] > 0.5, gate > 0.5
            if now and not was:  # the envelope bank's note starts from its key-down, or its release
                sf_tracks.key_down(self.sf_i)
            elif was and not now:
                sf_tracks.key_up(self.sf_i)
            self.ctrl[local_cond.GATE_TARGET] = float(gate)
        if glide_s is not None:
            self.ctrl[local_cond.PITCH_COEFF] = local_cond.one_pole_coeff(glide_s, self.sample_rate)
        if pitch is not None:
            self.ctrl[local_cond.PITCH_TARGET] = float(pitch)

    def set_level(self, params: np.ndarray, attack: bool = True) -> None:
        """Loudness envelope of the note now starting (realtime.model.level params: attack_s, peak, sustain,
        decay_s, release_s); ``attack=False`` (legato) keeps the current level, changing only where it heads."""
        local_cond.start_level(self.ctrl, np.asarray(params, np.float64), self.sample_rate, attack)

    def play_level(self, instrument: int, pitch: float, velocity: float, attack: bool = True) -> None:
        """:meth:`set_level` with the level bank's envelope of this note (:meth:`note_level`). Thread: generator."""
        self.set_level(self.note_level(instrument, pitch, velocity), attack)

    def set_expression(self, offset: float) -> None:
        """Move the level input by ``offset`` level units (<= 0: quieter, 1/3 = 20 dB) from the next sample."""
        self.ctrl[local_cond.LEVEL_OFFSET] = float(offset)

    def note_level(self, instrument: int, pitch: float, velocity: float) -> np.ndarray:
        """The model's level-bank envelope for a note (realtime.model.level.DEFAULT without a bank)."""
        bank = self.model.levelbank
        return level.DEFAULT.copy() if bank is None else bank.lookup(instrument, pitch, velocity)

    def set_prob_floor(self, floor: float) -> None:
        """LPCNet's probability floor (0..0.01; 0 = off): each class's probability is lowered by ``floor`` before
        the draw (realtime.kernel.generate.sample_row); from the next sample. Thread: generator."""
        if not 0.0 <= floor <= 0.01:
            raise ValueError(f"probability floor must be in 0..0.01, got {floor}")
        self.temperature[1] = float(floor)

    def set_temperature(self, t: float) -> None:
        """Sampling temperature (0 = argmax); takes effect at the next sample."""
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {t}")
        self.temperature[0] = float(t)

    def set_period_noise(self, rho: float) -> None:
        """Correlate the sampler's noise with its value one f0 period earlier by ``rho`` (0..0.95; 0 =
        independent uniforms, the PCG64 stream as it is); from the next block. Thread: generator."""
        self.period_noise = period_noise.check_rho(rho)

    def set_loop_lowpass(self, a: float) -> None:
        """The low-pass inside the feedback loop (realtime/kernel/loop_lowpass.py), amount ``a`` in 0..A_MAX,
        0 = off; from the next sample, and kept across :meth:`reset`. A source-filter model has none (its loop is
        the filter's; the kernel does not run the low-pass for it, so the f0 period it reads is not shortened
        either): 0. Thread: generator."""
        loop_lowpass.set_amount(self.ctrl, 0.0 if self.source_filter else a, self.sample_rate)
        for i in (local_cond.LOOP_A, local_cond.LOOP_REL):
            self._ctrl_rest[i] = self.ctrl[i]

    def envelope_tracks(self, out_a: np.ndarray, out_g: np.ndarray) -> None:
        """The envelope bank's LPC rows (n, ORDER + 1) and excitation gains (n,) for the next ``len(out_g)``
        samples of the sounding note (realtime.engine.sf_tracks.play_tracks), advancing its timing; call once per
        block, before the block is generated (the control state is read as it is then). Thread: generator."""
        self.tracks.fill(self.ctrl, self.sf_f, self.sf_i, self.sf_lpc, self.instrument, self.velocity, self.morph,
                         out_a, out_g)

    def draw_uniforms(self, u: np.ndarray) -> None:
        """Fill ``u`` with the sampler's uniforms for the next ``len(u)`` samples (generator thread):
        the PCG64 stream, or with :attr:`period_noise` its normals correlated one period back, the
        period of each sample read from a copy of the control state as the kernel will advance it."""
        if self.period_noise == 0.0:
            self.rng.random(out=u)
            self._pn_ints[period_noise.FILLED] = 0  # a correlation switched on later starts without a past
            return
        m = len(u)
        e, feats = self._pn_normals[:m], self._pn_feats[:m]
        self.rng.standard_normal(out=e)
        self._pn_ctrl[:] = self.ctrl
        local_cond.fill(self._pn_ctrl, float(self.sample_rate), feats)
        period_noise.correlate(e, feats[:, local_cond.PERIOD], self.period_noise, self._pn_ring, self._pn_ints,
                               self._pn_acc, u)

    # ---------------------------------------------------------------- priming
    def reset(self, seed: int = 0) -> None:
        """Zero the queues, reseed the RNG, restore rest control and default conditioning (pitch 60, instrument 0)."""
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._pn_ring[:], self._pn_ints[:], self._pn_acc[:] = 0.0, 0, 0.0
        self.queues[:] = 0
        self.q_pos[:] = 0
        self.ints[:] = 0
        self.ints[INT_NEXT] = mulaw.SILENCE
        self.hist[:], self.ints[INT_HPOS] = local_cond.new_lag_ring()
        self.sf_f[:] = 0.0
        self.sf_i[:], self.sf_lpc[:] = sf_tracks.new_state()[1:]
        self.sf_ring[:] = 0.0
        self.ctrl[:] = self._ctrl_rest
        self._xfade_old = np.zeros(0, np.float32)
        self._prime_cache.clear()
        self.set_conditioning(60.0, 0, 100, None)
        self._state_changed()

    def prime(self, waveform: np.ndarray) -> None:
        """Fill the queues from a waveform at the model rate (float in [-1, 1]) with one parallel pass."""
        self.prime_classes(mulaw.encode(np.asarray(waveform, np.float32)))

    def prime_classes(self, classes: np.ndarray, key: Any = None) -> None:
        """Fill the queues from mu-law classes (one parallel pass); the last class is the next input.

        The pass runs under the current conditioning and control state, in the caller's thread (10-25 ms
        on the default model): a note-on uses a prepared state instead (:meth:`reprime_state`,
        :mod:`realtime.engine.prime_bank`). With a ``key`` the result is cached: the next prime with the
        same key is a copy, computed under the conditioning of the key's first use.
        """
        hit = self._prime_cache.get(key) if key is not None else None
        if hit is None:
            hit = priming.prime_state(self.w, self.dilations, classes, self.bias, self.ctrl, self.sample_rate,
                                      self.loc_idx, self.source_filter)
            if key is not None:
                if len(self._prime_cache) >= self.prime_cache_size:
                    self._prime_cache.pop(next(iter(self._prime_cache)))
                self._prime_cache[key] = hit
        self.apply_prime(hit)

    def apply_prime(self, state: priming.PrimeState) -> None:
        """Put a prepared prime state into the engine: copies (~270 KB on the default model, tens of
        microseconds), no network pass; the control state, conditioning and RNG stay as they are."""
        self.queues[:] = state.queues
        self.q_pos[:] = 0
        self.ints[INT_NEXT] = state.next_class
        self.hist[:], self.ints[INT_HPOS] = state.lag_ring, state.lag_pos
        if state.sf_ring is not None:
            self.sf_ring[:] = state.sf_ring
            self.sf_i[sf_tracks.I_HPOS] = sf_tracks.RING - 1
            self.sf_f[SF_X] = state.sf_x
        loop_lowpass.start(self.ctrl, float(mulaw.DECODE_TABLE[state.next_class]))
        self._state_changed()

    def reprime(self, classes: np.ndarray, crossfade: int, key: Any = None) -> None:
        """Splice a snippet into the queues; the next ``crossfade`` samples fade from the old state.

        The old state's continuation (same uniforms, same controls) is
        generated first, then the queues are primed from ``classes``; the fade
        is applied to the output only, the network continues from its own samples.
        """
        old = self._old_continuation(crossfade)
        self.prime_classes(classes, key)
        self._xfade_old, self._xfade_pos = old, 0

    def reprime_state(self, state: priming.PrimeState, crossfade: int) -> None:
        """:meth:`reprime` from a prepared state (:mod:`realtime.engine.prime_bank`): what a note-on does.

        Its cost on the generator thread is the ``crossfade`` samples of the old state's continuation
        (80 samples at 5 ms: ~1 ms on the default model) and the copy; it takes effect at the next sample,
        as every control change does.
        """
        if not self.takes_primes:
            return
        old = self._old_continuation(crossfade)
        self.apply_prime(state)
        self._xfade_old, self._xfade_pos = old, 0

    @property
    def takes_primes(self) -> bool:
        """Whether a prepared prime means anything to this engine: not when it defines its own
        :meth:`reprime` (an engine without the network's state, such as lpc-pulse, re-primes nothing);
        :meth:`reprime_state` then does nothing either, and no prime bank is prepared for it."""
        return type(self).reprime is Engine.reprime

    def _old_continuation(self, crossfade: int) -> np.ndarray:
        """The next ``crossfade`` samples of the current state (clipped to max_block), generated without
        advancing anything: the RNG, period noise, controls, bias and glide are restored afterwards."""
        crossfade = int(max(0, min(crossfade, self.max_block)))
        old = np.empty(crossfade, np.float32)
        if crossfade:
            rng_state = self.rng.bit_generator.state
            pn = (self._pn_ring.copy(), self._pn_ints.copy(), self._pn_acc.copy())
            ctrl = self.ctrl.copy()
            bias, glide = self.bias.copy(), int(self.ints[INT_GLIDE])
            sf = (self.sf_f.copy(), self.sf_i.copy(), self.sf_lpc.copy(), self.sf_ring.copy())
            self._generate_raw(old)
            self.sf_f[:], self.sf_i[:], self.sf_lpc[:], self.sf_ring[:] = sf
            self.rng.bit_generator.state = rng_state
            self._pn_ring[:], self._pn_ints[:], self._pn_acc[:] = pn
            self.ctrl[:] = ctrl
            self.bias[:] = bias
            self.ints[INT_GLIDE] = glide
            self._state_changed()
        return old

    # ------------------------------------------------------------- generation
    def generate(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Generate ``n`` samples (float32, model rate); writes into ``out`` when given."""
        if out is None:
            out = np.empty(n, np.float32)
        self._generate_raw(out[:n])
        self._apply_crossfade(out[:n])
        return out[:n]

    def _apply_crossfade(self, out: np.ndarray) -> None:
        """Fade the freshly generated ``out`` in over a pending reprime crossfade tail."""
        n = len(out)
        k = len(self._xfade_old) - self._xfade_pos
        if k > 0:
            m = min(k, n)
            pos = self._xfade_pos + np.arange(m)
            fade = (pos + 1.0) / (len(self._xfade_old) + 1.0)
            out[:m] = fade * out[:m] + (1.0 - fade) * self._xfade_old[self._xfade_pos:self._xfade_pos + m]
            self._xfade_pos += m

    def _generate_raw(self, out: np.ndarray) -> None:
        n = len(out)
        done = 0
        while done < n:
            m = min(self.max_block, n - done)
            u = self._uniforms[:m]
            self.draw_uniforms(u)
            self._run(m, u, self._empty_forced, out[done:done + m], self._empty_logits)
            done += m

    def teacher_force(self, classes: np.ndarray) -> np.ndarray:
        """Run the given input classes through the network; return logits (n, 256). For tests."""
        classes = np.ascontiguousarray(classes, dtype=np.int64)
        n = len(classes)
        logits = np.empty((n, 256), np.float32)
        out = np.empty(n, np.float32)
        done = 0
        while done < n:
            m = min(self.max_block, n - done)
            u = self._uniforms[:m]
            self.rng.random(out=u)
            self._run(m, u, classes[done:done + m], out[done:done + m], logits[done:done + m])
            done += m
        return logits

    @property
    def nonfinite_count(self) -> int:
        """How many samples so far had NaN/Inf logits (the sample was held instead)."""
        return int(self.ints[INT_BAD])

    def _state_changed(self) -> None:
        """Hook: engines that mirror the state elsewhere (a GPU) re-upload it."""

    @abstractmethod
    def _run(self, n: int, uniforms: np.ndarray, forced: np.ndarray, out: np.ndarray, logits: np.ndarray) -> None:
        """Generate ``n`` samples into ``out`` with the given uniforms (and optional forcing/logits)."""
