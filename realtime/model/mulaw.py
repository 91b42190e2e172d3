"""8-bit mu-law companding (pure numpy). Values: float in [-1, 1] <-> int in [0, 255]."""
from __future__ import annotations

import numpy as np

MU = 255


def encode(x: np.ndarray) -> np.ndarray:
    """Float waveform in [-1, 1] -> mu-law class indices 0..255 (int64)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.clip(np.rint((y + 1.0) * 0.5 * MU), 0, MU).astype(np.int64)


def decode(q: np.ndarray) -> np.ndarray:
    """Mu-law class indices 0..255 -> float32 waveform in [-1, 1]."""
    y = 2.0 * (np.asarray(q, dtype=np.float64) / MU) - 1.0
    return (np.sign(y) * ((1.0 + MU) ** np.abs(y) - 1.0) / MU).astype(np.float32)


def roundtrip(x: np.ndarray) -> np.ndarray:
    """A float waveform as the model sees and at best reproduces it: 8-bit mu-law coded and decoded."""
    return decode(encode(x))


#: decode table, index -> float32 sample value
DECODE_TABLE: np.ndarray = decode(np.arange(256))
#: the class index that decodes to exact silence
SILENCE: int = int(encode(np.zeros(1))[0])
