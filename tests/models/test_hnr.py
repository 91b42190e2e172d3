"""The evaluator's harmonic-to-noise ratio (models.audio_features.harmonic_to_noise_db) measures a harmonic tone plus
white noise at a known ratio within 1.5 dB, across the instruments' f0 range and period lengths that are not whole
samples."""
from __future__ import annotations

import numpy as np
import pytest

from models.audio_features import frame_hnr_db, harmonic_to_noise_db

SR = 16000


def tone_plus_noise(f0: float, hnr_db: float, seed: int) -> np.ndarray:
    """Every harmonic below 7.9 kHz, random phases and a random tilt, plus white noise ``hnr_db`` below it."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SR) / SR
    h = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k ** rng.uniform(0.5, 1.5)
            for k in range(1, int(7900 / f0) + 1))
    return h + rng.standard_normal(len(t)) * np.sqrt(np.mean(h ** 2) / 10 ** (hnr_db / 10))


@pytest.mark.parametrize("f0", [65.4, 110.0, 261.63, 440.0, 1046.5])
@pytest.mark.parametrize("hnr_db", [0.0, 10.0, 20.0, 30.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_known_ratio_is_measured_within_1_5_db(f0, hnr_db, seed):
    assert harmonic_to_noise_db(tone_plus_noise(f0, hnr_db, seed), SR, f0) == pytest.approx(hnr_db, abs=1.5)


def test_noise_alone_scores_low_and_silence_scores_nothing():
    noise = np.random.default_rng(0).standard_normal(SR)
    assert harmonic_to_noise_db(noise, SR, 220.0) < -5.0
    assert np.isnan(harmonic_to_noise_db(np.zeros(SR), SR, 220.0))
    assert len(frame_hnr_db(np.zeros(100), SR, 220.0)) == 0


def test_a_wrong_f0_does_not_find_the_harmonics():
    """The period is searched near the given f0 only: a tone a fifth away scores as noise-like."""
    x = tone_plus_noise(220.0, 30.0, 0)
    assert harmonic_to_noise_db(x, SR, 220.0 * 1.5) < 10.0


@pytest.mark.parametrize("gen_db,real_db", [(10.0, 25.0), (30.0, 20.0)])
def test_the_evaluator_sets_the_generated_notes_against_the_real_ones(gen_db, real_db):
    """models.evaluate.hnr_figures: each generated note's ratio over its held part, the real note's (of that
    instrument and pitch, from its key-down) beside it, medians per instrument and the gap."""
    from models.dataset import Dataset, Note
    from models.evaluate import hnr_figures

    onset = 800
    pitches = (45, 57, 69)
    hz = lambda p: 440.0 * 2 ** ((p - 69) / 12)  # noqa: E731
    real = [Note(np.concatenate([np.zeros(onset), tone_plus_noise(hz(p), real_db, p)]).astype(np.float32), i, p, 80,
                 onset, onset + SR, True, "") for i in (0, 1) for p in pitches]
    data = Dataset(SR, ["a", "b"], real)
    generated = {(i, p): tone_plus_noise(hz(p), gen_db, 100 + p) for i in (0, 1) for p in pitches}
    res = hnr_figures(generated, data, ["a", "b"], SR)
    assert res["generated_median_db"] == pytest.approx(gen_db, abs=1.5)
    assert res["real_median_db"] == pytest.approx(real_db, abs=1.5)
    assert res["gap_db"] == pytest.approx(real_db - gen_db, abs=2.0)
    assert set(res["per_instrument"]) == {"a", "b"} and len(res["notes"]) == 6
    assert res["real_mulaw_median_db"] <= res["real_median_db"] + 0.5
