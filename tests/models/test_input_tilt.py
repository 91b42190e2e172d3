"""Input tilt (train --input-tilt): a crop's inputs brightened by a first-order high shelf, its targets not."""
from __future__ import annotations

import numpy as np
import pytest

from models import crops
from models.crops import make_batch, make_crop, tilt
from realtime.model import mulaw

SR = 16000


def sine(hz: float, n: int = 8000, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


@pytest.mark.parametrize("hz", [250.0, 1000.0, 4000.0, 7000.0])
@pytest.mark.parametrize("b", [0.5, 1.0, 1.5])
def test_tilt_gain_is_the_high_shelf_response(hz, b):
    """A sine's amplitude is multiplied by |1 + b (1 - e^-jw)|: 1 at DC, 1 + 2b at Nyquist."""
    x = sine(hz, amp=0.1)
    w = 2 * np.pi * hz / SR
    want = abs(1 + b * (1 - np.exp(-1j * w)))
    got = np.sqrt(np.mean(tilt(x, b)[100:] ** 2) / np.mean(x[100:] ** 2))
    assert got == pytest.approx(want, rel=2e-3)


def test_tilt_zero_is_identity_and_dc_passes_and_clipping_holds():
    x = sine(440.0)
    np.testing.assert_array_equal(tilt(x, 0.0), x)
    dc = np.full(100, 0.25, np.float32)
    np.testing.assert_array_equal(tilt(dc, 2.0), dc)
    loud = tilt(sine(7000.0, amp=0.9), 3.0)
    assert loud.max() == 1.0 and loud.min() == -1.0 and loud.dtype == np.float32


def band_share(classes: np.ndarray, lo_hz: float) -> float:
    """Share of the decoded signal's power above ``lo_hz``."""
    p = np.abs(np.fft.rfft(mulaw.decode(classes).astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(classes), 1 / SR)
    return float(p[f >= lo_hz].sum() / p.sum())


def test_a_tilted_crop_has_brighter_inputs_and_the_same_targets():
    t = np.arange(20000) / SR
    audio = sum(np.sin(2 * np.pi * 220 * k * t) / k ** 2 for k in range(1, 16)).astype(np.float32) * 0.2
    kw = dict(audio=audio, onset=0, release=len(audio), pitch=57, sample_rate=SR, context=2000, window=4000,
              start=6000)
    ins0, tgt0, loc0 = make_crop(rng=np.random.default_rng(1), **kw)
    ins1, tgt1, loc1 = make_crop(rng=np.random.default_rng(1), input_tilt=1.5, **kw)
    np.testing.assert_array_equal(ins0[1:], tgt0[:-1])  # untilted: the inputs are the targets one sample late
    np.testing.assert_array_equal(tgt1, tgt0)
    assert band_share(ins1, 2000.0) > 3.0 * band_share(ins0, 2000.0)
    # the lag channel reads the tilted inputs, as an engine reads what it was fed
    assert not np.array_equal(loc1, loc0)


def test_batch_draws_each_crops_tilt_within_the_range(monkeypatch):
    seen = []
    real = crops.make_crop

    def spy(*args, **kwargs):
        seen.append(args[-1])  # input_tilt, the last positional argument
        return real(*args, **kwargs)

    monkeypatch.setattr(crops, "make_crop", spy)
    t = np.arange(12000) / SR
    from models.dataset import Note

    notes = [Note(np.sin(2 * np.pi * 220 * t).astype(np.float32) * 0.3, 0, 57, 100, 0, 12000, True, "a.wav")]
    make_batch(notes, [0] * 32, SR, 1000, 2000, np.random.default_rng(0), input_tilt=1.2, local=("gate",))
    assert len(seen) == 32 and 0.0 <= min(seen) and max(seen) <= 1.2 and np.ptp(seen) > 0.6
    seen.clear()
    a = make_batch(notes, [0] * 4, SR, 1000, 2000, np.random.default_rng(0), local=("gate",))
    assert seen == [0.0] * 4
    b = make_batch(notes, [0] * 4, SR, 1000, 2000, np.random.default_rng(0), local=("gate",), input_tilt=0.0)
    np.testing.assert_array_equal(a.inputs, b.inputs)  # off: the same crops as before the option existed
