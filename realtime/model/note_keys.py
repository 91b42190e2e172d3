"""The (instrument, pitch, velocity) keys of the per-note tables a model file ships (seed and level banks)."""
from __future__ import annotations

import numpy as np


def note_keys(instrument, pitch, velocity, k: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The keys as int32 arrays of ``k`` rows each; ValueError "``what`` arrays disagree in length" if not."""
    keys = tuple(np.asarray(a, dtype=np.int32) for a in (instrument, pitch, velocity))
    if not all(a.shape == (k,) for a in keys):
        raise ValueError(f"{what} arrays disagree in length")
    return keys
