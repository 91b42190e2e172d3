"""Offline soak: a long random performance keeps memory flat, never NaNs, counts recoveries.

The 30-minute variant runs with WAVENET_LIVE_LONG=1 (its last result is in realtime/README.md).
"""
from __future__ import annotations

import os

import pytest
from wnl_testutil import small_model, write_preset

from realtime.offline.soak import random_performance, soak

LONG = os.environ.get("WAVENET_LIVE_LONG") == "1"


def test_random_performance_is_varied_and_sorted():
    tl = random_performance(16000, 60.0, [0, 1, 2], [1, 21], seed=4)
    kinds = {data[0] & 0xF0 for _, data in tl}
    assert kinds == {0x80, 0x90, 0xB0, 0xC0, 0xE0}
    assert [t for t, _ in tl] == sorted(t for t, _ in tl)
    assert 0 <= tl[0][0] and tl[-1][0] < 60 * 16000


@pytest.mark.slow
@pytest.mark.parametrize("minutes", [30.0 if LONG else 1.0])
def test_soak_memory_flat_no_nan(tmp_path, minutes):
    preset = write_preset(tmp_path / "p.toml", small_model().save(tmp_path / "m.npz"),
                          '[midi.cc]\n1 = "morph"\n21 = "temperature"\n7 = "gain"\n5 = "glide"')
    res = soak(minutes, str(preset), seed=1)
    assert res["applied_events"] >= res["events"] * 0.9
    assert res["nan_samples"] == 0
    assert len(res["rss_mib_per_minute"]) == int(minutes) + 1
    assert res["rss_growth_fraction"] < 0.05, res["rss_mib_per_minute"]
    assert res["recoveries"].get("noise", 0) > 0  # a random model babbles noise: the watchdog counts it
