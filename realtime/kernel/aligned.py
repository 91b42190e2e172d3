"""Arrays whose data start on a 64-byte (cache-line) boundary. Thread: any (allocation: never the audio callback).

The dot-product kernels load 64-byte vectors straight from the weights, the
queues and the scratch rows; numpy only promises 16-byte alignment, and a
vector load that straddles two cache lines costs about twice as much. Measured
on the int8dot matrix-vector routine (matrix in L1): 416 GOP/s aligned against
246 GOP/s at a 16-byte offset, so which alignment an allocation happened to get
changed the engine's speed by up to ~20 % from one run to the next.
"""
from __future__ import annotations

import numpy as np

#: bytes: one cache line, one 512-bit vector
ALIGN = 64


def zeros(shape, dtype=np.float32) -> np.ndarray:
    """``np.zeros(shape, dtype)`` with the data on an :data:`ALIGN`-byte boundary (C-contiguous)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.zeros(n + ALIGN, np.uint8)
    off = (-buf.ctypes.data) % ALIGN
    return buf[off:off + n].view(dtype).reshape(shape)


def copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` with the data on an :data:`ALIGN`-byte boundary."""
    a = np.asarray(a)
    out = zeros(a.shape, a.dtype)
    out[...] = a
    return out


def is_aligned(a: np.ndarray) -> bool:
    """Do ``a``'s data start on an :data:`ALIGN`-byte boundary? (An empty array has no data to load: yes.)"""
    return a.size == 0 or a.ctypes.data % ALIGN == 0
