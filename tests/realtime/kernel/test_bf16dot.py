"""The bf16dot precision: packed bf16 weights and activations through AVX-512 BF16 dot products.

The routine is checked against numpy on the bf16-rounded operands (float64 sums),
over output widths that exercise every group size (8/4/2/1 blocks) and offsets;
the engine's logits stay within LOGIT_TOLERANCE of fp32 (tests/realtime/kernel/test_precision.py)
and close to bf16's own error (what it shares with the other
dot-product precision is in tests/realtime/kernel/test_dot_precisions.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from wnl_testutil import NEEDS_BF16DOT, small_model

from realtime.engine.numba_engine import logit_error
from realtime.kernel import bf16dot


@njit(cache=True)
def _dot(h, hoff, w, woff, xp, n_kp, n_ob):
    bf16dot.dot_acc(h, hoff, w, woff, xp, n_kp, n_ob)


@njit(cache=True)
def _pairs(x):
    out = np.empty(x.shape[0] // 2, np.float32)
    for k in range(out.shape[0]):
        out[k] = bf16dot.bf16_pair(x[2 * k], x[2 * k + 1])
    return out


def test_pack_round_trips_to_the_rounded_weights():  # numpy only: runs on any CPU
    w = np.random.default_rng(0).normal(0, 0.3, (3, 10, 48)).astype(np.float32)
    p = bf16dot.pack_matrix(w)
    assert p.shape == (3, 5, 3, 16) and p.dtype == np.uint32
    back = bf16dot.unpack_matrix(p)
    np.testing.assert_array_equal(back, bf16dot.round_bf16(w))
    assert np.all(np.abs(back - w) <= np.abs(w) * 2.0 ** -8)
    with pytest.raises(ValueError, match="multiples of 16"):
        bf16dot.pack_matrix(np.zeros((4, 24), np.float32))
    with pytest.raises(ValueError, match="even input width"):
        bf16dot.pack_matrix(np.zeros((5, 32), np.float32))
    # a NaN weight stays a NaN of its sign and does not spill into its pair neighbour
    w = np.ones((2, 16), np.float32)
    w[0, 3], w[1, 5] = np.copysign(np.nan, -1.0), np.nan
    back = bf16dot.unpack_matrix(bf16dot.pack_matrix(w))
    assert np.isnan(back[0, 3]) and np.signbit(back[0, 3]) and np.isnan(back[1, 5]) and not np.signbit(back[1, 5])
    assert np.count_nonzero(np.isnan(back)) == 2 and np.all(back[~np.isnan(back)] == 1.0)


@NEEDS_BF16DOT
def test_pair_packing_rounds_to_nearest_even_like_numpy():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 5000), rng.normal(0, 1e4, 2000), [0.0, -0.0, 1.0, -3.3e38, 3.3e38],
                        # exact halfway cases: ties go to the even neighbour
                        [1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, -(1.0 + 2.0 ** -8), 2.0 + 2.0 ** -7]]).astype(np.float32)
    x = x[: len(x) // 2 * 2]
    bits = _pairs(x).view(np.uint32)
    ref = bf16dot.float32_to_bf16(x).astype(np.uint32)
    np.testing.assert_array_equal(bits & 0xFFFF, ref[0::2])
    np.testing.assert_array_equal(bits >> 16, ref[1::2])


@NEEDS_BF16DOT
@pytest.mark.parametrize("n_in", [2, 10, 128])
@pytest.mark.parametrize("n_ob", [1, 3, 5, 8, 10, 12, 15, 16])  # every group size, alone and after others
def test_dot_matches_numpy_on_rounded_operands(n_in, n_ob):
    rng = np.random.default_rng(n_in * 100 + n_ob)
    w = rng.normal(0, 0.5, (n_in + 4, n_ob * 16)).astype(np.float32)  # two extra pairs before the rows used
    x = rng.normal(0, 2.0, n_in).astype(np.float32)
    h0 = rng.normal(0, 1.0, n_ob * 16 + 7).astype(np.float32)
    packed = bf16dot.pack_matrix(w)
    h = h0.copy()
    _dot(h, 7, packed, 2 * n_ob * 16, _pairs(x), n_in // 2, n_ob)  # skip 2 packed rows, 7 leading floats
    wr, xr = bf16dot.round_bf16(w[4:]).astype(np.float64), bf16dot.round_bf16(x).astype(np.float64)
    ref = h0[7:].astype(np.float64) + xr @ wr
    scale = np.abs(xr) @ np.abs(wr) + np.abs(h0[7:])
    assert np.all(np.abs(h[7:] - ref) <= 1e-6 * scale + 1e-30)
    np.testing.assert_array_equal(h[:7], h0[:7])  # nothing written before the offset
    # and it is really the rounded operands, not the float32 ones, that were multiplied
    exact = h0[7:].astype(np.float64) + x.astype(np.float64) @ w[4:].astype(np.float64)
    assert np.abs(h[7:] - exact).max() > np.abs(h[7:] - ref).max()


@NEEDS_BF16DOT
def test_engine_error_is_close_to_bf16s():
    """bf16dot rounds activations too, so it may err more than bf16, but not by an order of magnitude:
    a mis-wired row, tap or pair gives errors of the size of the logits themselves."""
    model = small_model(seed=3)
    e16, edot = logit_error(model, "bf16", n=1500), logit_error(model, "bf16dot", n=1500)
    assert 0 < edot.max_abs <= 4 * e16.max_abs
