"""Training on free-running trajectories: gradients through the network's own sampled feedback (the CLI).

    python -m models.trajectory.train MODEL.npz OUT.npz --data data/gm [--data-extra data/gm-vel]

See models.trajectory.reference for what a step does. Thread: training (one process, one torch thread).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

import numpy as np
import torch

from models.crops import make_batch
from models.dataset import DatasetError, load_dataset
from models.train import batch_loss, extra_train_notes, split_notes
from models.trajectory.reference import (
    LOSSES,
    apply_input_gains,
    cut_segments,
    free_run,
    make_step,
    parse_gains,
    period_uniforms,
)
from models.wavenet import WaveNet, export_weights, import_weights
from realtime.kernel import loop_lowpass as lp
from realtime.kernel import period_noise
from realtime.model.model_file import ModelFileError, load_model


def train(a: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(a.seed)
    mf = load_model(a.model)
    cfg = mf.config
    model = import_weights(WaveNet(cfg), mf.weights)
    gains = parse_gains(a.input_gain, cfg.conditioning.local)
    lp.check_amount(a.loop_lowpass)
    period_noise.check_rho(a.period_noise)
    sr = cfg.sample_rate
    main_notes = load_dataset(a.data).notes
    train_notes, held = split_notes(main_notes)
    extra = extra_train_notes(load_dataset(a.data_extra).notes, held) if a.data_extra else []
    pool = extra or train_notes  # the free runs' notes: the extra velocities (never a held-out note's key)
    by_pitch: dict[int, list] = {}
    for note in pool:
        if note.tonal:
            by_pitch.setdefault(note.pitch, []).append(note)
    pitches = sorted(p for p, ns in by_pitch.items() if len(ns) >= 2)
    if not pitches:
        raise ValueError(f"{a.data_extra or a.data}: no pitch with two tonal notes to run free")
    step_fn = make_step(cfg.residual_channels, len(model.dilations), a.temperature)
    if a.compile and a.kernel == "torch":
        step_fn = torch.compile(step_fn, dynamic=False)
    score = LOSSES[a.loss](sr)
    apply_input_gains(model, gains)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    t0 = t_save = time.monotonic()
    log = open(a.out + ".log.jsonl", "a")
    it = 0
    while True:
        it += 1
        pitch = int(rng.choice(pitches))
        notes = by_pitch[pitch]
        if a.notes and len(notes) > a.notes:
            notes = [notes[i] for i in sorted(rng.choice(len(notes), a.notes, replace=False))]
        starts = [min(nt.onset + int(a.after_s * sr) + int(rng.integers(0, int(a.spread_s * sr) + 1)),
                      len(nt.audio) - a.n) for nt in notes]
        seg = cut_segments(notes, starts, pitch, a.n, sr, rng, levels="level" in cfg.conditioning.local,
                           loop_lowpass=a.loop_lowpass)
        inst, vel = [nt.instrument_id for nt in notes], [nt.velocity / 127.0 for nt in notes]
        real = torch.from_numpy(seg.real)
        u = period_uniforms(rng, seg.real.shape, seg.period, a.period_noise)
        opt.zero_grad()
        if a.kernel == "numba":  # the free run's gradient goes into .grad here; the same as the graph below
            from models.trajectory.kernel import note_grads

            _, lt = note_grads(model, seg, pitch, inst, vel, a.temperature, u, lambda o: score(o, real), a.weight,
                               loop_lowpass=a.loop_lowpass)
            lt = torch.tensor(lt)
        else:
            out, _ = free_run(model, seg, pitch, inst, vel, a.temperature, uniforms=u, step_fn=step_fn,
                              loop_lowpass=a.loop_lowpass)
            lt = score(out, real)
            (a.weight * lt).backward()
        bt = make_batch(train_notes + extra, rng.integers(0, len(train_notes) + len(extra), a.ce_crops), sr,
                        cfg.receptive_field - 1, 2048, rng, 1.5, local=cfg.conditioning.local, detune=1.0,
                        pitch_interp=cfg.conditioning.pitch_interp)
        ce = batch_loss(model, bt, torch.device("cpu"))
        ce.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        if math.isfinite(gn):
            opt.step()
        el = time.monotonic() - t0
        rec = dict(it=it, minutes=round(el / 60, 2), pitch=pitch, notes=len(notes), traj=round(float(lt.detach()), 4),
                   ce=round(float(ce.detach()), 4), grad_norm=round(gn, 3))
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        done = el >= a.minutes * 60
        if done or time.monotonic() - t_save >= a.save_every * 60:
            t_save = time.monotonic()
            res = dataclasses.replace(mf, weights=export_weights(model), path=None)
            res.metadata = dict(mf.metadata, trajectory=dict(
                steps=it, minutes=round(el / 60, 1), n=a.n, notes=a.notes, lr=a.lr, input_gain=a.input_gain,
                weight=a.weight, loss=a.loss, loop_lowpass=a.loop_lowpass,
                period_noise=a.period_noise, start=str(a.model)))
            res.save(a.out)
        if done:
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.trajectory.train", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the model file to start from (.npz)")
    ap.add_argument("out", help="the fine-tuned model file to write (.npz; a .log.jsonl beside it)")
    ap.add_argument("--data", default="data/gm")
    ap.add_argument("--data-extra", default=None, help="the free runs' notes (default: the training notes)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--n", type=int, default=2048, help="samples run free per step")
    ap.add_argument("--notes", type=int, default=0, help="at most this many of the pitch's notes a step (0: all)")
    ap.add_argument("--after-s", type=float, default=0.128, help="free runs start this long after key-down ...")
    ap.add_argument("--spread-s", type=float, default=0.5, help="... plus up to this much more (uniform)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--weight", type=float, default=1.0, help="the trajectory loss's weight beside the cross-entropy")
    ap.add_argument("--loss", choices=sorted(LOSSES), default="mel",
                    help="the free run's score: mel = log-mel frame by frame; stats = the mean and spread over "
                         "the frames of the level-free log-mel (the timbre descriptor's halves)")
    ap.add_argument("--ce-crops", type=int, default=6)
    ap.add_argument("--input-gain", action="append", default=[], metavar="NAME=G",
                    help="a local input's weights learn G times faster (e.g. level=16 for a new input)")
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--loop-lowpass", type=float, default=0.0, metavar="A",
                    help="the free runs pass the engines' low-pass in the loop (realtime/kernel/loop_lowpass.py; the "
                         "presets play 0.15)")
    ap.add_argument("--period-noise", type=float, default=0.0, metavar="RHO",
                    help="the free runs' draws correlated one period back, as the engines' (the presets: 0.5)")
    ap.add_argument("--save-every", type=float, default=20.0, help="minutes")
    ap.add_argument("--kernel", choices=("numba", "torch"), default="numba",
                    help="the free run and its gradient: Numba kernels (models.trajectory.kernel) "
                         "or the autograd graph")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the torch kernel's step (2x faster after ~30 s)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        train(a)
    except (ModelFileError, DatasetError, FileNotFoundError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
