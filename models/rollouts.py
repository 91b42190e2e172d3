"""Rollouts of the network's own free-running notes, and the real notes aligned to them (training
against exposure bias, DAgger-style: "data as demonstrator").

A rollout: a dataset note teacher-forced through the engine up to ``t0`` samples after key-down, then
free-running for ``length`` samples exactly as the presets play (temperature, period noise, loop
low-pass). The network's own drift over that stretch is what training never shows it. A training crop
can then take the rollout as its inputs and the *real* note as its targets, so the network learns to
answer its own drifted history with the real continuation. The free-running note's phase slides
against the real one's (a few cents of pitch error is a period in a fraction of a second), so the real
continuation is first time-warped onto the rollout's phase (:func:`align_real`): the targets then say
what the real instrument would sound like at the phase the network has reached.

Build a bank: ``python -m models.rollouts MODEL.npz OUT.npz --data data/gm [--data data/gm-vel]``.
Thread: any (offline).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.crops import sounding_range
from realtime.model import mulaw

#: alignment: hop and window of the lag track, samples
ALIGN_HOP = 160
ALIGN_WIN = 800


@dataclass
class RolloutBank:
    """Rollouts (K, L) float32 and the real notes aligned to them (K, L), with the note each came from:
    ``source`` (K,) dataset folder, ``file`` (K,) the note's file in it, ``t0`` (K,) samples after key-down."""

    source: np.ndarray
    file: np.ndarray
    t0: np.ndarray
    rollout: np.ndarray
    aligned: np.ndarray

    def save(self, path: str | Path) -> None:
        np.savez(path, source=self.source, note_file=self.file, t0=self.t0, rollout=self.rollout, aligned=self.aligned)

    @classmethod
    def load(cls, path: str | Path) -> "RolloutBank":
        """The bank saved at ``path``; FileNotFoundError, or ValueError naming the file if it is no bank."""
        try:
            with np.load(path) as z:
                bank = cls(z["source"], z["note_file"], z["t0"], z["rollout"], z["aligned"])
        except (KeyError, OSError, ValueError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a rollout bank (python -m models.rollouts): {e}") from None
        if bank.rollout.shape != bank.aligned.shape or bank.rollout.shape[0] != len(bank.t0):
            raise ValueError(f"{path}: rollout bank arrays disagree in shape")
        return bank

    def __len__(self) -> int:
        return len(self.t0)


def lag_track(x: np.ndarray, real: np.ndarray, offset: int, period: float, hop: int = ALIGN_HOP,
              win: int = ALIGN_WIN) -> tuple[np.ndarray, np.ndarray]:
    """(centres, lags): the lag (samples, float) of ``real`` against ``x`` over windows of ``win`` every
    ``hop``, x[c] ~ real[offset + c + lag] at each window's centre c. Each lag is searched within half a
    period of the previous one (so a drift of several periods is followed, not wrapped), at the best
    normalised correlation, refined by a parabola. Pure."""
    n = len(x)
    half = max(1, int(period / 2))
    lags = []
    prev = 0
    for s in range(0, max(1, n - win + 1), hop):
        a = x[s:s + win].astype(np.float64)
        a = a - a.mean()
        na = np.sqrt(np.dot(a, a)) + 1e-12
        cand = range(prev - half, prev + half + 1)
        scores = []
        for d in cand:
            b0 = offset + s + d
            if b0 < 0 or b0 + win > len(real):
                scores.append(-2.0)
                continue
            b = real[b0:b0 + win].astype(np.float64)
            b = b - b.mean()
            scores.append(float(np.dot(a, b) / (na * (np.sqrt(np.dot(b, b)) + 1e-12))))
        i = int(np.argmax(scores))
        frac = 0.0
        if 0 < i < len(scores) - 1:
            y0, y1, y2 = scores[i - 1], scores[i], scores[i + 1]
            den = y0 - 2 * y1 + y2
            frac = 0.5 * (y0 - y2) / den if den < 0 else 0.0
        prev = cand[i]
        lags.append(cand[i] + frac)
    return np.arange(len(lags), dtype=np.float64) * hop + win // 2, np.asarray(lags, np.float64)


def align_real(x: np.ndarray, real: np.ndarray, offset: int, period: float) -> np.ndarray:
    """float32 like ``x``: ``real`` from ``offset`` on, time-warped onto ``x``'s phase (the lag track
    interpolated linearly between window centres and extrapolated from 0 at the start, where the rollout
    begins in phase, and along its last slope at the end; the note linearly between samples). Pure."""
    centres, lags = lag_track(x, real, offset, period)
    t = np.arange(len(x), dtype=np.float64)
    lag = np.interp(t, np.concatenate(([0.0], centres)), np.concatenate(([0.0], lags)))
    if len(lags) > 1:
        end = t > centres[-1]
        lag[end] = lags[-1] + (lags[-1] - lags[-2]) / (centres[-1] - centres[-2]) * (t[end] - centres[-1])
    pos = offset + t + lag
    return np.interp(pos, np.arange(len(real), dtype=np.float64), real, left=0.0, right=0.0).astype(np.float32)


def rollout(e, note, t0: int, length: int, temperature: float, period_noise: float, loop_lowpass: float,
            seed: int) -> np.ndarray:
    """float32 (length,): engine ``e``'s free-running continuation of dataset ``note`` from ``t0`` samples
    after key-down (teacher-forced before). Thread: generator-like (one engine, one caller)."""
    from realtime.kernel import loop_lowpass as lp

    e.reset(seed=seed)
    e.set_conditioning(pitch=note.pitch, instrument=note.instrument_id, velocity=note.velocity)
    e.set_note(gate=1.0, pitch=float(note.pitch))
    e.play_level(note.instrument_id, note.pitch, note.velocity)
    e.set_temperature(temperature)
    e.set_period_noise(period_noise)
    e.set_loop_lowpass(0.0)
    x = mulaw.encode(note.audio[note.onset:note.onset + t0])
    e.teacher_force(np.concatenate(([mulaw.SILENCE], x)))
    e.set_loop_lowpass(loop_lowpass)  # the filter starts at the last real sample, as after a seed-bank prime
    lp.start(e.ctrl, float(note.audio[note.onset + t0 - 1]))
    out = np.empty(length, np.float32)
    out[0] = mulaw.DECODE_TABLE[e.ints[0]]  # the draw given the real history: position t0
    e.generate(length - 1, out[1:])
    return out


def build(model_path: str, data_dirs: list[str], seconds: float, per_note: int, seed: int,
          limit: int = 0, log=None) -> RolloutBank:
    """A bank of ``per_note`` rollouts of ``seconds`` for each tonal note of ``data_dirs``, played as
    presets/default.toml plays (its temperature, period noise and loop low-pass)."""
    from models.dataset import load_dataset, midi_to_hz
    from realtime.control.presets import load_preset
    from realtime.engine.numba_engine import NumbaEngine
    from realtime.model.model_file import load_model

    m = load_model(model_path)
    pm = load_preset(None).model
    sr = m.config.sample_rate
    e = NumbaEngine(m, seed=seed, max_block=4096)
    rng = np.random.default_rng(seed)
    length = int(seconds * sr)
    context = m.config.receptive_field
    rows = []
    started = time.monotonic()
    for d in data_dirs:
        notes = [n for n in load_dataset(d).notes if n.tonal]
        if limit:
            notes = [notes[i] for i in sorted(rng.choice(len(notes), min(limit, len(notes)), replace=False))]
        for n in notes:
            _, hi = sounding_range(n.audio, n.onset, n.release)
            period = sr / midi_to_hz(n.pitch)
            t_hi = min(hi - n.onset - length // 2, len(n.audio) - n.onset - length - int(period) - 1)
            for _ in range(per_note):
                if t_hi <= context:
                    continue
                t0 = int(rng.integers(context, t_hi))
                r = rollout(e, n, t0, length, pm.temperature, pm.period_noise, pm.loop_lowpass,
                            int(rng.integers(1 << 31)))
                rows.append((d, n.file, t0, r, align_real(r, n.audio, n.onset + t0, period)))
        if log:
            log(f"{d}: {len(rows)} rollouts, {time.monotonic() - started:.0f} s")
    return RolloutBank(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                       np.array([r[2] for r in rows], np.int64), np.stack([r[3] for r in rows]),
                       np.stack([r[4] for r in rows]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.rollouts", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model file (.npz) whose rollouts to record")
    ap.add_argument("out", help="bank to write (.npz)")
    ap.add_argument("--data", action="append", required=True, help="dataset folder (repeatable)")
    ap.add_argument("--seconds", type=float, default=0.75, help="rollout length, seconds")
    ap.add_argument("--per-note", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="at most this many notes per dataset (0: all)")
    a = ap.parse_args(argv)
    from models.dataset import DatasetError
    from realtime.model.model_file import ModelFileError

    try:
        bank = build(a.model, a.data, a.seconds, a.per_note, a.seed, a.limit, log=lambda s: print(s, file=sys.stderr))
    except (FileNotFoundError, ValueError, DatasetError, ModelFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bank.save(a.out)
    print(f"{len(bank)} rollouts of {bank.rollout.shape[1]} samples -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
