"""Generation watchdog: detects collapse and blow-up and asks for a recovery.

Thread: generator (live) or the render loop. Pure numpy, cheap: it looks at
the model-rate output in 100 ms windows (one small FFT each) and at the
engine's count of non-finite logits. Conditions, each with a threshold in the
preset's ``[watchdog]`` section:

- silence while a note is held (RMS below ``silence_db`` for ``silence_s``),
- DC drift (|mean| above ``dc_max`` for ``dc_s``),
- noise-like output while a note is held (spectral flatness above
  ``flatness_max`` for ``noise_s``; instruments in ``noise_ok`` are exempt),
- NaN/Inf in logits or samples (immediately).

It is deterministic (no clocks), so a replayed take recovers at the same samples.
"""
from __future__ import annotations

import numpy as np

from .presets import WatchdogSection


class Watchdog:
    """Feed it every generated block; ``check`` returns a reason string when a recovery is due."""

    window_s = 0.1     # analysis window (seconds)
    hold_off_s = 0.15  # after a note-on or a recovery, give the network this long

    def __init__(self, cfg: WatchdogSection, sample_rate: int) -> None:
        self.cfg = cfg
        self.noise_ok = tuple(x.strip() for x in cfg.noise_ok.split(",") if x.strip())
        self.n = max(64, int(self.window_s * sample_rate))
        self.sample_rate = sample_rate
        self.buf = np.zeros(self.n, np.float32)
        self.fill = 0
        self.win = np.hanning(self.n)
        self.silent = self.dc = self.noisy = 0  # consecutive windows
        self.hold_off = 0                        # samples left before judging
        self.seen_nonfinite = 0
        self.recoveries: dict[str, int] = {}

    def windows(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.sample_rate / self.n)))

    def note_started(self) -> None:
        """A note-on or a recovery: restart the counters and wait ``hold_off_s``."""
        self.silent = self.dc = self.noisy = 0
        self.hold_off = int(self.hold_off_s * self.sample_rate)

    def check(self, block: np.ndarray, nonfinite_count: int, note_held: bool, noise_ok: bool) -> str | None:
        """Look at one output block (model rate, before the output stage). Returns a reason or None."""
        if not self.cfg.enabled:
            return None
        reason = None
        if nonfinite_count > self.seen_nonfinite or not np.isfinite(block).all():
            self.seen_nonfinite = nonfinite_count
            reason = "nonfinite"
        pos = 0
        while pos < len(block):
            k = min(self.n - self.fill, len(block) - pos)
            self.buf[self.fill:self.fill + k] = block[pos:pos + k]
            self.fill += k
            pos += k
            if self.fill == self.n:
                self.fill = 0
                reason = reason or self._judge(note_held, noise_ok)
        self.hold_off = max(0, self.hold_off - len(block))
        if reason is not None:
            self.recoveries[reason] = self.recoveries.get(reason, 0) + 1
            self.note_started()
        return reason

    def _judge(self, note_held: bool, noise_ok: bool) -> str | None:
        c = self.cfg
        x = np.nan_to_num(self.buf.astype(np.float64))
        mean = float(x.mean())
        rms_db = 10.0 * np.log10(float(np.mean((x - mean) ** 2)) + 1e-20)
        self.dc = self.dc + 1 if abs(mean) > c.dc_max else 0
        if self.dc >= self.windows(c.dc_s):
            return "dc"
        if not note_held or self.hold_off > 0:
            self.silent = self.noisy = 0
            return None
        self.silent = self.silent + 1 if rms_db < c.silence_db else 0
        if self.silent >= self.windows(c.silence_s):
            return "silence"
        if not noise_ok and rms_db >= c.silence_db:
            p = np.abs(np.fft.rfft((x - mean) * self.win)) ** 2 + 1e-20
            flat = float(np.exp(np.mean(np.log(p))) / np.mean(p))
            self.noisy = self.noisy + 1 if flat > c.flatness_max else 0
            if self.noisy >= self.windows(c.noise_s):
                return "noise"
        return None

    @property
    def total(self) -> int:
        return sum(self.recoveries.values())
