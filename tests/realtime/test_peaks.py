"""The benchmark's arithmetic peaks: measured, plausible, and 0 for instructions the CPU lacks."""
from __future__ import annotations

import pytest

from realtime import peaks


def test_measured_peaks_are_plausible():
    p = {k: peaks.peak_gflops(k, seconds=0.05) for k in ("fp32_fma_256", "fp32_fma_512")}
    # a core does at least a few 256-bit FMAs per ns, and no more than ~4 FMA units x 16 lanes x 2 x 5 GHz
    assert 10 < p["fp32_fma_256"] < 700
    if peaks.available("fp32_fma_512"):
        assert p["fp32_fma_512"] > 0.8 * p["fp32_fma_256"]  # wider vectors never lose much
    else:
        assert p["fp32_fma_512"] == 0.0


def test_a_missing_instruction_gives_zero(monkeypatch):
    """Missing on the compile target (realtime.kernel.isa), whatever this CPU has."""
    monkeypatch.setattr(peaks.isa, "target_features", lambda: frozenset())
    for kind in ("fp16_fma_512", "int8_dot_256", "int16_madd_256"):
        assert not peaks.available(kind) and peaks.peak_gflops(kind) == 0.0
    assert peaks.available("fp32_fma_256")


def test_read_bandwidth_falls_with_the_working_set():
    """A buffer that fits in L1 reads faster than one that must come from L3 or memory."""
    small, big = peaks.read_gbs(16 * 1024, seconds=0.05), peaks.read_gbs(64 * 1024 * 1024, seconds=0.05)
    assert small > 1.5 * big > 0


@pytest.mark.parametrize("kind,fp32", [("int8_dot_512", "fp32_fma_512"), ("int8_dot_256", "fp32_fma_256"),
                                       ("int16_madd_256", "fp32_fma_256")])
def test_int8_dot_products_outrun_float32_fmas(kind, fp32):
    """One vpdpbusd does 4 multiply-adds per lane, vpmaddwd 2, where an FMA of the same width does 1; whatever
    the port count, the integer peak (counted like FLOPs) is well above the float32 FMA peak."""
    if not peaks.available(kind):
        assert peaks.peak_gflops(kind) == 0.0
        return
    p8, p32 = peaks.peak_gflops(kind, seconds=0.05), peaks.peak_gflops(fp32, seconds=0.05)
    assert p8 > 1.3 * p32 > 0
