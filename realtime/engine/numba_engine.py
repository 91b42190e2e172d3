"""The Numba CPU engine: whole blocks per call into the compiled kernel. Thread: generator.

Precisions of the residual stack's weights (the bulk of the bytes read per
sample; the embedding and conditioning stay float32, and so does the output head
except in bf16dot):

* ``fp32`` — exact, bit-identical to the reference kernel;
* ``int8`` — int8 with one float32 scale per output column (4x fewer bytes);
* ``bf16`` — bfloat16 stored as uint16, widened in the loop (2x fewer bytes);
* ``bf16dot`` — bfloat16 weights (the output head's too) *and* activations, multiplied by the
  CPU's AVX-512 BF16 dot-product instruction with float32 accumulation (see
  :mod:`realtime.kernel.bf16dot`); only on CPUs that have it, and for R, S multiples of 16.
* ``int8dot`` — int8 weights with per-column scales (the output head's too) *and* activations
  quantised per vector to 16-bit codes, multiplied by the CPU's int8 dot-product instructions with
  exact int32 sums (see :mod:`realtime.kernel.int8dot`): AVX-512 VNNI, AVX-VNNI (256-bit) or AVX2
  (``vpmaddwd``), whichever is widest on the compile target, all with the same bits; a quarter of
  fp32's bytes, so it is the fastest with AVX-512 (~1.9x bf16dot on R64/S128); needs AVX2, R, S
  multiples of 16 (at most 512).

Reduced precisions change the logits by at most :data:`LOGIT_TOLERANCE` of the model's logit
scale (see tests/realtime/kernel/test_precision.py for how that bound was chosen); bf16 is 2-4x more
accurate than int8 and, on an AVX-512 machine, about as fast; bf16dot's error is
about twice bf16's, and it is 1.5-1.9x faster than bf16 where the CPU has it; int8dot's is
close to int8's.
:func:`choose_engine` picks the fastest exact-enough precision for a model on
this machine (``--engine auto``); :func:`engine_from_name` builds it. "This machine" is Numba's compile
target (realtime.kernel.isa): ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` when set, else the CPU.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from realtime.engine.base import Engine
from realtime.kernel import aligned, bf16dot, int8dot
from realtime.kernel.generate import POW2_NEG, float32_to_bf16, generate_block, quantize_int8
from realtime.model import local_cond, mulaw
from realtime.model.model_file import ModelFile
from realtime.model.source_filter import ORDER

PRECISIONS = ("fp32", "int8", "bf16", "bf16dot", "int8dot")

#: max |logit - fp32 logit| / max |fp32 logit| allowed for a reduced precision (teacher-forced, the same
#: sequence for both): ~1.5x the worst measured on random and trained models (see tests/realtime/kernel/test_precision.py).
#: The absolute error grows with the logit scale as training sharpens a model; this ratio does not, and
#: choose_engine() still checks it per model.
LOGIT_TOLERANCE = {"int8": 0.018, "bf16": 0.008, "bf16dot": 0.012, "int8dot": 0.021}
#: the order choose_engine() prefers them in: most exact first
BY_ACCURACY = ("fp32", "bf16", "bf16dot", "int8", "int8dot")


def engine_name(precision: str) -> str:
    """The engine name of a precision: ``numba`` for fp32, else ``numba-<precision>``."""
    return "numba" if precision == "fp32" else f"numba-{precision}"


ENGINE_NAMES = tuple(engine_name(p) for p in BY_ACCURACY)


def preset_engine_name(engine) -> str:
    """The engine name (as in presets) that rebuilds ``engine``: a Numba engine's or batch's precision, or the
    engine's own name."""
    precision = getattr(engine, "precision", None)
    return engine.name if precision is None else engine_name(precision)


def precision_error(precision: str, r: int, s: int) -> str | None:
    """Why ``precision`` cannot run a model with R residual / S skip channels on this machine, or None."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} ({', '.join(PRECISIONS)})"
    if precision == "bf16dot":
        ok, why = bf16dot.available()
        return (None if ok else f"bf16dot needs AVX-512 BF16: {why}") or bf16dot.shape_error(r, s)
    if precision == "int8dot":
        ok, why = int8dot.available()
        return (None if ok else f"int8dot needs AVX2: {why}") or int8dot.shape_error(r, s)
    return None


def usable_precisions(r: int, s: int) -> tuple[str, ...]:
    """The precisions that run a model with R residual / S skip channels on this machine."""
    return tuple(p for p in PRECISIONS if precision_error(p, r, s) is None)


def kernel_weights(w: dict[str, np.ndarray], loc_idx: np.ndarray, dilations: np.ndarray, q_off: np.ndarray,
                   sample_rate: float, precision: str = "fp32") -> tuple:
    """The kernel's weights tuple (see :func:`realtime.kernel.generate.generate_voices`) at ``precision``.

    Packed shapes: bf16dot w_dil (L, R, 2R/16, 16), w_rs (L, R/2, (R+S)/16, 16), head (S/2, n/16, 16)
    uint32 (realtime.kernel.bf16dot.pack_matrix); int8dot w_dil (L, 2, R/4 + 3, 2R/16, 16) (one matrix per
    tap), w_rs (L, R/4 + 3, (R+S)/16, 16), head (S/4 + 3, n/16, 16) int32 (realtime.kernel.int8dot.pack_matrix).
    Every array starts on a cache line (realtime.kernel.aligned).
    """
    w_dil, w_rs = w["w_dil"], w["w_rs"]
    L, R = w_dil.shape[0], w_rs.shape[1]
    err = precision_error(precision, R, w_rs.shape[2] - R)
    if err:
        raise ValueError(err)
    w_out1, w_out2 = w["w_out1"], w["w_out2"]
    s_dil = s_rs = np.zeros((L, 0), np.float32)
    if precision == "int8":
        w_dil, s_dil = quantize_int8(w_dil)
        w_rs, s_rs = quantize_int8(w_rs)
    elif precision == "bf16":
        w_dil, w_rs = float32_to_bf16(w_dil), float32_to_bf16(w_rs)
    elif precision == "bf16dot":
        w_dil, w_rs, w_out1, w_out2 = (bf16dot.pack_matrix(a) for a in (w_dil, w_rs, w_out1, w_out2))
    elif precision == "int8dot":  # the dilated convolution as two matrices, one per tap: (L, 2, ...)
        w_dil = np.stack([int8dot.pack_matrix(w_dil[:, :R], int8dot.ZP_SIGNED),
                          int8dot.pack_matrix(w_dil[:, R:], int8dot.ZP_SIGNED)], axis=1)
        w_rs = int8dot.pack_matrix(w_rs, int8dot.ZP_SIGNED)
        # int8 in the output head too: it costs 0.0033 nats/sample of teacher-forced NLL on the trained model
        # (a bf16 logits matrix: 0.0006, but 7 % slower, below 60x TorchScript on R64); see realtime/README.md
        w_out1, w_out2 = int8dot.pack_matrix(w_out1, int8dot.ZP_RELU), int8dot.pack_matrix(w_out2, int8dot.ZP_RELU)
    c = aligned.copy  # cache-line aligned: the kernels' 64-byte vector loads never straddle two lines
    arrays = {"embed": c(w["embed"]), "w_dil": c(w_dil), "s_dil": c(s_dil), "w_loc": c(w["w_loc"]),
              "loc_idx": loc_idx, "w_rs": c(w_rs), "s_rs": c(s_rs), "b_res": c(w["b_res"]), "b_skip": c(w["b_skip"]),
              "w_out1": c(w_out1), "b_out1": c(w["b_out1"]), "w_out2": c(w_out2), "b_out2": c(w["b_out2"])}
    # ordered by the names, so the names and the tuple cannot drift apart
    return tuple(arrays[k] for k in KERNEL_WEIGHT_NAMES) + (mulaw.DECODE_TABLE, dilations, q_off,
                                                             float(sample_rate), POW2_NEG)


#: the names of the first entries of the kernel's weights tuple (:func:`kernel_weights`), in the order
#: :func:`realtime.kernel.generate.generate_voices` unpacks them
KERNEL_WEIGHT_NAMES = ("embed", "w_dil", "s_dil", "w_loc", "loc_idx", "w_rs", "s_rs", "b_res", "b_skip", "w_out1",
                       "b_out1", "w_out2", "b_out2")
#: the weights the kernel streams once per sample (all but the embedding, of which it reads one row, and the
#: few int64 local-conditioning indices)
STREAMED = tuple(k for k in KERNEL_WEIGHT_NAMES if k not in ("embed", "loc_idx"))


def weight_bytes_per_sample(weights: tuple) -> int:
    """Bytes of weights the kernel reads per generated sample: every weight once, one embedding row.

    (Not counted: the per-voice state — per-layer bias, queues — and the relu-skipped head rows.)
    """
    named = dict(zip(KERNEL_WEIGHT_NAMES, weights))
    embed = named["embed"]
    return int(embed.shape[1] * embed.itemsize + sum(named[k].nbytes for k in STREAMED))


#: the engine state arrays (realtime.engine.base.allocate_state) the kernel's state tuple starts with, in its order
KERNEL_STATE = ("queues", "q_pos", "bias", "bias_target", "bias_step", "ints", "ctrl", "temperature", "hist", "sf_f",
                "sf_i", "sf_ring")


def scratch(voices: tuple[int, ...], r: int, s: int, max_block: int,
            source_filter: bool = False) -> tuple[np.ndarray, ...]:
    """The kernel's scratch arrays (feats, h, z, acc, o1, logits, probs, xq, tmp, wb, sf_a, sf_g), leading axes
    ``voices``, cache-line aligned; sf_a and sf_g (a source-filter model's per-sample LPC rows and gains) hold no
    samples unless ``source_filter``."""
    e = lambda *shape: aligned.zeros(voices + shape, np.float32)  # noqa: E731
    n = max(2 * r, r + s)
    m = max_block if source_filter else 0
    return (e(max_block, local_cond.N_LOCAL), e(2 * r), e(r), e(r + s), e(s), e(256), e(256), e(r), e(n), e(4, n),
            np.zeros(voices + (m, ORDER + 1)), np.zeros(voices + (m,)))


class NumbaEngine(Engine):
    """Fast WaveNet on one CPU core; releases the GIL while generating."""

    name = "numba"

    def __init__(self, model: ModelFile, seed: int = 0, max_block: int = 4096, precision: str = "fp32",
                 weights: tuple | None = None, **kw) -> None:
        """``precision``: one of :data:`PRECISIONS`; ``weights``: a prebuilt
        :func:`kernel_weights` tuple to share (the voices of a PolyEngine); ``kw`` go to :class:`Engine`."""
        super().__init__(model, seed=seed, max_block=max_block, **kw)
        cfg = self.cfg
        self.precision = precision
        self.name = engine_name(precision)
        if weights is None:
            weights = kernel_weights(self.w, self.loc_idx, self.dilations, self.q_off, self.sample_rate, precision)
        self._weights = weights
        self._state = tuple(getattr(self, k) for k in KERNEL_STATE) + scratch(
            (), cfg.residual_channels, cfg.skip_channels, self.max_block, self.source_filter)
        self._sf_a, self._sf_g = self._state[-2:]

    def kernel_array(self, name: str) -> np.ndarray:
        """The array the kernel reads for weight ``name`` (see :data:`KERNEL_WEIGHT_NAMES`): a cache-line
        aligned copy (or the packed form) of ``self.w[name]``, so writing to ``self.w`` changes nothing
        here. For tests and diagnostics."""
        return self._weights[KERNEL_WEIGHT_NAMES.index(name)]

    @property
    def weight_bytes_per_sample(self) -> int:
        return weight_bytes_per_sample(self._weights)

    def _run(self, n, uniforms, forced, out, logits):
        if self.source_filter:
            self.envelope_tracks(self._sf_a[:n], self._sf_g[:n])
        if out.flags.c_contiguous:
            generate_block(n, self._weights, self._state, uniforms, forced, out, logits)
        else:
            tmp = np.empty(n, np.float32)
            generate_block(n, self._weights, self._state, uniforms, forced, tmp, np.ascontiguousarray(logits))
            out[:] = tmp


def probe_rates(model: ModelFile, seconds: float = 0.3, precisions: tuple[str, ...] | None = None) -> dict[str, float]:
    """Single-voice samples/s of each precision (default: those usable here) on this machine: best
    block rate, blocks interleaved across the precisions (so a noisy neighbour affects them alike),
    ~``seconds`` per precision."""
    if precisions is None:
        precisions = usable_precisions(model.config.residual_channels, model.config.skip_channels)
    engines = {}
    for p in precisions:
        e = NumbaEngine(model, seed=0, max_block=1024, precision=p)
        e.set_note(gate=1.0, pitch=60)
        e.generate(64)  # compile / warm up
        engines[p] = e
    best = dict.fromkeys(precisions, 0.0)
    spent = dict.fromkeys(precisions, 0.0)
    n = 256
    while min(spent.values()) < seconds:
        for p, e in engines.items():
            t0 = time.perf_counter()
            e.generate(n)
            dt = time.perf_counter() - t0
            spent[p] += dt
            best[p] = max(best[p], n / dt)
    return best


class LogitError(NamedTuple):
    """How far a precision's logits (nats) are from fp32's along one teacher-forced sequence."""

    max_abs: float  #: max |logit - fp32 logit|
    scale: float  #: max |fp32 logit|: the model's logit scale, which training sharpens

    @property
    def relative(self) -> float:
        """``max_abs / scale``: the figure :data:`LOGIT_TOLERANCE` bounds."""
        return self.max_abs / self.scale if self.scale > 0 else float("inf")

    def __str__(self) -> str:
        return f"{self.relative:.3g} ({self.max_abs:.3g} nats of {self.scale:.3g})"


def compare_logits(test: np.ndarray, fp32: np.ndarray) -> LogitError:
    """The :class:`LogitError` of ``test`` logits against ``fp32`` logits of the same inputs."""
    return LogitError(float(np.abs(test - fp32).max()), float(np.abs(fp32).max()))


def logit_error(model: ModelFile, precision: str, n: int = 2000, seed: int = 0) -> LogitError:
    """Logits of ``precision`` vs fp32, teacher-forced along an fp32-generated sequence of ``n`` samples."""
    ref = NumbaEngine(model, seed=seed)
    ref.set_note(gate=1.0, pitch=60.0)
    audio = ref.generate(n)
    inputs = np.concatenate(([mulaw.SILENCE], mulaw.encode(audio)[:-1]))
    out = []
    for p in ("fp32", precision):
        e = NumbaEngine(model, seed=seed, precision=p)
        e.set_note(gate=1.0, pitch=60.0)
        out.append(e.teacher_force(inputs))
    return compare_logits(out[1], out[0])


def choose_engine(model: ModelFile, seconds: float = 0.3, min_gain: float = 1.1) -> tuple[str, str]:
    """Pick the fastest exact-enough CPU engine for ``model`` on this machine by a quick timed probe.

    Returns ``(name, reason)`` with ``name`` one of :data:`ENGINE_NAMES`. Preference goes to
    accuracy (:data:`BY_ACCURACY`): a less exact precision is chosen only if
    it is at least ``min_gain`` times faster than the choice so far and its teacher-forced logits stay
    within :data:`LOGIT_TOLERANCE` of fp32's (relative to their scale) on this model. Takes ~1-2 s
    (plus Numba compilation the first time).
    """
    rates = probe_rates(model, seconds)
    best, notes = "fp32", []
    cfg = model.config
    for p in BY_ACCURACY[1:]:
        if p not in rates:
            notes.append(f"{p} unusable: {precision_error(p, cfg.residual_channels, cfg.skip_channels)}")
            continue
        gain = rates[p] / rates[best]
        if gain < min_gain:
            notes.append(f"{p} {gain:.2f}x of {best} (< {min_gain})")
            continue
        err = logit_error(model, p, n=1000)
        if not err.relative <= LOGIT_TOLERANCE[p]:
            notes.append(f"{p} relative logit error {err} > {LOGIT_TOLERANCE[p]}")
            continue
        notes.append(f"{p} {gain:.2f}x faster than {best}, relative logit error {err} <= {LOGIT_TOLERANCE[p]}")
        best = p
    name = engine_name(best)
    speeds = ", ".join(f"{p} {r:,.0f}" for p, r in rates.items())
    reason = f"{name}: samples/s {speeds} (x real time {rates[best] / model.config.sample_rate:.2f}); " + \
        "; ".join(notes)
    return name, reason


def engine_from_name(name: str, model: ModelFile, seed: int = 0, **kw) -> NumbaEngine:
    """Build a Numba engine by name (:data:`ENGINE_NAMES`); a clear ValueError if this machine or
    model cannot run it."""
    precision = name.partition("-")[2] or "fp32"
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {name!r} ({', '.join(ENGINE_NAMES)})")
    cfg = model.config
    err = precision_error(precision, cfg.residual_channels, cfg.skip_channels)
    if err:
        raise ValueError(f"engine {name}: {err}")
    return NumbaEngine(model, seed=seed, precision=precision, **kw)
