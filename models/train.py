"""Train a WaveNet on a note dataset; checkpointed, resumable, DDP-capable.

    python -m models.train --data DIR --out models/NAME [--config FILE.json] [--minutes M] [--resume]

Writes into ``--out``: ``ckpt.pt`` (weights, optimiser, step, elapsed time,
history), ``model.npz`` (the playable model file, with seed bank),
``history.jsonl`` (one line per eval), ``loss.png`` and ``MODEL.md``.
With ``--weight-ema D`` the model file holds an exponential moving average of
the weights over steps (Polyak averaging, decay D per step); ``ckpt.pt`` keeps
both, and each eval also reports the averaged weights' ``ema_eval_loss``.
Under ``torchrun --nproc_per_node N`` each rank trains on its own crops and
gradients are averaged (gloo on CPU, nccl on CUDA); rank 0 writes files.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from models.crops import Batch, make_batch
from models.splits import extra_train_notes, split_notes  # noqa: F401 (re-exported: train's split)
from models.wavenet import WaveNet
from realtime.model import mulaw
from realtime.model.config import ConditioningSpec, WaveNetConfig


@dataclass
class TrainOptions:
    batch: int = 6
    window: int = 4096         # scored samples per crop
    lr: float = 1e-3
    input_noise: float = 1.5   # max std of input noise in mu-law classes (exposure bias)
    level_gain_db: float = 0.0  # random gain (+- dB) per crop, level input moved with it (level models)
    splice_prob: float = 0.35  # share of crops that start at a note change (teaches reading the pitch input)
    self_feed: float = 0.0     # share of inputs replaced by the network's own one-step samples (exposure bias)
    input_tilt: float = 0.0    # max b of the high shelf on each crop's inputs only (exposure bias; crops.tilt)
    detune: float = 0.0        # crops resampled up to +-this many semitones off their note, f0 input and embedding following
    weight_ema: float = 0.0    # decay per step of the exported weights' moving average (0: export the raw weights)
    eval_every_s: float = 600.0
    ckpt_every_s: float = 300.0
    eval_notes: int = 48
    seed: int = 0


def default_config(instruments: list[str], sample_rate: int) -> WaveNetConfig:
    """The default model's size: R32/S64, 2 stacks x 10 layers (see MODEL.md for the trade-off)."""
    return WaveNetConfig(32, 64, 10, 2, sample_rate, conditioning=ConditioningSpec(instruments=tuple(instruments)))


def to_torch(b: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "inputs": torch.from_numpy(b.inputs).to(device), "targets": torch.from_numpy(b.targets).to(device),
        "pitch": torch.from_numpy(b.pitch).to(device), "instrument": torch.from_numpy(b.instrument).to(device),
        "velocity": torch.from_numpy(b.velocity).to(device), "local": torch.from_numpy(b.local).to(device),
    }


class Conditioned(torch.nn.Module):
    """The WaveNet with its global-vector lookup inside forward (so DDP sees every parameter used)."""

    def __init__(self, model: WaveNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, pitch, instrument, velocity, local, keep: int | None = None):
        return self.model(inputs, self.model.global_vector(pitch, instrument, velocity), local, keep=keep)


@torch.no_grad()
def self_fed_inputs(net, t: dict[str, torch.Tensor], share: float, gen: torch.Generator) -> torch.Tensor:
    """Parallel scheduled sampling: the inputs with a random ``share`` of positions replaced by the
    network's own sample (temperature 1) for that position, predicted from the teacher inputs.

    ``net`` maps (inputs, pitch, instrument, velocity, local) to logits (B, 256, T); the logits at t
    predict the sample whose input slot is t+1, so position 0 always keeps its teacher input. The
    targets stay the real audio: the network learns to continue well from its own slightly-off samples,
    the first-order part of the exposure bias that free-running generation meets (Duckworth et al., 2019).
    """
    inputs = t["inputs"]
    logits = net(inputs, t["pitch"], t["instrument"], t["velocity"], t["local"])
    b, q, n = logits.shape
    probs = torch.softmax(logits.float().transpose(1, 2).reshape(b * n, q), dim=-1)
    own = torch.multinomial(probs, 1, generator=gen).view(b, n)
    mask = torch.rand(b, n, generator=gen, device=inputs.device) < share
    mask[:, 0] = False
    shifted = torch.cat([inputs[:, :1], own[:, :-1]], dim=1)
    return torch.where(mask, shifted, inputs)


def batch_loss(model: WaveNet, b: Batch, device: torch.device, net=None, self_feed: float = 0.0,
               gen: torch.Generator | None = None) -> torch.Tensor:
    """Mean cross-entropy (nats) over the scored window of a batch; ``net`` is the (DDP-wrapped) Conditioned.
    With ``self_feed`` > 0, that share of the inputs are the network's own samples (:func:`self_fed_inputs`)."""
    logits, targets = batch_logits(model, b, device, net, self_feed, gen)
    return F.cross_entropy(logits, targets)


#: the temperature of the mean a rollout crop's spectral loss compares (the presets sample at 0.5)
ROLLOUT_TEMPERATURE = 0.5
#: its spectra: n_fft, hop (samples), mel bands
SPEC_FFT, SPEC_HOP, SPEC_MELS = 512, 128, 40


def class_values(device: torch.device) -> torch.Tensor:
    """(256,) float32: each mu-law class's decoded sample value (mulaw.DECODE_TABLE) on ``device``."""
    return torch.from_numpy(mulaw.DECODE_TABLE.astype(np.float32)).to(device)


def expected_samples(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, 256, T) logits -> (B, T): the mean decoded sample under softmax(logits / temperature)."""
    return torch.einsum("bqt,q->bt", torch.softmax(logits.float() / temperature, dim=1), class_values(logits.device))


#: the spectral loss's floor below each target frame's loudest band (power ratio; -40 dB): finer detail, such
#: as the mu-law coding noise between a real note's harmonics, is not asked of the expected samples
SPEC_FLOOR = 1e-4


def mel_power(x: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, frames, mels): mel power spectra (Hann, SPEC_FFT / SPEC_HOP)."""
    win = torch.hann_window(SPEC_FFT, periodic=False, device=x.device)
    spec = torch.stft(x, SPEC_FFT, SPEC_HOP, window=win, center=False, return_complex=True)
    return (spec.real ** 2 + spec.imag ** 2).transpose(1, 2) @ fb.T


def spectral_loss(logits: torch.Tensor, targets: torch.Tensor, fb: torch.Tensor,
                  temperature: float = ROLLOUT_TEMPERATURE) -> torch.Tensor:
    """Mean |log-mel difference| between the network's expected next samples (one step each, given the
    crop's inputs) and the target samples, each frame floored SPEC_FLOOR below the target's loudest band.
    Phase-blind: a rollout crop teaches the real note's level and spectral shape at the phase the network
    has reached without asking for its waveform (cross-entropy against the aligned real samples costs
    ~22 nats there, and the network learns to hedge: models/experiments/LOG.md, "Training on its own rollouts")."""
    real = mel_power(class_values(logits.device)[targets], fb)
    floor = SPEC_FLOOR * real.amax(dim=2, keepdim=True) + 1e-7
    return (torch.log(mel_power(expected_samples(logits, temperature), fb) + floor) - torch.log(real + floor)).abs().mean()


def mel_matrix(sample_rate: int, device: torch.device) -> torch.Tensor:
    """(SPEC_MELS, SPEC_FFT // 2 + 1) float32 triangular mel filters for :func:`spectral_loss`."""
    from models.audio_features import mel_filterbank

    return torch.from_numpy(mel_filterbank(sample_rate, SPEC_FFT, SPEC_MELS).astype(np.float32)).to(device)


def rollout_batch_loss(model: WaveNet, b: Batch, device: torch.device, net, fb: torch.Tensor,
                       weight: float) -> tuple[torch.Tensor, float]:
    """Cross-entropy over the plain crops plus ``weight`` x :func:`spectral_loss` over the rollout crops
    (b.rollout); returns (loss, the spectral term)."""
    logits, targets = batch_logits(model, b, device, net)
    mask = torch.from_numpy(b.rollout).to(device)
    loss = F.cross_entropy(logits[~mask], targets[~mask]) if (~mask).any() else logits.sum() * 0.0
    spec = 0.0
    if mask.any():
        sl = spectral_loss(logits[mask], targets[mask], fb)
        loss = loss + weight * sl
        spec = float(sl.detach())
    return loss, spec


def batch_logits(model: WaveNet, b: Batch, device: torch.device, net=None, self_feed: float = 0.0,
                 gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (batch, classes, samples) of a batch's scored window and its targets (batch, samples)."""
    t = to_torch(b, device)
    if self_feed > 0:
        t["inputs"] = self_fed_inputs(Conditioned(model), t, self_feed, gen)
    s = b.score_from
    net = Conditioned(model) if net is None else net  # (not `net or`: a compiled module has no truth value)
    logits = net(t["inputs"], t["pitch"], t["instrument"], t["velocity"], t["local"],
                 keep=b.inputs.shape[1] - s)  # only the scored window's logits
    return logits, t["targets"][:, s:]


def only_instruments(notes, names: Sequence[str], instruments: Sequence[str]) -> list:
    """The notes whose instrument is one of ``names`` (all of them when ``names`` is empty); ValueError naming
    ``--instruments`` for a name the dataset does not have."""
    unknown = [n for n in names if n not in instruments]
    if unknown:
        raise ValueError(f"--instruments: {', '.join(unknown)} not in the dataset's {list(instruments)}")
    if not names:
        return list(notes)
    ids = {instruments.index(n) for n in names}
    return [n for n in notes if n.instrument_id in ids]


class RolloutSource:
    """Rollout crops for training: the rows of a models.rollouts bank whose note is a training note."""

    def __init__(self, bank, notes) -> None:
        by_file = {n.file: i for i, n in enumerate(notes)}
        self.bank = bank
        self.notes = notes
        self.rows = [(j, by_file[f]) for j, f in enumerate(bank.file) if f in by_file]

    def crop(self, rng: np.random.Generator, window: int):
        """(note index, overlay for crops.make_batch): a random rollout, the scored window within it."""
        j, i = self.rows[int(rng.integers(len(self.rows)))]
        n = self.notes[i]
        t0 = n.onset + int(self.bank.t0[j])
        length = self.bank.rollout.shape[1]
        tgt, inp = n.audio.copy(), n.audio.copy()
        tgt[t0:t0 + length] = self.bank.aligned[j]
        inp[t0:t0 + length] = self.bank.rollout[j]
        start = t0 + int(rng.integers(0, max(1, length - window + 1)))
        return i, (tgt, inp, start)


def rollout_source(path: str, notes) -> RolloutSource:
    """The bank at ``path`` matched to the training ``notes`` (by file); ValueError if none matches."""
    from models.rollouts import RolloutBank

    src = RolloutSource(RolloutBank.load(path), notes)
    if not src.rows:
        raise ValueError(f"--rollouts {path}: none of its {len(src.bank)} rollouts is of a training note")
    print(f"rollouts: {len(src.rows)} of {len(src.bank)} in {path} are of training notes", flush=True)
    return src


def weight_average(model: WaveNet, decay: float, state: dict | None = None):
    """The exponential moving average of ``model``'s weights (torch's AveragedModel; update it after each
    optimiser step), restored from a checkpoint's ``weight_ema`` entry when there is one; None if decay is 0."""
    if decay <= 0.0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    if state and "weight_ema" in state:
        avg.module.load_state_dict(state["weight_ema"]["model"])
        avg.n_averaged.fill_(state["weight_ema"]["n_averaged"])
    return avg


SPREAD_TEMPERATURE = 0.5  # the presets' sampling temperature: eval_spread_db is the sampler's noise at it


@torch.no_grad()
def evaluate(model: WaveNet, notes, sample_rate: int, context: int, window: int, device: torch.device,
             n_notes: int, n_instruments: int, probes_too: bool = True) -> dict[str, float]:
    """Eval loss on fixed crops and ``eval_spread_db``: how far (dB) below the crops' power the variance of
    a sample drawn at ``SPREAD_TEMPERATURE`` lies, fed the real crops (the noise floor a free-running note
    starts from; higher is sharper). Plus probes: loss with pitch +7 semitones, with the wrong instrument, with
    the f0 input alone a semitone sharp (the sin/cos phase, and the period a lag input reads at), and (for a
    model with a level input) with the level input 20 dB
    below the note's.

    The probe deltas tell whether the network reads its conditioning at all (``probes_too``).
    """
    model.eval()
    rng = np.random.default_rng(1234)
    idx = rng.choice(len(notes), size=min(n_notes, len(notes)), replace=False)
    starts = [int(rng.integers(notes[i].onset, max(notes[i].onset + 1, notes[i].release))) for i in idx]
    out = {}
    swap = {"instrument_map": lambda i: (i + 1) % max(1, n_instruments)}
    # note-change crops (the history is another note): here only the conditioning tells the pitch
    change = {"splice_prob": 1.0, "starts": None}
    probes = {"eval_loss": {}, "pitch_shift_loss": {"pitch_shift": 7}, "instrument_swap_loss": swap,
              "note_change_loss": change, "note_change_pitch_shift_loss": {**change, "pitch_shift": 7}}
    # the f0 input alone a semitone sharp (a pitch bend)
    if {"f0_sin", "lag", "lag2", "lagavg"} & set(model.cfg.conditioning.local):
        probes["f0_shift_loss"] = {"f0_shift": 1.0}
    if "level" in model.cfg.conditioning.local:  # the level input says 20 dB quieter than the note is
        probes["level_shift_loss"] = {"level_shift": -1.0 / 3.0}
    if not probes_too:
        probes = {"eval_loss": {}}
    from models.evaluate import sampling_spread

    signal = spread = 0.0
    for name, kw in probes.items():
        losses = []
        for k in range(0, len(idx), 8):
            kw = {"starts": starts[k:k + 8], **kw}
            b = make_batch(notes, idx[k:k + 8], sample_rate, context, window, np.random.default_rng(k),
                           local=model.cfg.conditioning.local, source_filter=model.cfg.source_filter, **kw)
            logits, targets = batch_logits(model, b, device)
            losses.append(float(F.cross_entropy(logits, targets)) * len(b.pitch))
            if name == "eval_loss":  # how sharply it predicts: the sampler's own noise, teacher-forced
                sig, var = sampling_spread(logits.detach().transpose(1, 2).reshape(-1, logits.shape[1]).cpu().numpy(),
                                           targets.reshape(-1).cpu().numpy(), SPREAD_TEMPERATURE)
                signal, spread = signal + sig * targets.numel(), spread + var * targets.numel()
        out[name] = sum(losses) / len(idx)
    if spread > 0:
        out["eval_spread_db"] = float(10.0 * np.log10(signal / spread))
    model.train()
    return out


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ev = [h for h in history if "eval_loss" in h]
    tr = [h for h in history if "train_loss" in h]
    if tr:
        ax.plot([h["hours"] for h in tr], [h["train_loss"] for h in tr], label="train (crops)", alpha=0.6)
    for key, lab in (("eval_loss", "eval"), ("pitch_shift_loss", "eval, pitch +7"),
                     ("instrument_swap_loss", "eval, wrong instrument"), ("note_change_loss", "note change"),
                     ("note_change_pitch_shift_loss", "note change, pitch +7"),
                     ("level_shift_loss", "eval, level -20 dB"), ("f0_shift_loss", "eval, f0 input +1"),
                     ("ema_eval_loss", "eval, averaged weights"),
                     ("train_notes_loss", "training notes (eval's crops)")):
        ev = [h for h in history if key in h]
        if ev:
            ax.plot([h["hours"] for h in ev], [h[key] for h in ev], marker="o", label=lab)
    ax.set_xlabel("training time (hours, one CPU core)")
    ax.set_ylabel("cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="dataset folder (python -m models.dataset build)")
    ap.add_argument("--data-extra", action="append", default=[], metavar="DIR",
                    help="more training notes (repeatable; e.g. other velocities of the same instruments): every "
                         "note joins the training set but those sharing an (instrument, pitch) with an eval note")
    ap.add_argument("--out", required=True, help="output folder, e.g. models/default")
    ap.add_argument("--config", help="JSON file with WaveNetConfig fields (default R32/S64/L20)")
    ap.add_argument("--instruments", default="", metavar="NAMES",
                    help="train and evaluate on these instruments only, comma-separated (e.g. guitar: a "
                         "specialist fine-tuned from a resumed checkpoint); the split into training and eval "
                         "notes stays the whole dataset's")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    ap.add_argument("--batch", type=int, default=TrainOptions.batch)
    ap.add_argument("--window", type=int, default=TrainOptions.window)
    ap.add_argument("--lr", type=float, default=TrainOptions.lr)
    ap.add_argument("--input-noise", type=float, default=TrainOptions.input_noise)
    ap.add_argument("--level-gain-db", type=float, default=TrainOptions.level_gain_db,
                    help="random gain, uniform in +-this many dB, on each whole crop, with the level input moved "
                         "by as much (a model with a level input: the level then comes only from that input)")
    ap.add_argument("--splice-prob", type=float, default=TrainOptions.splice_prob,
                    help="share of crops starting at a note change after another note's audio")
    ap.add_argument("--detune", type=float, default=TrainOptions.detune,
                    help="each crop resampled to a pitch uniform within +-this many semitones of its note, its "
                         "f0 input and its pitch embedding (the two nearest rows interpolated) following, as a "
                         "pitch bend plays: the network learns pitches between the notes (0..2; sets the model's "
                         "pitch_interp, so bends move its embedding when it plays)")
    ap.add_argument("--self-feed", type=float, default=TrainOptions.self_feed,
                    help="share of input samples replaced by the network's own one-step samples (0..1)")
    ap.add_argument("--input-tilt", type=float, default=TrainOptions.input_tilt,
                    help="each crop's inputs (not its targets) brightened by a high shelf with b uniform in "
                         "0..this (0..3; 1: +7 dB at 4 kHz): a too-bright history, as a free-running note "
                         "drifts, answered by the real note's continuation")
    ap.add_argument("--rollouts", metavar="BANK",
                    help="a bank of the network's own free-running notes (python -m models.rollouts): a share of "
                         "the crops take a rollout as their inputs and the real note aligned to it as their targets")
    ap.add_argument("--rollout-share", type=float, default=0.25, help="share of crops from --rollouts (0..1)")
    ap.add_argument("--rollout-loss", choices=("spectral", "ce"), default="spectral",
                    help="a rollout crop's loss: the log-mel distance of the expected next samples to the real "
                         "note's (phase-blind), or the cross-entropy against the aligned real samples")
    ap.add_argument("--rollout-weight", type=float, default=0.3, help="weight of the spectral rollout loss")
    ap.add_argument("--weight-ema", type=float, default=None,
                    help="export a moving average of the weights, this decay per step (e.g. 0.9995; 0 = off; "
                         "default: the resumed checkpoint's, else off)")
    ap.add_argument("--eval-every", type=float, default=10.0, help="minutes between evals")
    ap.add_argument("--ckpt-every", type=float, default=5.0, help="minutes between checkpoints")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the training step's network (~1.2x faster per step on CPU after a "
                         "few minutes' compilation; the same loss)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from models.dataset import DatasetError

    try:
        return train(a)
    except (FileNotFoundError, ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def train(a) -> int:
    from models.dataset import load_dataset
    from models.export import export_model, training_summary

    if not 0.0 <= a.level_gain_db <= 30.0:
        raise ValueError(f"--level-gain-db {a.level_gain_db}: must be between 0 and 30")
    if not 0.0 <= a.detune <= 2.0:
        raise ValueError(f"--detune {a.detune}: must be between 0 and 2 semitones")
    if not 0.0 <= a.input_tilt <= 3.0:
        raise ValueError(f"--input-tilt {a.input_tilt}: must be between 0 and 3")
    if not 0.0 <= a.self_feed <= 1.0:
        raise ValueError(f"--self-feed {a.self_feed}: must be between 0 and 1")
    if not 0.0 <= a.rollout_share <= 1.0:
        raise ValueError(f"--rollout-share {a.rollout_share}: must be between 0 and 1")
    if a.rollouts and a.self_feed > 0:
        raise ValueError("--rollouts and --self-feed: use one or the other")
    if a.weight_ema is not None and not 0.0 <= a.weight_ema < 1.0:
        raise ValueError(f"--weight-ema {a.weight_ema}: must be at least 0 and below 1")
    torch.set_num_threads(a.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() \
        else torch.device("cpu")
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(a.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(a.data)
    train_notes, eval_notes = split_notes(ds.notes)
    seen_notes = list(train_notes)  # --data's training notes: the loss on them, beside the eval loss, is the fit gap
    for extra_dir in a.data_extra:
        extra = load_dataset(extra_dir)
        extra.check_fits(ds.instruments, ds.sample_rate, extra_dir, a.data)
        train_notes += extra_train_notes(extra.notes, eval_notes)
    names = [n.strip() for n in a.instruments.split(",") if n.strip()]
    train_notes, eval_notes, seen_notes = (only_instruments(n, names, ds.instruments)
                                           for n in (train_notes, eval_notes, seen_notes))
    if names and not (train_notes and eval_notes):
        raise ValueError(f"--instruments {a.instruments}: {len(train_notes)} training / {len(eval_notes)} held-out "
                         f"notes in {a.data}; both must be at least 1")
    rollouts = rollout_source(a.rollouts, train_notes) if a.rollouts else None
    ckpt_path = out / "ckpt.pt"
    state = None
    if a.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = WaveNetConfig.from_dict(state["config"])
    elif a.config:
        cfg = WaveNetConfig.from_dict(json.loads(Path(a.config).read_text()))
    else:
        cfg = default_config(ds.instruments, ds.sample_rate)
    ds.check_fits(cfg.conditioning.instruments, cfg.sample_rate, a.data, "the model")
    if cfg.source_filter is not None:
        off = [f for f, on in (("--rollouts", a.rollouts), ("--self-feed", a.self_feed), ("--input-tilt", a.input_tilt),
                               ("--level-gain-db", a.level_gain_db)) if on]
        if off:
            raise ValueError(f"{', '.join(off)}: not for a source-filter model (its crops inject noise in the loop "
                             "instead; --input-noise sets it)")
    if a.detune > 0 and not cfg.conditioning.pitch_interp:  # detuned crops read interpolated embeddings
        cfg = replace(cfg, conditioning=replace(cfg.conditioning, pitch_interp=True))
    torch.manual_seed(a.seed)
    model = WaveNet(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    step, elapsed, core_s, history = 0, 0.0, 0.0, []  # core_s: process seconds, all ranks together
    max_world = world
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:
            group["lr"] = a.lr
        step, elapsed, history = state["step"], state["elapsed_s"], state["history"]
        core_s = state.get("core_s", elapsed)  # older checkpoints: one process all along
        max_world = max(world, state.get("max_world", 2 if core_s > elapsed * 1.001 else 1))
    if a.weight_ema is None:  # a resumed run keeps averaging as it did
        a.weight_ema = state["weight_ema"]["decay"] if state is not None and "weight_ema" in state \
            else TrainOptions.weight_ema
    averaged = weight_average(model, a.weight_ema, state) if rank == 0 else None
    net = Conditioned(model)
    if world > 1:  # the last layer's residual conv feeds nothing: find_unused_parameters
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                        find_unused_parameters=True)
    if a.compile:  # the training step only: one shape (batch x crop), compiled once
        net = torch.compile(net)
    context = cfg.receptive_field - 1
    envelopes = None  # a source-filter model's envelope bank: of the training notes, analysed once, in its file
    if cfg.source_filter is not None and rank == 0:
        from models.envelope import build_bank

        envelopes = build_bank(train_notes, cfg.sample_rate)
    rng = np.random.default_rng([a.seed, rank, step])
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2 ** 62)))
    budget = a.minutes * 60.0 if a.minutes is not None else math.inf
    t_start = time.monotonic()
    t_ckpt = t_eval = t_start
    session_elapsed = 0.0
    bar = None
    if rank == 0 and not a.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=None if budget == math.inf else int(budget), unit="s", dynamic_ncols=True,
                   bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}s [ETA {remaining}]{postfix}")
    if rank == 0:
        print(f"training {model.n_params():,} params, config R{cfg.residual_channels}/S{cfg.skip_channels}/"
              f"L{cfg.n_layers}, RF {cfg.receptive_field} samples, {len(train_notes)} train / {len(eval_notes)} "
              f"eval notes, world {world}, resuming at step {step}", flush=True)
    loss_avg, samples_done = None, 0
    spec_avg = None  # the spectral rollout term's running mean
    mel_fb = mel_matrix(cfg.sample_rate, device) if rollouts is not None else None

    def run_eval() -> None:
        ev = evaluate(model, eval_notes, cfg.sample_rate, context, a.window, device,
                      TrainOptions.eval_notes, cfg.conditioning.n_instruments)
        seen = evaluate(model, seen_notes, cfg.sample_rate, context, a.window, device,
                        TrainOptions.eval_notes, cfg.conditioning.n_instruments, probes_too=False)
        ev["train_notes_loss"] = seen["eval_loss"]
        if "eval_spread_db" in seen:
            ev["train_notes_spread_db"] = seen["eval_spread_db"]
        if averaged is not None:
            ev["ema_eval_loss"] = evaluate(averaged.module, eval_notes, cfg.sample_rate, context, a.window, device,
                                           TrainOptions.eval_notes, cfg.conditioning.n_instruments,
                                           probes_too=False)["eval_loss"]
        history.append({"step": step, "hours": elapsed / 3600, "core_hours": core_s / 3600, **ev,
                        "options": {"lr": a.lr, "input_noise": a.input_noise, "self_feed": a.self_feed,
                                    "input_tilt": a.input_tilt, "weight_ema": a.weight_ema,
                                    **({"rollouts": a.rollouts, "rollout_share": a.rollout_share,
                                        "rollout_loss": a.rollout_loss, "rollout_weight": a.rollout_weight,
                                        "rollout_spectral": spec_avg} if a.rollouts else {}),
                                    "level_gain_db": a.level_gain_db, "detune": a.detune,
                                    "pitch_interp": cfg.conditioning.pitch_interp,
                                    **({"data_extra": a.data_extra} if a.data_extra else {}),
                                    **({"instruments": names} if names else {}),
                                    "train_notes": len(train_notes), "eval_notes": len(eval_notes)}})
        with open(out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(history[-1]) + "\n")
        print(f"\n[eval] step {step} {elapsed / 3600:.2f} h: " +
              ", ".join(f"{k} {v:.3f}" for k, v in ev.items()), flush=True)

    def save() -> None:
        extra = {} if averaged is None else {"weight_ema": {"decay": a.weight_ema, "model": averaged.module.state_dict(),
                                                            "n_averaged": int(averaged.n_averaged)}}
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "step": step, "elapsed_s": elapsed, "core_s": core_s, "max_world": max_world,
                    "history": history, **extra},
                   str(ckpt_path) + ".tmp")
        os.replace(str(ckpt_path) + ".tmp", ckpt_path)
        summary = training_summary(step, elapsed, core_s, max_world, history, loss_avg, extra.get("weight_ema"))
        export_model(model if averaged is None else averaged.module, ds, out, summary, envelopes)
        plot_history(history, out / "loss.png")

    interrupted = install_stop_handlers()
    while True:
        now = time.monotonic()
        session_elapsed = now - t_start
        stop = session_elapsed >= budget or (a.max_steps is not None and step >= a.max_steps) or interrupted.is_set()
        if world > 1:  # all ranks stop together
            flag = torch.tensor([1.0 if stop else 0.0])
            torch.distributed.all_reduce(flag)
            stop = flag.item() > 0
        if stop:
            break
        idx = rng.integers(0, len(train_notes), size=a.batch)
        overlays = None
        if rollouts is not None:
            overlays = [None] * a.batch
            for k in np.flatnonzero(rng.random(a.batch) < a.rollout_share):
                idx[k], overlays[k] = rollouts.crop(rng, a.window)
        b = make_batch(train_notes, idx, cfg.sample_rate, context, a.window, rng, a.input_noise,
                       splice_prob=a.splice_prob, local=cfg.conditioning.local,
                       level_gain_db=a.level_gain_db, detune=a.detune,
                       pitch_interp=cfg.conditioning.pitch_interp, input_tilt=a.input_tilt, overlays=overlays,
                       source_filter=cfg.source_filter)
        t0 = time.monotonic()
        if overlays is not None and a.rollout_loss == "spectral":
            loss, spec_term = rollout_batch_loss(model, b, device, net, mel_fb, a.rollout_weight)
            spec_avg = spec_term if spec_avg is None else 0.98 * spec_avg + 0.02 * spec_term
        else:
            loss = batch_loss(model, b, device, net, a.self_feed, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if averaged is not None:
            averaged.update_parameters(model)
        dt = time.monotonic() - t0
        step += 1
        wall = time.monotonic() - now
        elapsed += wall
        core_s += wall * world
        samples_done += b.inputs.size
        lv = float(loss.detach())
        loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
        if rank == 0:
            if bar is not None:
                bar.n = int(min(session_elapsed, bar.total or session_elapsed))
                bar.set_description(f"step {step}")
                bar.set_postfix_str(f"loss {loss_avg:.3f} nats, {b.inputs.size / dt:,.0f} samples/s")
                bar.refresh()
            if step % 50 == 0:
                history.append({"step": step, "hours": elapsed / 3600, "train_loss": loss_avg})
            if time.monotonic() - t_eval >= a.eval_every * 60 or step == 1:
                t_eval = time.monotonic()
                run_eval()
            if time.monotonic() - t_ckpt >= a.ckpt_every * 60:
                t_ckpt = time.monotonic()
                save()
    if rank == 0:
        if bar is not None:
            bar.close()
        if interrupted.is_set():
            print(f"\ninterrupted: stopping at step {step}, checkpoint first", flush=True)
            save()
        if not history or history[-1].get("step") != step or "eval_loss" not in history[-1]:
            run_eval()
        save()
        print(json.dumps({"steps": step, "hours": round(elapsed / 3600, 3), "loss": loss_avg,
                          "model": str(out / "model.npz")}), flush=True)
    print(json.dumps({"rank": rank, "step": step, "weights_sha256": weights_digest(model)}), flush=True)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def install_stop_handlers() -> threading.Event:
    """SIGINT (Ctrl-C) and SIGTERM end training after the current step: checkpoint first (torchrun
    kills its workers 30 s after it forwards the signal), then a final eval and checkpoint. A second
    signal is not caught again: it stops at once."""
    ev = threading.Event()

    def handler(signum, frame):  # nothing else here: a print could re-enter a half-done stdout write
        ev.set()
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)
    return ev


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over all parameters' bytes (DDP ranks must agree)."""
    import hashlib

    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
