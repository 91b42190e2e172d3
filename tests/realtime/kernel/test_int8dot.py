"""The int8dot precision: int8 weights and 16-bit activation codes through the compile target's int8 dot products.

Packing is checked in numpy; the kernel's activation quantiser (byte planes and int16 codes) against
the numpy reference (same codes, same scale, NaN/Inf poisoning); each routine the compile target has
(AVX-512 VNNI, AVX-VNNI, AVX2) against integer arithmetic on the same codes, over output widths that
exercise every group size and offsets, and against each other (the same bits); the routine follows the
compile target, not the CPU; the engine's logits stay within LOGIT_TOLERANCE of fp32
(tests/realtime/kernel/test_precision.py) and within a few times int8's (weights only) error (what it
shares with the other dot-product precision is in tests/realtime/kernel/test_dot_precisions.py;
tests/realtime/kernel/test_lower_targets.py runs these tests again compiled for an AVX2 CPU).
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from wnl_testutil import NEEDS_INT8DOT, small_model

from realtime.engine.numba_engine import logit_error
from realtime.kernel import int8dot, int8dot_avx2, int8dot_vnni, isa


@njit(cache=True)
def _quantize(x, zero_point):
    u8 = np.full(2 * x.shape[0] + 3, 7, np.uint8)  # high bytes, low bytes, 3 guard bytes
    sx = int8dot.quantize(u8, x, 0, x.shape[0], zero_point)
    return u8, sx


@njit(cache=True)
def _quantize16(x, zero_point):
    u8 = np.full(2 * x.shape[0] + 3, 7, np.uint8)  # int16 codes, 3 guard bytes
    sx = int8dot.quantize16(u8, x, 0, x.shape[0], zero_point)
    return u8, sx


def codes_of(u8: np.ndarray, n: int) -> np.ndarray:
    """The 16-bit codes from the kernel's two byte planes."""
    return u8[:n].astype(np.int64) * 256 + u8[n:2 * n]


def codes16_of(u8: np.ndarray, n: int) -> np.ndarray:
    """The 16-bit codes from the kernel's int16 codes (``code - 32768``)."""
    return u8[:2 * n].view(np.int16).astype(np.int64) + 32768


@njit(cache=True)
def _dot512(h, hoff, w, u8, n_kq, n_ob, sx):
    int8dot_vnni.dot_acc(h, hoff, w, 0, u8, n_kq, n_ob, sx)


@njit(cache=True)
def _dot256(h, hoff, w, u8, n_kq, n_ob, sx):
    int8dot_vnni.dot_acc_256(h, hoff, w, 0, u8, n_kq, n_ob, sx)


@njit(cache=True)
def _dot_avx2(h, hoff, w, u8, n_kq, n_ob, sx):
    int8dot_avx2.dot_acc(h, hoff, w, 0, u8, n_kq, n_ob, sx)


def _needs(path: str):
    return pytest.mark.skipif(not isa.has(*int8dot.PATHS[path]), reason=f"the compile target has no {path}")


#: each routine, the quantiser that feeds it and how to read its codes back
ROUTINES = [pytest.param(_dot512, _quantize, codes_of, marks=_needs("avx512vnni"), id="avx512vnni"),
            pytest.param(_dot256, _quantize, codes_of, marks=_needs("avxvnni"), id="avxvnni"),
            pytest.param(_dot_avx2, _quantize16, codes16_of, marks=_needs("avx2"), id="avx2")]
ZERO_POINTS = [int8dot.ZP_SIGNED, int8dot.ZP_RELU]
QUANTISERS = [pytest.param(_quantize, codes_of, id="planes"), pytest.param(_quantize16, codes16_of, id="int16")]


def test_pack_round_trips_and_corrects_the_zero_point():  # numpy only: runs on any CPU
    w = np.random.default_rng(0).normal(0, 0.3, (3, 12, 48)).astype(np.float32)
    w[1, :, 5] = 0  # an all-zero column
    for zp in ZERO_POINTS:
        p = int8dot.pack_matrix(w, zp)
        assert p.shape == (3, 12 // 4 + 3, 3, 16) and p.dtype == np.int32
        q, scale, corr, offset = int8dot.unpack_matrix(p)
        q_ref, s_ref = int8dot.quantize_int8(w)
        np.testing.assert_array_equal(q, q_ref)
        np.testing.assert_array_equal(scale, s_ref)
        qsum = q_ref.astype(np.int64).sum(axis=-2)
        np.testing.assert_array_equal(corr, zp * qsum)
        np.testing.assert_array_equal(offset, 256 * (128 - zp) * qsum)  # exact: 0 or qsum * 2^15
        assert np.all(np.abs(q * scale[:, None, :] - w) <= scale[:, None, :] / 2 + 1e-7)
    with pytest.raises(ValueError, match="multiples of 16"):
        int8dot.pack_matrix(np.zeros((4, 24), np.float32), 0)
    with pytest.raises(ValueError, match="multiples of 4"):
        int8dot.pack_matrix(np.zeros((6, 32), np.float32), 0)


@pytest.mark.parametrize("quantise,read", QUANTISERS)
@pytest.mark.parametrize("zp", ZERO_POINTS)
def test_quantiser_matches_the_numpy_reference(zp, quantise, read):  # plain LLVM vectors: any x86-64 target
    rng = np.random.default_rng(zp)
    cases = [rng.normal(0, 1, 64), rng.normal(0, 1e-3, 128), rng.normal(0, 50, 16), np.zeros(32),
             -np.abs(rng.normal(0, 1, 16)), np.r_[np.full(15, 0.25), 1.0]]
    for x in cases:
        x = x.astype(np.float32)
        u8, sx = quantise(x, zp)
        ref, s_ref = int8dot.quantize_activations(x, zp)
        n = len(x)
        np.testing.assert_array_equal(read(u8, n), ref)
        assert sx == s_ref
        assert np.all(u8[-3:] == 7)  # nothing written past the codes
        xr = np.maximum(x, 0) if zp == int8dot.ZP_RELU else x
        assert np.all(np.abs((read(u8, n) - 256 * zp) * sx - xr) <= sx / 2 * (1 + 1e-4) + 1e-30)
    # the largest magnitude maps to the end of the range
    u8, _ = quantise(np.r_[np.zeros(15), -3.0].astype(np.float32), zp)
    assert read(u8, 16)[15] == (1 if zp == int8dot.ZP_SIGNED else 0)


@pytest.mark.parametrize("quantise,read", QUANTISERS)
@pytest.mark.parametrize("zp", ZERO_POINTS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -np.nan])
def test_a_nan_or_inf_input_poisons_the_scale(zp, bad, quantise, read):
    x = np.ones(32, np.float32)
    x[17] = bad
    u8, sx = quantise(x, zp)
    assert np.isnan(sx) and np.all(read(u8, 32) == 256 * zp) and np.all(u8[-3:] == 7)


@pytest.mark.parametrize("dot,quantise,read", ROUTINES)
@pytest.mark.parametrize("zp", ZERO_POINTS)
@pytest.mark.parametrize("n_in", [16, 64, 128, 512])
@pytest.mark.parametrize("n_ob", [1, 3, 5, 8, 12, 15, 16])  # every group size, alone and after others
def test_dot_is_exact_integer_arithmetic_on_the_codes(dot, quantise, read, zp, n_in, n_ob):
    rng = np.random.default_rng(n_in * 100 + n_ob + zp)
    w = rng.normal(0, 0.5, (n_in, n_ob * 16)).astype(np.float32)
    x = rng.normal(0, 2.0, n_in).astype(np.float32)
    h0 = rng.normal(0, 1.0, n_ob * 16 + 7).astype(np.float32)
    packed = int8dot.pack_matrix(w, zp)
    q, scale, _, _ = int8dot.unpack_matrix(packed)
    u8, sx = quantise(x, zp)
    h = h0.copy()
    dot(h, 7, packed, u8, n_in // 4, n_ob, np.float32(sx))
    ints = (read(u8, n_in) - 256 * zp) @ q.astype(np.int64)  # exact
    ref = h0[7:].astype(np.float64) + ints * (scale.astype(np.float64) * float(sx))
    assert np.all(np.abs(h[7:] - ref) <= 1e-6 * (np.abs(ref) + np.abs(h0[7:])) + 1e-6 * np.abs(ints * scale * sx))
    np.testing.assert_array_equal(h[:7], h0[:7])  # nothing written before the offset
    # and close to the float product: the weights' 8-bit and the activations' 16-bit roundings, nothing worse
    xr = np.maximum(x, 0) if zp == int8dot.ZP_RELU else x
    exact = xr.astype(np.float64) @ w.astype(np.float64)
    # |x| * (weight rounding) + |w| * (activation rounding) + their product, summed over the inputs
    bound = np.abs(xr).sum() * scale / 2 + sx / 2 * np.abs(w).sum(axis=0) + n_in * sx / 2 * scale / 2 + 1e-5
    assert np.all(np.abs(h[7:] - h0[7:] - exact) <= bound)


#: path -> (routine, its quantiser)
BY_PATH = {"avx512vnni": (_dot512, _quantize), "avxvnni": (_dot256, _quantize), "avx2": (_dot_avx2, _quantize16)}


@NEEDS_INT8DOT
@pytest.mark.parametrize("zp", ZERO_POINTS)
def test_every_routine_gives_the_same_bits(zp):
    """The routines sum the same integers exactly and round them once, so the compile target (which picks
    the routine) does not change a single sample. Extreme operands too: sums up to 512 * 32767 * 127, ~2^31."""
    rng = np.random.default_rng(zp + 1)
    have = [p for p in int8dot.PATHS if isa.has(*int8dot.PATHS[p])]
    for n_in, n_ob, big in ((512, 3, True), (128, 16, False), (64, 5, False)):
        w = rng.normal(0, 0.5, (n_in, n_ob * 16)).astype(np.float32)
        x = rng.normal(0, 2.0, n_in).astype(np.float32)
        if big:  # the first 16 columns' weights all quantise to 127, and every code sits near the end of its range
            w[:, :16] = 1 + np.abs(w[:, :16]) * 1e-3
            x = (1e3 + np.abs(x)).astype(np.float32)
        packed, h0 = int8dot.pack_matrix(w, zp), rng.normal(0, 1.0, n_ob * 16).astype(np.float32)
        out = {}
        for p in have:
            dot, quantise = BY_PATH[p]
            u8, sx = quantise(x, zp)
            out[p] = h0.copy()
            dot(out[p], 0, packed, u8, n_in // 4, n_ob, np.float32(sx))
        for p in have[1:]:
            np.testing.assert_array_equal(out[p].view(np.uint32), out[have[0]].view(np.uint32), err_msg=p)


def test_the_routine_follows_the_compile_target(monkeypatch):
    """Not the CPU's features: Numba's target's (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES), so that code built for a
    lower CPU never holds an instruction it lacks."""
    for spec, want in (("+avx2,+fma", "avx2"), ("+avx2,+avxvnni", "avxvnni"), ("+avx512vnni,+avxvnni", "avx512vnni"),
                       ("+avx512vnni,-avx512f,+avxvnni", "avxvnni"), ("+avx512vnni,+avxvnni,-avx2", None),
                       ("+sse4.2", None)):
        monkeypatch.setattr(isa, "target_features", lambda spec=spec: isa.parse_features(spec))
        assert int8dot.path() == want, spec
        ok, why = int8dot.available()
        assert ok == (want is not None)
        assert (int8dot.INSTRUCTIONS[want] if want else "has no AVX2") in why


@NEEDS_INT8DOT
def test_engine_error_is_close_to_int8s():
    """int8dot has int8's weights (the head's too) and rounds the activations to 16 bits, so it errs about as
    much as int8 (weights only, float32 activations): a mis-wired row, tap, byte plane or offset gives errors
    of the size of the logits themselves."""
    model = small_model(seed=3)
    e8, e8dot = logit_error(model, "int8", n=1500), logit_error(model, "int8dot", n=1500)
    assert 0 < e8dot.max_abs <= 2 * e8.max_abs
