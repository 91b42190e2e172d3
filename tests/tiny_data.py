"""The tiny synthetic dataset (sine and saw notes, MIDI 55-66) and model config that training tests share."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.dataset import Dataset, Note, midi_to_hz, write_dataset

SR = 16000
TINY = {"residual_channels": 8, "skip_channels": 16, "layers_per_stack": 5, "stacks": 1, "sample_rate": SR,
        "quantization": 256, "conditioning": {"pitch_dim": 4, "instrument_dim": 4, "velocity": True,
                                              "local": ["gate", "f0_sin", "f0_cos"], "instruments": ["sine", "saw"]}}


def tone(kind: str, pitch: int, n: int = 8000, onset: int = 800, release: int = 6400) -> np.ndarray:
    f = midi_to_hz(pitch)
    t = np.arange(n) / SR
    ph = (f * t) % 1.0
    x = np.sin(2 * np.pi * ph) if kind == "sine" else 2 * ph - 1
    env = np.zeros(n)
    env[onset:release] = 1.0
    env[release:] = np.exp(-np.arange(n - release) / 400.0)
    return (0.4 * x * env).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    notes = [Note(tone(k, p), i, p, 100, 800, 6400, True, "") for i, k in enumerate(("sine", "saw"))
             for p in range(55, 67)]
    out = tmp_path_factory.mktemp("tiny")
    write_dataset(Dataset(SR, ["sine", "saw"], notes, "synthetic"), out)
    cfg = out / "config.json"
    cfg.write_text(json.dumps(TINY))
    return out
