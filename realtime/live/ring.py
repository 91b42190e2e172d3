"""A lock-free single-producer/single-consumer ring buffer of float32 samples.

One thread writes (the generator), one reads (the audio callback). The
positions are monotonically increasing sample counters (int64, never wrap in
practice: 2**63 samples is millions of years at 192 kHz), each stored in its
own one-element array and written by one side only:

* ``wpos`` -- samples ever written; only the producer stores it, *after* the
  data is in place (the store happens after the copy kernel returned, so it
  cannot be reordered before it).
* ``rpos`` -- samples ever read; only the consumer stores it, after copying out.

``wpos - rpos`` is the fill (0..capacity). Capacity is a power of two so the
index is ``pos & mask``. The copy kernels are Numba-compiled, allocation free
and callable from other Numba code (the audio callback kernel uses
:func:`ring_read`).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def ring_write(buf: np.ndarray, wpos: np.ndarray, rpos: np.ndarray, x: np.ndarray) -> int:
    """Producer: copy as much of ``x`` as fits; publish it; return the count (samples)."""
    cap = buf.shape[0]
    mask = cap - 1
    w = wpos[0]
    n = min(x.shape[0], cap - (w - rpos[0]))
    i0 = w & mask
    first = min(n, cap - i0)
    for i in range(first):
        buf[i0 + i] = x[i]
    for i in range(first, n):
        buf[i - first] = x[i]
    wpos[0] = w + n
    return n


@njit(cache=True)
def ring_read(buf: np.ndarray, wpos: np.ndarray, rpos: np.ndarray, out: np.ndarray) -> int:
    """Consumer: copy up to ``len(out)`` samples out; release them; return the count (samples)."""
    cap = buf.shape[0]
    mask = cap - 1
    r = rpos[0]
    n = min(out.shape[0], wpos[0] - r)
    i0 = r & mask
    first = min(n, cap - i0)
    for i in range(first):
        out[i] = buf[i0 + i]
    for i in range(first, n):
        out[i] = buf[i - first]
    rpos[0] = r + n
    return n


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class Ring:
    """SPSC float32 ring. ``write`` from the producer thread only, ``read`` from the consumer only."""

    def __init__(self, capacity: int) -> None:
        """``capacity`` in samples, rounded up to a power of two (at least 2)."""
        cap = _pow2_at_least(max(2, int(capacity)))
        self.buf = np.zeros(cap, np.float32)
        self.wpos = np.zeros(1, np.int64)   # written by the producer only
        self.rpos = np.zeros(1, np.int64)   # written by the consumer only

    @property
    def capacity(self) -> int:
        return int(self.buf.shape[0])

    def fill(self) -> int:
        """Samples written and not yet read (any thread; a consistent-enough snapshot)."""
        return int(self.wpos[0] - self.rpos[0])

    def space(self) -> int:
        """Samples that can be written now (any thread)."""
        return self.capacity - self.fill()

    def write(self, x: np.ndarray) -> int:
        """Producer thread: write what fits of ``x`` (float32, 1-D); returns the count."""
        return int(ring_write(self.buf, self.wpos, self.rpos, x))

    def read(self, out: np.ndarray) -> int:
        """Consumer thread: read up to ``len(out)`` samples into ``out``; returns the count."""
        return int(ring_read(self.buf, self.wpos, self.rpos, out))

    def warm_up(self) -> None:
        """Compile the kernels now (first calls are slow); leaves the ring empty."""
        tmp = Ring(4)
        x = np.zeros(3, np.float32)
        tmp.write(x)
        tmp.read(x)
