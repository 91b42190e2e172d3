"""Training on free-running trajectories: the reference pieces (free run, segments, losses) that
models.trajectory.train and models.trajectory.kernel share.

A step takes one MIDI pitch and every tonal training note of it, teacher-forces each (parallel
forward, no gradient) up to a start point, lets the network run free for ``n`` samples exactly as an
engine does (a hard draw by inverse CDF at the temperature; the lag input read from its own output), and
scores the free run against the real continuation by log-mel spectrum; the usual cross-entropy on
ordinary crops keeps it anchored. The draws are hard; the gradient is the straight-through one of the
expected class. It flows from each sample to the loss and, through the lag input (a smooth function
of the sample: its companded value times LAG_GAIN), on to later periods. Through the input
embedding it does not: neighbouring classes' embeddings are unrelated vectors, and a gradient along
their differences grows to 1e9 or more within a few hundred samples (models/experiments/LOG.md, "Training on its
trajectories"). :func:`free_run` is the autograd graph of it, one sample at a time (``--kernel torch``,
and the reference models.trajectory.kernel's Numba kernels are tested against; they are the default,
about 5x faster a note-sample all told). Thread: training (one process, one torch thread).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F

from models.train import class_values, mel_matrix, mel_power
from models.wavenet import WaveNet
from realtime.kernel import loop_lowpass as lp
from realtime.kernel import period_noise
from realtime.model import local_cond, mulaw
from realtime.model.config import LOCAL_CHANNELS
from realtime.model.level import note_level

#: teacher-forced samples before a free run (>= the receptive field plus the longest dilation)
PREFIX = 4096
#: d(decoded sample) / d(class) at each class (the last: 0): the straight-through slope of the audio
DECODE_SLOPE = np.append(np.diff(mulaw.DECODE_TABLE), 0.0).astype(np.float32)


@functools.cache
def class_value_table() -> np.ndarray:
    """local_cond.class_value of every class (256,): a sample as the lag input reads it (float32)."""
    return np.array([local_cond.class_value(k) for k in range(256)], np.float32)


def local_slots(local) -> tuple[list[int], int]:
    """A model's local inputs (names, in its order) as columns of local_cond's feature rows, and the
    lag's place among them (-1: no lag input)."""
    local = list(local)
    return [LOCAL_CHANNELS.index(c) for c in local], (local.index("lag") if "lag" in local else -1)


def lag_taps(period: float) -> tuple[int, float]:
    """The lag's two taps for a period (samples): it reads the samples ``n`` and ``n + 1`` back, mixed
    ``1 - frac`` / ``frac`` (realtime.model.local_cond._tap)."""
    n = int(min(max(period, 1.0), local_cond.HIST - 3))
    return n, float(period - n)


def layer_globals(model: WaveNet, pitch: float, instruments, velocities) -> torch.Tensor:
    """Every layer's global conditioning for notes of one ``pitch`` (MIDI) and these instruments and
    velocities (0..1): (L, B, 2R), differentiable."""
    b = len(instruments)
    gvec = model.global_vector(torch.full((b,), float(pitch)), torch.as_tensor(instruments),
                               torch.as_tensor(velocities, dtype=torch.float32))
    return torch.stack([proj(gvec) for proj in model.global_proj])


def free_features(feats: torch.Tensor, prefix: int, lag_slot: int) -> torch.Tensor:
    """The local features (B, P+n, C) over the free run, the lag's column zeroed (the run computes it
    from its own samples): (B, n, C), a copy."""
    free = feats[:, prefix:].clone()
    if lag_slot >= 0:
        free[:, :, lag_slot] = 0.0
    return free


def param_views(m: WaveNet) -> dict[str, torch.Tensor]:
    """The parameters in the engines' layout (differentiable views): Wd (L, 2R, 2R) rows [x(t-d); x(t)],
    bd (L, 2R), Wrs (L, R, R+S) [res | skip], br (L, R), bs (S,) summed, Wl (L, C, 2R), the head."""
    n = range(len(m.dilations))
    return dict(
        emb=m.embed.weight,
        Wd=torch.stack([torch.cat((m.convs[i].weight[:, :, 0].T, m.convs[i].weight[:, :, 1].T), 0) for i in n]),
        bd=torch.stack([m.convs[i].bias for i in n]),
        Wrs=torch.stack([torch.cat((m.res[i].weight[:, :, 0].T, m.skip[i].weight[:, :, 0].T), 1) for i in n]),
        br=torch.stack([m.res[i].bias for i in n]),
        bs=sum(m.skip[i].bias for i in n),
        Wl=torch.stack([m.local_proj[i].weight[:, :, 0].T for i in n]),
        W1=m.out1.weight[:, :, 0].T, b1=m.out1.bias, W2=m.out2.weight[:, :, 0].T, b2=m.out2.bias)


def make_step(r: int, n_layers: int, temperature: float):
    """One incremental step over a batch: (input embedding (B,R), layer inputs one dilation back (L,B,R),
    conditioning (L,B,2R), uniforms (B,), weights) -> (drawn class (B,), the expected class minus its
    value (B,; zero, carries the straight-through gradient), this step's layer inputs (L,B,R), logits)."""
    def step(xin, past, cond, u, Wd, Wrs, br, bs, W1, b1, W2, b2):
        x, xs, sk = xin, [], bs
        for i in range(n_layers):
            xs.append(x)
            h = torch.cat((past[i], x), 1) @ Wd[i] + cond[i]
            z = torch.tanh(h[:, :r]) * torch.sigmoid(h[:, r:])
            rs = z @ Wrs[i]
            sk = sk + rs[:, r:]
            x = x + rs[:, :r] + br[i]
        logits = F.relu(F.relu(sk) @ W1 + b1) @ W2 + b2
        p = F.softmax(logits / temperature, 1)
        k = torch.searchsorted(torch.cumsum(p.detach(), 1), u.unsqueeze(1)).clamp(max=255).squeeze(1)
        q = p @ torch.arange(256, dtype=p.dtype)
        return k, q - q.detach(), torch.stack(xs), logits
    return step


def prefix_layer_inputs(v: dict, dilations, inputs: torch.Tensor, feats: torch.Tensor,
                        glob: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's input over a teacher-forced prefix: inputs (B,P) classes, feats (B,P,C), glob (L,B,2R)
    -> L tensors (B,P,R) (zeros before the prefix, as an engine's queues start)."""
    r = v["emb"].shape[1]
    x = v["emb"][inputs]
    out = []
    for i, d in enumerate(dilations):
        out.append(x)
        xp = F.pad(x, (0, 0, d, 0))[:, :x.shape[1]]
        h = torch.cat((xp, x), 2) @ v["Wd"][i] + feats @ v["Wl"][i] + (glob[i] + v["bd"][i])[:, None]
        z = torch.tanh(h[..., :r]) * torch.sigmoid(h[..., r:])
        x = x + (z @ v["Wrs"][i])[..., :r] + v["br"][i]
    return out


@dataclasses.dataclass
class Segments:
    """Notes of one pitch cut around their free-run start: inputs (B, P+1) classes (input t is sample t-1),
    feats (B, P+n, N_LOCAL) (the lag filled over the prefix from the real inputs), real (B, n) the real
    continuation, period (samples)."""
    inputs: np.ndarray
    feats: np.ndarray
    real: np.ndarray
    period: float


def cut_segments(notes, starts, pitch: float, n: int, sample_rate: int, rng: np.random.Generator,
                 prefix: int = PREFIX, levels: bool = False, loop_lowpass: float = 0.0) -> Segments:
    """``levels``: the level channel follows each note's own envelope (realtime.model.level.note_level), as
    training crops' do; else the default envelope (models without a level input ignore it).
    ``loop_lowpass``: the features (period, f0 phase) an engine plays with that loop low-pass on."""
    ins, feats, real = [], [], []
    for note, s in zip(notes, starts):
        seg = np.zeros(prefix + n + 1, np.float32)
        b0 = s - prefix - 1
        lo, hi = max(b0, 0), min(s + n, len(note.audio))
        seg[lo - b0:hi - b0] = note.audio[lo:hi]
        f = local_cond.features_for_note(prefix + n, note.onset - (s - prefix), note.release - (s - prefix),
                                         float(pitch), sample_rate, float(rng.random()),
                                         level_params=note_level(note, sample_rate) if levels else None,
                                         loop_lowpass=loop_lowpass)
        inp = mulaw.encode(seg[:prefix + 1])
        local_cond.lag_from_reset(inp[:prefix].copy(), f[:prefix])
        ins.append(inp)
        feats.append(f)
        real.append(seg[prefix + 1:])
    return Segments(np.stack(ins), np.stack(feats), np.stack(real), float(feats[0][prefix, local_cond.PERIOD]))


def free_run(model: WaveNet, seg: Segments, pitch: float, instruments, velocities, temperature: float,
             gen: torch.Generator | None = None, step_fn=None, forced: np.ndarray | None = None,
             feedback_grad: bool = True, uniforms: np.ndarray | None = None,
             loop_lowpass: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` free from the end of ``seg``'s prefix for ``seg.real.shape[1]`` samples; returns the
    generated audio (B, n) (straight-through differentiable) and, with ``forced`` (B, n) classes fed
    instead of the draws (a check), the logits (B, 256, n). ``feedback_grad`` False: no gradient into
    later samples (the lag reads detached values). ``uniforms`` (B, n): the draws' uniforms (default: from
    ``gen``). ``loop_lowpass`` > 0: each draw passes the engines' low-pass in the loop
    (realtime.kernel.loop_lowpass.step, started at the prefix's last sample) before it is heard and fed back; the
    gradient goes through the filter (its fade held constant) and, to the lag, through the coded value's
    straight-through slope."""
    if loop_lowpass > 0 and forced is not None:
        raise ValueError("forced classes and a loop low-pass do not go together")
    cfg = model.cfg
    dil = list(model.dilations)
    n_layers, r = len(dil), cfg.residual_channels
    prefix = seg.inputs.shape[1] - 1
    b, n = seg.real.shape
    pick, lag_slot = local_slots(cfg.conditioning.local)
    step_fn = step_fn or make_step(r, n_layers, temperature)
    v = param_views(model)
    feats = torch.from_numpy(np.ascontiguousarray(seg.feats[:, :, pick]))
    inputs = torch.from_numpy(seg.inputs)
    glob = layer_globals(model, pitch, instruments, velocities)
    free = free_features(feats, prefix, lag_slot)
    cond = (torch.einsum("btc,lcr->tlbr", free, v["Wl"]) + (glob + v["bd"][:, None])[None]).unbind(0)
    wlag = v["Wl"][:, lag_slot] if lag_slot >= 0 else None
    with torch.no_grad():
        X = prefix_layer_inputs({k: t.detach() for k, t in v.items()}, dil, inputs[:, :prefix],
                                feats[:, :prefix], glob.detach())
    cvals = torch.from_numpy(class_value_table())
    decode = class_values(torch.device("cpu"))
    dec_slope = torch.from_numpy(DECODE_SLOPE)
    vals = list(cvals[inputs].unbind(1))  # vals[t]: step t's input (sample t-1), companded
    n_int, frac = lag_taps(seg.period)
    k, dq = inputs[:, prefix], torch.zeros(b)
    hist, outs, logits = [], [], []
    if loop_lowpass > 0:
        loops = loop_states(loop_lowpass, decode[k].double().numpy(), cfg.sample_rate)
        f_prev = decode[k].clone()
    for j in range(n):
        t = prefix + j
        past = torch.stack([X[i][:, t - d] if j < d else hist[j - d][i] for i, d in enumerate(dil)])
        c = cond[j]
        if wlag is not None:  # the ring's samples t - n and t - n - 1 (realtime.model.local_cond._tap)
            a_, b_ = vals[t - n_int + 1], vals[t - n_int]
            lag = (a_ + frac * (b_ - a_)) * local_cond.LAG_GAIN
            c = c + lag[None, :, None] * wlag[:, None, :]
        u = (torch.rand(b, generator=gen) if uniforms is None else torch.from_numpy(uniforms[:, j])
             ).clamp(1e-7, 1.0 - 1e-7)
        k, dq, xs, lg = step_fn(v["emb"][k], past, c, u, v["Wd"], v["Wrs"], v["br"], v["bs"], v["W1"], v["b1"],
                                v["W2"], v["b2"])
        hist.append(xs.unbind(0))
        if forced is not None:
            logits.append(lg.detach())
            k, dq = torch.from_numpy(forced[:, j]), torch.zeros(b)
        y = decode[k] + dq * dec_slope[k]
        if loop_lowpass > 0:  # the engines' filter in float64 for the values; its linear map for the gradient
            ae = torch.tensor([lp.faded_amount(st) for st in loops], dtype=torch.float32)
            fk = [lp.step(st, float(decode[kk])) for st, kk in zip(loops, k.tolist())]
            k = torch.tensor([kk for _, kk in fk])
            f = (1.0 - ae) * y + ae * f_prev
            d = f - f.detach()
            outs.append(torch.tensor([ff for ff, _ in fk], dtype=torch.float64).float() + d)
            f_prev = f
            dq = d / dec_slope[k.clamp(max=254)]  # the coded value's straight-through class
        else:
            outs.append(y)
        vals.append(cvals[k] + (dq if feedback_grad else dq.detach()) / 127.5)
    return torch.stack(outs, 1), (torch.stack(logits, 2) if forced is not None else None)


def period_uniforms(rng: np.random.Generator, shape: tuple[int, int], period: float, rho: float) -> np.ndarray:
    """(B, n) float32 uniforms for the free runs' draws: independent (``rho`` 0), or correlated ``rho`` one
    ``period`` (samples) back as the engines' period noise makes them (realtime.kernel.period_noise)."""
    if rho == 0:
        return rng.uniform(1e-7, 1.0 - 1e-7, shape).astype(np.float32)
    out = np.empty(shape, np.float64)
    for b in range(shape[0]):
        ring, ints, acc = period_noise.new_state()
        period_noise.correlate(rng.standard_normal(shape[1]), np.full(shape[1], period), rho, ring, ints, acc,
                               out[b])
    return np.clip(out, 1e-7, 1.0 - 1e-7).astype(np.float32)


def loop_states(a: float, starts: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    """One control state per note for realtime.kernel.loop_lowpass.step: amount ``a``, started at ``starts``
    (each note's last prefix sample, as an engine's filter starts at a prime's last sample)."""
    out = []
    for y in starts:
        st = np.zeros(local_cond.STATE_SIZE, np.float64)
        lp.set_amount(st, a, sample_rate)
        lp.start(st, float(y))
        out.append(st)
    return out


class InputGain(torch.nn.Module):
    """A local projection's weight as its stored value times a gain per input column: Adam moves each
    weight by about the learning rate a step, so a column with gain G learns G times faster. What a new
    input's zero weights need (the lag input's LAG_GAIN, in the trainer instead of the feature); the
    weights the model file gets are the products, so playing is unchanged."""

    def __init__(self, gain: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("g", gain.view(1, -1, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.g

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / self.g


def parse_gains(specs: list[str], local: tuple[str, ...]) -> dict[str, float]:
    """``["level=16"]`` -> {"level": 16.0}; a name the model does not read, or a gain <= 0, is refused."""
    out = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            g = float(value)
        except ValueError:
            g = float("nan")
        if name not in local or not g > 0:
            raise ValueError(f"--input-gain {spec}: must be NAME=G with G > 0 and NAME one of the model's local "
                             f"inputs ({', '.join(local)})")
        out[name] = g
    return out


def apply_input_gains(model: WaveNet, gains: dict[str, float]) -> None:
    """Give ``model``'s local projections the per-column :class:`InputGain` of ``gains`` (same function)."""
    if not gains:
        return
    from torch.nn.utils import parametrize

    g = torch.tensor([gains.get(c, 1.0) for c in model.cfg.conditioning.local], dtype=torch.float32)
    for proj in model.local_proj:
        parametrize.register_parametrization(proj, "weight", InputGain(g))


class MelLoss:
    """Mean absolute log-mel difference (units of 10 dB; train.mel_power's spectra: 40 bands, 512-sample
    frames, hop 128), each note floored 60 dB below its real loudest band: phase-blind, level and
    brightness both count."""

    def __init__(self, sample_rate: int) -> None:
        self.fb = mel_matrix(sample_rate, torch.device("cpu"))

    def db(self, a: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(mel_power(a, self.fb) + floor[:, None, None])

    def floor(self, real: torch.Tensor) -> torch.Tensor:
        """(B,) mel powers 60 dB below each real note's loudest band."""
        with torch.no_grad():
            top = self.db(real, torch.full((real.shape[0],), 1e-10)).amax(dim=(1, 2))
            return 10.0 ** ((top - 60.0) / 10.0)

    def __call__(self, gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        floor = self.floor(real)
        return (self.db(gen, floor) - self.db(real, floor)).abs().mean() / 10.0


class StatsLoss(MelLoss):
    """Mean absolute difference of the timbre descriptor's two halves (units of 10 dB): each frame's log-mel
    spectrum less its loudest band (level-free, as audio_features.logmel_stats), then its mean and its
    standard deviation over the frames, per band. Blind to when a frame comes: a vibrato or a wobble counts
    by its depth, not its phase (MelLoss asks a frame to match the real frame at the same time)."""

    def stats(self, a: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.db(a, floor)
        m = m - m.amax(dim=2, keepdim=True)
        return m.mean(dim=1), torch.sqrt(m.var(dim=1, correction=0) + 1e-6)  # finite gradient at no spread

    def __call__(self, gen: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        floor = self.floor(real)
        with torch.no_grad():
            rm, rs = self.stats(real, floor)
        gm, gs = self.stats(gen, floor)
        return ((gm - rm).abs().mean() + (gs - rs).abs().mean()) / 10.0


LOSSES = {"mel": MelLoss, "stats": StatsLoss}
