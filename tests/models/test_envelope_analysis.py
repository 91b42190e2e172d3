"""The envelope analysis (models/envelope.py) of a synthetic source-filter note, a known all-pole filter driven by a
pulse train or white noise of known RMS, recovers the filter's envelope and the excitation's gain."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import solve_toeplitz
from scipy.signal import freqz, lfilter

from models.envelope import analyse, levinson, lpcs_to_lsfs, note_tracks
from realtime.model.source_filter import de_emphasis, lpc_to_lsf, lsf_to_lpc, pre_emphasis, predictions, tidy_lsf

SR = 16000
FORMANTS = [(400, 100), (1200, 150), (2600, 250), (4000, 400)]  # (Hz, bandwidth Hz)
GAIN = 0.01
ONSET, RELEASE, N = 800, 16800, 24000
#: what the analysis holds to (measured: the pulse's envelope within 0.3-1.3 dB, the noise's 1.5 dB, whose
#: 20 ms windows see a random spectrum; gains within 0.3 dB), with a margin
ENVELOPE_DB = {"pulse": 2.0, "noise": 2.5}
GAIN_DB = 0.75


def formant_poly(formants=FORMANTS) -> np.ndarray:
    a = np.array([1.0])
    for f, bw in formants:
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * f / SR
        a = np.convolve(a, [1.0, -2 * r * np.cos(th), r * r])
    return a


def synthetic_note(kind: str, f0: float, a: np.ndarray) -> np.ndarray:
    """The excitation (RMS GAIN while held, decaying after key-up) through 1/A on the pre-emphasised side, then
    de-emphasised, as the engines synthesise."""
    t = np.arange(N)
    if kind == "pulse":
        ph = (f0 * t / SR) % 1.0
        e = np.zeros(N)
        e[np.flatnonzero(np.diff(ph) < 0) + 1] = 1.0
        e *= GAIN / np.sqrt(np.mean(e ** 2))
    else:
        e = GAIN * np.random.default_rng(0).standard_normal(N)
    env = np.ones(N)
    env[:ONSET] = 0.0
    env[RELEASE:] = np.exp(-(t[RELEASE:] - RELEASE) / 800.0)
    return de_emphasis(lfilter([1.0], a, e * env)).astype(np.float32)


@pytest.mark.parametrize("kind", ["pulse", "noise"])
@pytest.mark.parametrize("f0", [110.0, 220.0, 440.0])
def test_the_analysis_recovers_the_envelope_and_the_gain(kind, f0):
    a = formant_poly()
    fr = analyse(synthetic_note(kind, f0, a), ONSET, RELEASE, SR)
    assert fr.lsf.shape == (N // fr.hop - ONSET // fr.hop, 16) and fr.lsf.dtype == np.float32
    held = range(10, 90)  # frames well inside the held part
    w = 2 * np.pi * np.arange(f0, 7000.0, f0) / SR  # at the harmonics: where a pulse train says anything
    true_db = 20 * np.log10(np.abs(freqz([1.0], a, worN=w)[1]))
    err = [np.mean(np.abs(20 * np.log10(np.abs(freqz([1.0], lsf_to_lpc(fr.lsf[f]), worN=w)[1])) - true_db))
           for f in held]
    assert np.mean(err) < ENVELOPE_DB[kind]
    assert abs(20 * np.log10(np.median(fr.gain[held.start:held.stop]) / GAIN)) < GAIN_DB
    # after key-up the gain falls as the excitation does (800-sample time constant: 8.7 dB per 10 ms frame)
    r = int(fr.release_frames)
    fall = 20 * np.log10(fr.gain[r + 8] / fr.gain[r + 3]) / 5
    assert fall == pytest.approx(-20 * np.log10(np.e) * fr.hop / 800.0, abs=1.0)


@pytest.mark.parametrize("kind", ["pulse", "noise"])
def test_the_residual_over_the_gain_track_has_unit_rms(kind):
    """What training normalises: (s - p) / g over the held part, with the tracks note_tracks gives."""
    audio = synthetic_note(kind, 220.0, formant_poly())
    fr = analyse(audio, ONSET, RELEASE, SR)
    a, g = note_tracks(fr, N, 0)
    s = pre_emphasis(audio)
    e = (s - predictions(s, a)) / g
    assert np.sqrt(np.mean(e[ONSET + 800:RELEASE - 800] ** 2)) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_k", [0.9, 0.97, 0.9999])  # 0.9999: roots closer than the search grid, the fallback
def test_the_batched_lsf_conversion_is_lpc_to_lsf(seed, max_k):
    """models.envelope.lpcs_to_lsfs (many frames at once) = source_filter.lpc_to_lsf, tidied."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(8):
        a = np.array([1.0])
        for k in rng.uniform(-max_k, max_k, 16):
            ext = np.append(a, 0.0)
            a = ext + k * ext[::-1]
        rows.append(a)
    got = lpcs_to_lsfs(np.array(rows))
    for row, lsf in zip(rows, got):
        want = lpc_to_lsf(row)
        tidy_lsf(want)  # both keep LSF_MIN_GAP between neighbours
        np.testing.assert_allclose(lsf, want, atol=1e-8)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["noise", "tone"])
def test_levinson_solves_the_normal_equations_as_scipy_does(seed, kind):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(320)
    if kind == "tone":  # nearly singular: two sinusoids and a little noise
        t = np.arange(320)
        x = np.sin(0.3 * t) + 0.5 * np.sin(1.1 * t + 1) + 1e-3 * x
    r = np.correlate(x, x, "full")[319:319 + 17]
    r[0] *= 1 + 1e-8
    a = np.empty(17)
    assert levinson(r, a)
    np.testing.assert_allclose(a[1:], -solve_toeplitz(r[:-1], r[1:]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("gap", [3e-5, 1e-4])
def test_lsfs_closer_than_the_search_grid_take_the_fallback(gap):
    """Two roots of one polynomial within a grid step (LSF_GRID) show no sign change: the row is solved by
    eigenvalues instead, and still equals lpc_to_lsf (tidied)."""
    from models.envelope import LSF_GRID, _deflated, _lsf_roots

    lsf = np.linspace(0.2, 2.9, 16)
    lsf[5], lsf[6] = lsf[4] + gap, lsf[4] + 2 * gap  # LSFs 5 and 7 (the same polynomial's) 2 gaps apart
    a = lsf_to_lpc(lsf)
    pp, qq = _deflated(a[None])
    ok = np.ones(1, bool)
    _lsf_roots(pp, qq, np.cos(np.linspace(0.0, np.pi, LSF_GRID + 1)), np.empty((1, 16)), ok)
    assert not ok[0]
    want = lpc_to_lsf(a)
    tidy_lsf(want)
    np.testing.assert_allclose(lpcs_to_lsfs(a[None])[0], want, atol=1e-6)
