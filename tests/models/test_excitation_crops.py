"""Source-filter training crops: the targets are the gain-normalised excitation, the injected noise stays
per-sample (never accumulates through the predictor), and the inputs and ``pred`` are what an engine would see."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from models.excitation_crops import excitation_crop, span_tracks
from realtime.model import local_cond, mulaw
from realtime.model import source_filter as sf
from realtime.model.config import ConditioningSpec, SourceFilterSpec, WaveNetConfig

SR = 16000
ORDER = sf.ORDER
DECODE = mulaw.DECODE_TABLE.astype(np.float64)


def envelope() -> np.ndarray:
    """An all-pole envelope of eight resonances (300 Hz to 6.8 kHz, pole radii 0.9-0.97): minimum phase, sum |a_k|
    about 20, as real notes' analyses give (3-60)."""
    hz = np.array([300, 900, 1800, 2700, 3500, 4500, 5500, 6800])
    r = np.linspace(0.97, 0.9, 8)
    poles = r * np.exp(2j * np.pi * hz / SR)
    return np.real(np.poly(np.concatenate([poles, poles.conj()])))


def source_filter_note(n: int = 8000, period: int = 80, peak: float = 0.5, noise_db: float = -30.0):
    """(pre-emphasised signal s, its excitation e, LPC a): a pulse train plus noise through 1/A(z), both scaled so
    that s peaks at ``peak``."""
    rng = np.random.default_rng(1)
    e = np.zeros(n)
    e[::period] = np.sqrt(period)
    e += rng.standard_normal(n) * 10 ** (noise_db / 20)
    a = envelope()
    s = ss.lfilter([1.0], a, e)
    k = peak / np.abs(s).max()
    return s * k, e * k, a


def run(s, a, g, jitter):
    t_len = len(s) - ORDER
    inputs, targets = np.empty(t_len, np.int64), np.empty(t_len, np.int64)
    pred = np.empty(t_len, np.float32)
    rows = np.tile(a, (t_len, 1))
    sf.teacher_forced(s, rows, np.full(t_len, g), jitter, DECODE, inputs, pred, targets)
    return inputs, pred, targets


def test_encode1_is_mulaw_encode():
    x = np.concatenate([np.linspace(-1.3, 1.3, 100_001), mulaw.DECODE_TABLE, [0.0, -0.0, 1e-12, -1e-12]])
    assert np.array_equal([sf.encode1(v) for v in x], mulaw.encode(x))


def replay(sp, a, g, targets, jitter):
    """What an engine drawing ``targets + jitter`` plays, sample by sample: (sn, the predictions p) with sn's first
    ORDER samples the history ``sp`` gave; a clipped target resynchronises sn to ``sp`` as training does. ``a``: one
    LPC row or one per step; ``g``: one gain or one per step."""
    n = len(targets)
    rows = np.broadcast_to(a, (n, ORDER + 1))
    gains = np.broadcast_to(g, (n,))
    sn, preds = sp.copy(), np.empty(n)
    for t in range(n):
        p = 0.0
        for k in range(1, ORDER + 1):  # in the kernel's order, so the float64 sums agree to the bit
            p -= rows[t, k] * sn[ORDER + t - k]
        preds[t] = p
        if targets[t] in (0, 255):
            sn[ORDER + t] = sp[ORDER + t]
        else:
            sn[ORDER + t] = p + gains[t] * sf.EXC_SCALE * DECODE[np.clip(targets[t] + jitter[t], 0, 255)]
    return sn, preds


def test_the_targets_replay_the_note():
    """Drawing exactly the targets plays the note back within 8-bit mu-law's error of its excitation."""
    s, e, a = source_filter_note()
    g = float(np.sqrt(np.mean(e ** 2)))
    sp = np.concatenate([np.zeros(ORDER), s])
    zero = np.zeros(len(s), np.int64)
    _, _, targets = run(sp, a, g, zero)
    sn, _ = replay(sp, a, g, targets, zero)
    err_db = 10 * np.log10(np.mean((sn[ORDER:] - s) ** 2) / np.mean(s ** 2))
    assert err_db < -25.0
    assert DECODE[targets[0]] * g * sf.EXC_SCALE == pytest.approx(e[0], rel=0.05)  # no history yet: e itself


@pytest.mark.parametrize("sigma", [0.0, 1.0, 3.0])
def test_inputs_and_pred_are_what_the_engine_plays(sigma):
    """Rebuilt sample by sample as an engine would: sn_t = p_t + g E decode(target + jitter); inputs = class of
    sn_(t-1); pred = compand(p_t)."""
    s, e, a = source_filter_note(2000)
    g = float(np.sqrt(np.mean(e ** 2)))
    rng = np.random.default_rng(2)
    jitter = np.rint(rng.normal(0.0, sigma, len(s))).astype(np.int64) if sigma else np.zeros(len(s), np.int64)
    sp = np.concatenate([np.zeros(ORDER), s])
    inputs, pred, targets = run(sp, a, g, jitter)
    sn, preds = replay(sp, a, g, targets, jitter)
    assert np.array_equal(pred, np.array([sf.compand(p) for p in preds], np.float32))
    assert np.array_equal(inputs, mulaw.encode(sn[ORDER - 1:-1]))


def test_injected_noise_does_not_accumulate():
    """sn - s is the noise of each step alone: as large at the end as at the start, however loud the filter."""
    s, e, a = source_filter_note(16000)
    g = float(np.sqrt(np.mean(e ** 2)))
    jitter = np.rint(np.random.default_rng(3).normal(0.0, 2.0, len(s))).astype(np.int64)
    sp = np.concatenate([np.zeros(ORDER), s])
    inputs, _, _ = run(sp, a, g, jitter)
    dev = mulaw.decode(inputs)[1:] - mulaw.roundtrip(s[:-1])
    first, last = np.abs(dev[:4000]).max(), np.abs(dev[-4000:]).max()
    assert last < 2.0 * first
    assert np.abs(dev).max() < 0.25 * np.abs(s).max()


def test_excitation_crop_fills_pred_and_lag():
    """A crop of a source-filter note, analysed by the envelope bank's analysis: drawing its targets plays the span
    back, ``pred`` and the lag are filled."""
    s, e, a = source_filter_note(12000, period=80)
    audio = sf.de_emphasis(s).astype(np.float32)
    spec = SourceFilterSpec()
    inputs, targets, loc = excitation_crop(audio, 100, 11000, 60, SR, 2047, 2048, 6000, np.random.default_rng(0),
                                           spec)
    assert inputs.shape == targets.shape == (4095,) and loc.shape == (local_cond.N_LOCAL, 4095)
    begin = 6000 - 2047
    rows, gains = span_tracks(audio, begin, 4095, SR)
    sp = sf.pre_emphasis(audio[begin - ORDER - 1:begin + 4095].astype(np.float64))[1:]
    sn, _ = replay(sp, rows, gains, targets, np.zeros(4095, np.int64))
    assert 10 * np.log10(np.mean((sn[ORDER:] - sp[ORDER:]) ** 2) / np.mean(sp[ORDER:] ** 2)) < -25.0
    assert np.abs(loc[local_cond.PRED]).max() > 0.1 and np.abs(loc[local_cond.LAG]).max() > 0.1


def test_pred_input_and_source_filter_go_together():
    with pytest.raises(ValueError, match="pred"):
        WaveNetConfig(conditioning=ConditioningSpec(local=("gate", "pred")))
    with pytest.raises(ValueError, match="pred"):
        WaveNetConfig(source_filter=SourceFilterSpec())
    cfg = WaveNetConfig(conditioning=ConditioningSpec(local=("gate", "lag", "pred")), source_filter=SourceFilterSpec())
    assert WaveNetConfig.from_dict(cfg.to_dict()) == cfg
    assert "source_filter" not in WaveNetConfig().to_dict()  # older model files' configs unchanged


def test_the_engines_refuse_a_source_filter_model_in_one_line():
    from realtime.engine.numba_engine import NumbaEngine
    from realtime.model.model_file import random_model

    cfg = WaveNetConfig(8, 8, 2, 1, conditioning=ConditioningSpec(local=("gate", "pred")),
                        source_filter=SourceFilterSpec())
    with pytest.raises(ValueError, match="source-filter model") as e:
        NumbaEngine(random_model(cfg))
    assert "\n" not in str(e.value)
