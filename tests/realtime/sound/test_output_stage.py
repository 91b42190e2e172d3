"""The output stage: limiter ceiling, NaN safety, DC removal, smooth gain."""
from __future__ import annotations

import numpy as np
import pytest

from realtime.sound.output_stage import OutputStage


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_full_scale_noise_stays_below_0_dbfs(sample_rate):
    st = OutputStage(sample_rate, ceiling=0.98)
    st.set_targets(env=1.0, gain=10 ** (24 / 20))  # +24 dB into the limiter
    x = np.random.default_rng(0).uniform(-1, 1, sample_rate * 2).astype(np.float32)
    x[::997] = np.nan
    x[5::1009] = np.inf
    y = st.process(x.copy())
    assert np.isfinite(y).all()
    assert np.abs(y).max() <= 0.98
    assert st.nonfinite == np.count_nonzero(~np.isfinite(x))
    assert np.sqrt(np.mean(y[sample_rate:] ** 2)) > 0.3  # limited, not muted


def test_dc_is_removed():
    st = OutputStage(16000)
    st.set_targets(env=1.0)
    x = np.full(32000, 0.3, np.float32)
    y = st.process(x)
    assert abs(float(np.mean(y[-1600:]))) < 1e-3


def test_gain_change_is_smooth():
    st = OutputStage(16000, smooth_s=0.01)
    st.set_targets(env=1.0)
    x = np.sin(2 * np.pi * 100 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    st.process(x[:8000].copy())
    st.set_targets(gain=0.0)
    y = st.process(x[8000:].copy())
    env = np.abs(y)
    assert env[:16].max() > 0.2 * np.abs(x[8000:8016]).max() - 1e-6  # no instant jump to zero
    assert env[-1000:].max() < 1e-3                                  # but reaches silence
