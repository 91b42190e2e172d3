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
