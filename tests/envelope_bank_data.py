"""A small synthetic envelope bank whose frames are known numbers (shared by the envelope-bank tests)."""
from __future__ import annotations

import numpy as np

from realtime.model.envelope import EnvelopeBank
from realtime.model.source_filter import ORDER

HOP = 160
N_FRAMES = 60
RELEASE = 40.0  # key-up, frames after key-down
KEYS = [(0, 60, 64), (0, 60, 100), (0, 62, 64), (0, 62, 100), (1, 48, 90)]


def frames_of(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Entry ``k``'s frames: LSFs evenly spaced, shifted by an amount that moves with the frame and the entry;
    a gain that rises for 5 frames, decays (a slope set by the entry) and falls fast after key-up."""
    f = np.arange(N_FRAMES)
    base = np.arange(1, ORDER + 1) * np.pi / (ORDER + 1)
    shift = 0.02 * np.sin(0.3 * f + k)[:, None] + 0.01 * k
    lsf = base[None, :] + shift * (1.0 + 0.1 * np.arange(ORDER))[None, :] / ORDER
    db = np.where(f < 5, -40.0 + 6.0 * f, -10.0 - (k + 1) * 0.2 * (f - 5))
    db = np.where(f > RELEASE, db[int(RELEASE)] - 3.0 * (f - RELEASE), db)
    return lsf.astype(np.float32), (10.0 ** (db / 20.0)).astype(np.float32)


def make_bank(keys=KEYS, tonal=None) -> EnvelopeBank:
    fr = [frames_of(k) for k in range(len(keys))]
    inst, pitch, vel = (np.array([key[i] for key in keys]) for i in range(3))
    return EnvelopeBank(np.concatenate([f[0] for f in fr]), np.concatenate([f[1] for f in fr]),
                        np.arange(len(keys)) * N_FRAMES, np.full(len(keys), N_FRAMES), np.full(len(keys), RELEASE),
                        np.ones(len(keys), bool) if tonal is None else tonal, inst, pitch, vel, [HOP])


def seconds(frames: float) -> float:
    """Frames -> seconds at 16 kHz."""
    return frames * HOP / 16000.0
