"""Cache-line alignment of everything the kernels read as 64-byte vectors (realtime.kernel.aligned).

A vector load that straddles two cache lines costs about twice as much: the int8dot
matrix-vector routine ran at 246 instead of 416 GOP/s at a 16-byte offset, and numpy
only promises 16 bytes, so unaligned arrays made the engine's speed depend on luck.
"""
from __future__ import annotations

import numpy as np
import pytest

from realtime.engine.numba_engine import KERNEL_WEIGHT_NAMES, NumbaEngine, usable_precisions
from realtime.engine.poly_engine import PolyEngine
from realtime.kernel import aligned
from realtime.model.config import WaveNetConfig
from realtime.model.model_file import random_model


@pytest.mark.parametrize("shape,dtype", [((5,), np.float32), ((3, 7, 16), np.int32), ((0, 4), np.float32),
                                         ((9, 3), np.uint8)])
def test_zeros_and_copy_are_aligned_and_equal(shape, dtype):
    for _ in range(20):  # whatever offset the allocator happens to give
        z = aligned.zeros(shape, dtype)
        assert aligned.is_aligned(z) and z.shape == shape and z.dtype == dtype and z.flags.c_contiguous
        assert not z.any()
    a = np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)
    c = aligned.copy(a[..., ::-1] if a.ndim else a)  # a non-contiguous source too
    assert aligned.is_aligned(c) and c.flags.c_contiguous
    np.testing.assert_array_equal(c, a[..., ::-1] if a.ndim else a)


@pytest.mark.parametrize("precision", usable_precisions(32, 64))
def test_engine_weights_state_and_scratch_are_aligned(precision):
    model = random_model(WaveNetConfig(32, 64, 3, 1), seed=0)
    e = NumbaEngine(model, precision=precision)
    weights = [e.kernel_array(n) for n in KERNEL_WEIGHT_NAMES if n != "loc_idx"]  # loc_idx: a few int64 indices
    arrays = [a for a in weights + [a for a in e._state if a.dtype == np.float32] if a.size]
    assert arrays and all(aligned.is_aligned(a) for a in arrays)
    # each voice's rows of a polyphonic engine start on a line too (R a multiple of 16)
    p = PolyEngine(model, voices=3, precision=precision)
    try:
        for v in p.voices:
            assert aligned.is_aligned(v.queues) and aligned.is_aligned(v.bias)
    finally:
        p.close()
