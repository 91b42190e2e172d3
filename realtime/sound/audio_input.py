"""The live audio input as the session sees it (issue 40): one model-rate sample per generated sample.

Thread: generator (live) or the render loop (offline). A *feed* supplies the input at the model rate:
:class:`FileFeed` (an audio file: ``render --input-file``, a replay's ``input.wav``, tests) or the live
host's :class:`realtime.live.audio_in.LiveFeed` (the device's ring, drained and resampled each block). The
:class:`InputChannel` pulls exactly ``n`` samples for each block of ``n`` the session generates, keeps the
last two seconds in a fixed history, and offers

* ``prime``: at a note-on, the last ``prime_ms`` of the input, for the controller to prime the network from
  (:meth:`realtime.control.controller.Controller.note_on`);
* ``continue``: a capture between a footswitch's press and release, primed from at release;
* ``through``: the block itself, mixed into the output before the limiter at ``level_db``.

Being sample-locked to the output, the input a take used is one model-rate stream, which the recorder writes
as ``input.wav`` and replay feeds back (:class:`FileFeed`): a take with input-primed notes replays sample
for sample. Nothing here allocates per block.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from realtime.control.presets import INPUT_MODES, InputSection

#: seconds of input history kept at the model rate (a prime needs at most the receptive field)
HISTORY_S = 2.0


class InputFileError(ValueError):
    """An input file is missing or unreadable (one line naming it)."""


def load_input_file(path: str | Path, model_rate: int, channel: int = 1) -> np.ndarray:
    """An audio file as the input at ``model_rate``: float32 mono (``channel``, 1-based; 0 = the mean), soxr HQ."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input file {path}: not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile's LibsndfileError / RuntimeError
        raise InputFileError(f"input file {path}: unreadable audio ({e})") from None
    if data.shape[0] == 0:
        raise InputFileError(f"input file {path}: no samples")
    if channel > data.shape[1]:
        raise InputFileError(f"input file {path}: no channel {channel} (it has {data.shape[1]})")
    mono = data.mean(axis=1) if channel == 0 else data[:, channel - 1]
    if sr != model_rate:
        import soxr

        mono = soxr.resample(mono, sr, model_rate, quality="HQ")
    return np.ascontiguousarray(mono, np.float32)


class FileFeed:
    """The input from an array at the model rate; silence after its end."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = np.asarray(audio, np.float32)
        self.pos = 0

    def read(self, out: np.ndarray) -> None:
        n = len(out)
        k = max(0, min(n, len(self.audio) - self.pos))
        out[:k] = self.audio[self.pos:self.pos + k]
        out[k:] = 0.0
        self.pos += n


class InputChannel:
    """The session's input: the feed pulled in step with generation, its history, mode, level and meter."""

    def __init__(self, feed, cfg: InputSection, model_rate: int, max_block: int = 16384) -> None:
        self.feed, self.cfg, self.rate = feed, cfg, int(model_rate)
        self.mode = cfg.mode
        self.level_db = cfg.level_db
        self.hist = np.zeros(int(HISTORY_S * self.rate), np.float32)  # the newest sample last
        self.block = np.zeros(max_block, np.float32)
        self._mix = np.zeros(max_block, np.float32)
        self.n_block = 0        # samples of the current block in ``block``
        self.total = 0          # samples pulled so far
        self.capture_from: int | None = None  # ``total`` at the footswitch's press (continue mode)
        self.peak_db = -120.0   # the meter: the last block's peak (dBFS), for the status line
        self.rms_db = -120.0    # its RMS
        self.prime_s = 0.0      # the last prime pass from the input took this long (generator thread)

    @property
    def gain(self) -> float:
        """through: the input's linear gain in the output (0 when off)."""
        return 0.0 if self.level_db == -math.inf else 10.0 ** (self.level_db / 20.0)

    def pull(self, n: int) -> np.ndarray:
        """The next ``n`` input samples (model rate), into the history; valid until the next pull."""
        if n > len(self.block):
            self.block, self._mix = np.zeros(n, np.float32), np.zeros(n, np.float32)
        x = self.block[:n]
        self.feed.read(x)
        h = self.hist
        if n >= len(h):
            h[:] = x[n - len(h):]
        else:
            h[:-n] = h[n:]
            h[-n:] = x
        self.n_block = n
        self.total += n
        if n:
            peak = float(np.max(np.abs(x)))
            self.peak_db = 20.0 * math.log10(max(peak, 1e-6))
            self.rms_db = 20.0 * math.log10(max(math.sqrt(float(np.dot(x, x)) / n), 1e-6))
        return x

    def mix_into(self, out: np.ndarray) -> None:
        """through: add the current block at ``level_db`` to ``out`` (in place, no allocation)."""
        n = len(out)
        m = np.multiply(self.block[:n], np.float32(self.gain), out=self._mix[:n])
        np.add(out, m, out=out)

    def last(self, n: int) -> np.ndarray:
        """The last ``n`` samples pulled (at most the history; zeros before the first), oldest first."""
        n = max(0, min(int(n), len(self.hist), self.total))
        return self.hist[len(self.hist) - n:].copy()

    def prime_audio(self) -> np.ndarray | None:
        """prime mode at a note-on: the last ``prime_ms`` of the input, or None when it is quieter than
        ``gate_db`` (RMS) and the seed bank should prime instead."""
        x = self.last(int(round(self.cfg.prime_ms / 1000.0 * self.rate)))
        if len(x) == 0 or rms_db(x) < self.cfg.gate_db:
            return None
        return x

    def set_mode_from(self, x: float) -> str:
        """A CC position 0..1 picks a mode: off, prime, continue, through in four equal ranges."""
        self.mode = INPUT_MODES[min(len(INPUT_MODES) - 1, int(x * len(INPUT_MODES)))]
        return self.mode

    def describe(self) -> str:
        """For the status line: ``in -18 dB prime`` (the last block's peak)."""
        lvl = "-inf" if self.peak_db <= -119.0 else f"{self.peak_db:.0f}"
        return f"in {lvl} dB {self.mode}"


def rms_db(x: np.ndarray) -> float:
    """RMS of ``x`` in dBFS (-120 for silence)."""
    if len(x) == 0:
        return -120.0
    return 20.0 * math.log10(max(math.sqrt(float(np.dot(x.astype(np.float64), x.astype(np.float64))) / len(x)),
                                 1e-6))


def estimate_f0(x: np.ndarray, rate: int, fmin: float = 50.0, fmax: float = 1200.0) -> float | None:
    """The f0 of ``x`` (Hz) by normalised autocorrelation with parabolic interpolation; None if unvoiced
    (its best normalised correlation is below 0.5)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean()
    n = len(x)
    lo, hi = max(2, int(rate / fmax)), min(n // 2, int(rate / fmin))
    if hi <= lo + 2 or not np.any(x):
        return None
    size = 1 << int(2 * n - 1).bit_length()
    spec = np.fft.rfft(x, size)
    ac = np.fft.irfft(spec * np.conj(spec), size)[:n]
    energy = np.cumsum(x[::-1] ** 2)[::-1]  # energy of x[k:]
    norm = ac[:hi + 1] / np.sqrt(np.maximum(energy[0] * energy[:hi + 1], 1e-18))
    seg = norm[lo:hi + 1]
    # the first peak within 90 % of the best: avoids octave errors at multiples of the period
    best = float(seg.max())
    if best < 0.5:
        return None
    k = lo + int(np.argmax(seg >= 0.9 * best))
    while k + 1 <= hi and norm[k + 1] > norm[k]:
        k += 1
    if 0 < k < len(norm) - 1:
        a, b, c = norm[k - 1], norm[k], norm[k + 1]
        d = a - 2 * b + c
        k = k + (0.5 * (a - c) / d if d != 0 else 0.0)
    return rate / k


def midi_of_hz(hz: float) -> float:
    return 69.0 + 12.0 * math.log2(hz / 440.0)
