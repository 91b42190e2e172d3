"""The int8dot precision: int8 weights and 16-bit activations (two byte planes) through AVX-512 VNNI dot products.

Packing is checked in numpy; the kernel's activation quantiser against the numpy
reference (same codes, same scale, NaN/Inf poisoning); the dot routine against
integer arithmetic on the same codes, over output widths that exercise every
group size (8/4/2/1 blocks) and offsets; the engine's logits stay within
LOGIT_TOLERANCE of fp32 (tests/realtime/kernel/test_precision.py) and within a few times
int8's (weights only) error (what it shares with the other
dot-product precision is in tests/realtime/kernel/test_dot_precisions.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from wnl_testutil import NEEDS_INT8DOT, small_model

from realtime.engine.numba_engine import logit_error
from realtime.kernel import int8dot


@njit(cache=True)
def _quantize(x, zero_point):
    u8 = np.full(2 * x.shape[0] + 3, 7, np.uint8)  # high bytes, low bytes, 3 guard bytes
    sx = int8dot.quantize(u8, x, 0, x.shape[0], zero_point)
    return u8, sx


def codes_of(u8: np.ndarray, n: int) -> np.ndarray:
    """The 16-bit codes from the kernel's two byte planes."""
    return u8[:n].astype(np.int64) * 256 + u8[n:2 * n]


@njit(cache=True)
def _dot(h, hoff, w, u8, n_kq, n_ob, sx):
    int8dot.dot_acc(h, hoff, w, 0, u8, n_kq, n_ob, sx)


def test_pack_round_trips_and_corrects_the_zero_point():  # numpy only: runs on any CPU
    w = np.random.default_rng(0).normal(0, 0.3, (3, 12, 48)).astype(np.float32)
    w[1, :, 5] = 0  # an all-zero column
    for zp in (int8dot.ZP_SIGNED, int8dot.ZP_RELU):
        p = int8dot.pack_matrix(w, zp)
        assert p.shape == (3, 12 // 4 + 2, 3, 16) and p.dtype == np.int32
        q, scale, corr = int8dot.unpack_matrix(p)
        q_ref, s_ref = int8dot.quantize_int8(w)
        np.testing.assert_array_equal(q, q_ref)
        np.testing.assert_array_equal(scale, s_ref)
        np.testing.assert_array_equal(corr, zp * q_ref.astype(np.int64).sum(axis=-2))
        assert np.all(np.abs(q * scale[:, None, :] - w) <= scale[:, None, :] / 2 + 1e-7)
    with pytest.raises(ValueError, match="multiples of 16"):
        int8dot.pack_matrix(np.zeros((4, 24), np.float32), 0)
    with pytest.raises(ValueError, match="multiples of 4"):
        int8dot.pack_matrix(np.zeros((6, 32), np.float32), 0)


@NEEDS_INT8DOT
@pytest.mark.parametrize("zp", [int8dot.ZP_SIGNED, int8dot.ZP_RELU])
def test_quantiser_matches_the_numpy_reference(zp):
    rng = np.random.default_rng(zp)
    cases = [rng.normal(0, 1, 64), rng.normal(0, 1e-3, 128), rng.normal(0, 50, 16), np.zeros(32),
             -np.abs(rng.normal(0, 1, 16)), np.r_[np.full(15, 0.25), 1.0]]
    for x in cases:
        x = x.astype(np.float32)
        u8, sx = _quantize(x, zp)
        ref, s_ref = int8dot.quantize_activations(x, zp)
        n = len(x)
        np.testing.assert_array_equal(codes_of(u8, n), ref)
        assert sx == s_ref
        assert np.all(u8[-3:] == 7)  # nothing written past the codes
        xr = np.maximum(x, 0) if zp == int8dot.ZP_RELU else x
        assert np.all(np.abs((codes_of(u8, n) - 256 * zp) * sx - xr) <= sx / 2 * (1 + 1e-4) + 1e-30)
    # the largest magnitude maps to the end of the range
    u8, _ = _quantize(np.r_[np.zeros(15), -3.0].astype(np.float32), zp)
    assert codes_of(u8, 16)[15] == (1 if zp == int8dot.ZP_SIGNED else 0)


@NEEDS_INT8DOT
@pytest.mark.parametrize("zp", [int8dot.ZP_SIGNED, int8dot.ZP_RELU])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -np.nan])
def test_a_nan_or_inf_input_poisons_the_scale(zp, bad):
    x = np.ones(32, np.float32)
    x[17] = bad
    u8, sx = _quantize(x, zp)
    assert np.isnan(sx) and np.all(u8[:32] == zp) and np.all(u8[32:64] == 0)


@NEEDS_INT8DOT
@pytest.mark.parametrize("zp", [int8dot.ZP_SIGNED, int8dot.ZP_RELU])
@pytest.mark.parametrize("n_in", [16, 64, 128])
@pytest.mark.parametrize("n_ob", [1, 3, 5, 8, 12, 15, 16])  # every group size, alone and after others
def test_dot_is_exact_integer_arithmetic_on_the_codes(zp, n_in, n_ob):
    rng = np.random.default_rng(n_in * 100 + n_ob + zp)
    w = rng.normal(0, 0.5, (n_in, n_ob * 16)).astype(np.float32)
    x = rng.normal(0, 2.0, n_in).astype(np.float32)
    h0 = rng.normal(0, 1.0, n_ob * 16 + 7).astype(np.float32)
    packed = int8dot.pack_matrix(w, zp)
    q, scale, _ = int8dot.unpack_matrix(packed)
    u8, sx = _quantize(x, zp)
    h = h0.copy()
    _dot(h, 7, packed, u8, n_in // 4, n_ob, np.float32(sx))
    ints = (codes_of(u8, n_in) - 256 * zp) @ q.astype(np.int64)  # exact
    ref = h0[7:].astype(np.float64) + ints * (scale.astype(np.float64) * float(sx))
    assert np.all(np.abs(h[7:] - ref) <= 1e-6 * (np.abs(ref) + np.abs(h0[7:])) + 1e-6 * np.abs(ints * scale * sx))
    np.testing.assert_array_equal(h[:7], h0[:7])  # nothing written before the offset
    # and close to the float product: the weights' 8-bit and the activations' 16-bit roundings, nothing worse
    xr = np.maximum(x, 0) if zp == int8dot.ZP_RELU else x
    exact = xr.astype(np.float64) @ w.astype(np.float64)
    # |x| * (weight rounding) + |w| * (activation rounding) + their product, summed over the inputs
    bound = np.abs(xr).sum() * scale / 2 + sx / 2 * np.abs(w).sum(axis=0) + n_in * sx / 2 * scale / 2 + 1e-5
    assert np.all(np.abs(h[7:] - h0[7:] - exact) <= bound)


@NEEDS_INT8DOT
def test_engine_error_is_close_to_int8s():
    """int8dot has int8's weights (the head's too) and rounds the activations to 16 bits, so it errs about as
    much as int8 (weights only, float32 activations): a mis-wired row, tap, byte plane or offset gives errors
    of the size of the logits themselves."""
    model = small_model(seed=3)
    e8, e8dot = logit_error(model, "int8", n=1500), logit_error(model, "int8dot", n=1500)
    assert 0 < e8dot.max_abs <= 2 * e8.max_abs
