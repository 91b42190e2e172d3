"""Audio measurements for evaluation: log-mel statistics, windowed level and spectral flatness.

Pure numpy. Audio is float in [-1, 1]; rates in Hz; windows in seconds.
"""
from __future__ import annotations

import numpy as np


def mel_points_hz(sample_rate: int, n_mels: int = 40, fmin: float = 30.0, fmax: float | None = None) -> np.ndarray:
    """Edges and centres (Hz) of :func:`mel_filterbank`'s filters: filter i spans points i..i+2, centre i+1."""
    fmax = fmax or sample_rate / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    return hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 40, fmin: float = 30.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1)."""
    pts = mel_points_hz(sample_rate, n_mels, fmin, fmax)
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return fb


def power_frames(audio: np.ndarray, n_fft: int = 512, hop: int = 256) -> np.ndarray:
    """Hann-windowed power spectra (frames, n_fft // 2 + 1)."""
    audio = np.asarray(audio, np.float64)
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    idx = np.arange(n_fft)[None, :] + hop * np.arange(1 + (len(audio) - n_fft) // hop)[:, None]
    return np.abs(np.fft.rfft(audio[idx] * np.hanning(n_fft), axis=1)) ** 2


def logmel_stats(audio: np.ndarray, sample_rate: int, n_mels: int = 40, floor_db: float = -60.0) -> np.ndarray:
    """Timbre descriptor: mean and std over loud frames of the level-normalised log-mel spectrum (2*n_mels,)."""
    p = power_frames(audio)
    fb = mel_filterbank(sample_rate, 512, n_mels)
    m = np.log10(p @ fb.T + 1e-10) * 10.0
    level = 10.0 * np.log10(p.sum(axis=1) + 1e-12)
    loud = level > level.max() + floor_db * 0.5
    if loud.sum() >= 2:
        m = m[loud]
    m = m - m.max(axis=1, keepdims=True)  # level-free: the shape of the spectrum
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])


def with_white_noise(audio: np.ndarray, snr_db: float, power: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` plus white Gaussian noise ``snr_db`` dB below ``power`` (a mean square, e.g. of the note's
    sounding part), clipped to [-1, 1]; float64."""
    x = np.asarray(audio, np.float64)
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return np.clip(x + noise, -1.0, 1.0)


def window_db(audio: np.ndarray, sample_rate: int, window_s: float = 0.1) -> np.ndarray:
    """RMS level in dBFS of consecutive windows."""
    n = max(1, int(window_s * sample_rate))
    k = len(audio) // n
    w = np.asarray(audio[:k * n], np.float64).reshape(k, n)
    return 10.0 * np.log10(np.mean(w ** 2, axis=1) + 1e-20)


def window_flatness(audio: np.ndarray, sample_rate: int, window_s: float = 0.1) -> np.ndarray:
    """Spectral flatness (geometric / arithmetic mean power, 0 tonal .. 1 white noise) of consecutive windows."""
    n = max(64, int(window_s * sample_rate))
    k = len(audio) // n
    w = np.asarray(audio[:k * n], np.float64).reshape(k, n) * np.hanning(n)
    p = np.abs(np.fft.rfft(w, axis=1)) ** 2 + 1e-20
    return np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)


class NearestNeighbour:
    """1-nearest-neighbour classifier on standardised features (pitch varies timbre a lot, so
    a neighbour of similar pitch decides, not an average over the whole range)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> "NearestNeighbour":
        self.mu, self.sd = x.mean(axis=0), x.std(axis=0) + 1e-6
        self.z, self.y = (x - self.mu) / self.sd, np.asarray(y)
        return self

    def _dist(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.mu) / self.sd
        return ((z[:, None, :] - self.z[None]) ** 2).sum(axis=2)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.y[np.argmin(self._dist(x), axis=1)]

    def leave_one_out_accuracy(self) -> float:
        """Accuracy on the training set itself, each item classified without itself."""
        d = ((self.z[:, None, :] - self.z[None]) ** 2).sum(axis=2)
        np.fill_diagonal(d, np.inf)
        return float(np.mean(self.y[np.argmin(d, axis=1)] == self.y))


#: harmonic-to-noise ratio (:func:`harmonic_to_noise_db`): frames of HNR_PERIODS periods (at least HNR_MIN_WINDOW_S)
#: every HNR_HOP_S; the period searched within +-HNR_SEARCH (relative) of the expected one; lags resolved to
#: 1/HNR_UPSAMPLE sample (the autocorrelation band-limited interpolated); frames more than HNR_RANGE_DB below the
#: loudest are left out; the ratio is capped at HNR_MAX_DB
HNR_PERIODS, HNR_MIN_WINDOW_S, HNR_HOP_S, HNR_SEARCH, HNR_UPSAMPLE, HNR_RANGE_DB, HNR_MAX_DB = \
    6.0, 0.04, 0.02, 0.06, 256, 30.0, 60.0


def hnr_window(sample_rate: int, f0_hz: float) -> int:
    """The HNR analysis window (samples) for an f0: HNR_PERIODS periods, at least HNR_MIN_WINDOW_S."""
    return int(max(HNR_PERIODS * sample_rate / float(f0_hz), HNR_MIN_WINDOW_S * sample_rate))


def windowed_hnr_db(frames: np.ndarray, period: float) -> np.ndarray:
    """Harmonic-to-noise ratio (dB) of each row of ``frames`` (F, n) whose period is about ``period`` samples
    (Boersma 1993, the autocorrelation method of Praat's "To Harmonicity (ac)"): each row less its mean, Hann
    windowed, its autocorrelation normalised at lag 0 and divided by the window's own (a periodic signal scores 1
    at its period); the peak r within +-HNR_SEARCH of ``period``, found at whole lags and refined to
    1/HNR_UPSAMPLE sample on the band-limited autocorrelation; HNR = 10 log10(r / (1 - r)), capped at
    HNR_MAX_DB. NaN for a silent row. Pure."""
    frames = np.asarray(frames, np.float64)
    F, n = frames.shape
    lo = max(1, int(np.floor(period * (1.0 - HNR_SEARCH))))
    hi = min(int(np.ceil(period * (1.0 + HNR_SEARCH))), n - 2)
    if hi < lo or F == 0:
        return np.full(F, np.nan)
    w = np.hanning(n + 2)[1:-1]
    n_fft = 1 << int(np.ceil(np.log2(2 * n)))
    x = (frames - frames.mean(axis=1, keepdims=True)) * w
    px = np.abs(np.fft.rfft(x, n_fft, axis=1)) ** 2
    pw = np.abs(np.fft.rfft(w, n_fft)) ** 2
    rx, rw = np.fft.irfft(px, n_fft, axis=1), np.fft.irfft(pw, n_fft)
    zero = rx[:, 0] <= 0
    rx[zero, 0] = 1.0
    coarse = (rx[:, lo:hi + 1] / rx[:, :1]) / (rw[lo:hi + 1] / rw[0])
    lag = (lo + np.argmax(coarse, axis=1)).astype(np.float64)
    # refine on the band-limited autocorrelation (the cosine sum of the power spectrum) around the whole-lag peak:
    # steps of 1/4, 1/32, 1/256 sample, each searching +-1 step of the one before
    k = np.arange(n_fft // 2 + 1)
    wk = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0)
    step = 1.0
    best = coarse.max(axis=1)
    while step > 1.0 / HNR_UPSAMPLE:
        step /= 8.0 if step < 1.0 else 4.0
        lags = lag[:, None] + step * np.arange(-4, 5)[None, :]  # (F, 9)
        ratio = np.empty(lags.shape)
        for c in range(0, F, 16):  # (16, 9, K) cosines at a time
            cos = np.cos((2 * np.pi / n_fft) * lags[c:c + 16, :, None] * k[None, None, :])
            ratio[c:c + 16] = (np.einsum("flk,fk->fl", cos, px[c:c + 16] * wk) / rx[c:c + 16, :1]) \
                / ((cos @ (pw * wk)) / rw[0])
        j = np.argmax(ratio, axis=1)
        lag = lags[np.arange(F), j]
        best = np.maximum(best, ratio[np.arange(F), j])
    best = np.clip(best, 1e-9, 1.0)
    cap = 10.0 ** (HNR_MAX_DB / 10.0)
    out = 10.0 * np.log10(np.minimum(best / np.maximum(1.0 - best, 1e-12), cap))
    out[zero] = np.nan
    return out


def frame_hnr_db(audio: np.ndarray, sample_rate: int, f0_hz: float) -> np.ndarray:
    """Harmonic-to-noise ratio (dB, :func:`windowed_hnr_db`) of frames of ``audio`` whose f0 is about ``f0_hz``:
    windows of :func:`hnr_window` every HNR_HOP_S; frames more than HNR_RANGE_DB below the loudest (and silent
    ones) left out. Pure."""
    x = np.asarray(audio, np.float64)
    if not np.isfinite(f0_hz) or f0_hz <= 0:
        return np.zeros(0)
    n = hnr_window(sample_rate, f0_hz)
    hop = max(1, int(HNR_HOP_S * sample_rate))
    if len(x) < n:
        return np.zeros(0)
    starts = np.arange(0, len(x) - n + 1, hop)
    frames = x[starts[:, None] + np.arange(n)[None, :]]
    power = np.var(frames, axis=1)
    keep = (power > 0) & (power >= power.max() * 10.0 ** (-HNR_RANGE_DB / 10.0))
    h = windowed_hnr_db(frames[keep], sample_rate / float(f0_hz))
    return h[np.isfinite(h)]


def harmonic_to_noise_db(audio: np.ndarray, sample_rate: int, f0_hz: float) -> float:
    """A note's harmonic-to-noise ratio (dB): the median of :func:`frame_hnr_db`; NaN when no frame sounds."""
    h = frame_hnr_db(audio, sample_rate, f0_hz)
    return float(np.median(h)) if len(h) else float("nan")
