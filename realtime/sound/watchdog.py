"""Generation watchdog: detects collapse and blow-up and asks for a recovery.

Thread: generator (live) or the render loop. Pure numpy, cheap: it looks at
the model-rate output in 100 ms windows (one small FFT each) and at the
engine's count of non-finite logits. Conditions, each with a threshold in the
preset's ``[watchdog]`` section:

- silence while a note is held (RMS below ``silence_db`` for ``silence_s``),
- a dropout: a held note falls silent (25 ms sub-windows below ``silence_db``
  for ``dropout_s`` once the hold-off is over) having been ``dropout_db`` louder
  within the 0.2 s before, or having not sounded at all since its note-on (or
  the last recovery): caught in 50 ms instead of 0.4 s, while a natural decay
  (a few dB per 0.2 s) is left to the slower rule; instruments in ``decay_ok``
  (a drum hit decays to silence while its key is held) are exempt from both,
  except for a note that has not sounded at all (a hit that never came),
- DC drift (|mean| above ``dc_max`` for ``dc_s``),
- noise-like output while a note is held (spectral flatness above
  ``flatness_max`` for ``noise_s``; instruments in ``noise_ok`` are exempt),
- NaN/Inf in logits or samples (immediately).

It is deterministic (no clocks), so a replayed take recovers at the same samples.
"""
from __future__ import annotations

import numpy as np

from realtime.control.presets import WatchdogSection, instrument_names


class Watchdog:
    """Feed it every generated block; ``check`` returns a reason string when a recovery is due."""

    window_s = 0.1     # analysis window (seconds)
    hold_off_s = 0.15  # after a note-on or a recovery, give the network this long
    sub_s = 0.025      # dropout check: level of each sub-window (seconds)
    lookback_s = 0.2   # ... a dropout fell from dropout_db above silence_db within this long (seconds)

    def __init__(self, cfg: WatchdogSection, sample_rate: int) -> None:
        self.cfg = cfg
        self.noise_ok = instrument_names(cfg.noise_ok)
        self.decay_ok = instrument_names(cfg.decay_ok)
        self.n = max(64, int(self.window_s * sample_rate))
        self.sample_rate = sample_rate
        self.buf = np.zeros(self.n, np.float32)
        self.fill = 0
        self.win = np.hanning(self.n)
        self.silent = self.dc = self.noisy = 0  # consecutive windows
        self.hold_off = 0                        # samples left before judging
        self.seen_nonfinite = 0
        self.recoveries: dict[str, int] = {}
        self.m = max(16, int(self.sub_s * sample_rate))  # sub-window (samples)
        self.sub_sq = 0.0                                  # running sum of squares of the current sub-window
        self.sub_fill = 0
        self.levels = np.full(max(1, int(round(self.lookback_s / self.sub_s))), -np.inf)  # ring of dBFS
        self.lv_pos = 0
        self.quiet = 0                # consecutive silent sub-windows while held
        self.fell_from = -np.inf      # the loudest sub-window of the lookback before them (dBFS)
        self.sounded = False          # a sub-window at or above silence_db since the last note_started

    def windows(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.sample_rate / self.n)))

    def note_started(self) -> None:
        """A note-on or a recovery: restart the counters and wait ``hold_off_s`` (the level history
        stays: a re-primed note that dies during the hold-off is a dropout too)."""
        self.silent = self.dc = self.noisy = self.quiet = 0
        self.sounded = False
        self.hold_off = int(self.hold_off_s * self.sample_rate)

    def check(self, block: np.ndarray, nonfinite_count: int, note_held: bool, noise_ok: bool,
              decay_ok: bool = False) -> str | None:
        """Look at one output block (model rate, before the output stage). Returns a reason or None.

        ``noise_ok``/``decay_ok``: the playing instrument is exempt from the noise / silence checks."""
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
                reason = reason or self._judge(note_held, noise_ok, decay_ok)
        pos = 0
        while pos < len(block):
            k = min(self.m - self.sub_fill, len(block) - pos)
            seg = np.nan_to_num(block[pos:pos + k].astype(np.float64))
            self.sub_sq += float(seg @ seg)
            self.sub_fill += k
            pos += k
            if self.sub_fill == self.m:
                dropout = self._judge_sub(note_held, decay_ok)  # always: it ends the sub-window
                reason = reason or dropout
        self.hold_off = max(0, self.hold_off - len(block))
        if reason is not None:
            self.recoveries[reason] = self.recoveries.get(reason, 0) + 1
            self.note_started()
        return reason

    def _judge(self, note_held: bool, noise_ok: bool, decay_ok: bool) -> str | None:
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
        self.silent = self.silent + 1 if rms_db < c.silence_db and not decay_ok else 0
        if self.silent >= self.windows(c.silence_s):
            return "silence"
        if not noise_ok and rms_db >= c.silence_db:
            p = np.abs(np.fft.rfft((x - mean) * self.win)) ** 2 + 1e-20
            flat = float(np.exp(np.mean(np.log(p))) / np.mean(p))
            self.noisy = self.noisy + 1 if flat > c.flatness_max else 0
            if self.noisy >= self.windows(c.noise_s):
                return "noise"
        return None

    def _judge_sub(self, note_held: bool, decay_ok: bool) -> str | None:
        """One finished sub-window: record its level, and call a dropout when it is due (for a
        ``decay_ok`` instrument only a note that has not sounded at all: a drum hit that never came)."""
        c = self.cfg
        db = 10.0 * np.log10(self.sub_sq / self.m + 1e-20)  # RMS about 0: a DC offset is the DC rule's
        self.sub_sq = 0.0
        self.sub_fill = 0
        before = float(self.levels.max())
        self.levels[self.lv_pos] = db
        self.lv_pos = (self.lv_pos + 1) % len(self.levels)
        self.sounded = self.sounded or db >= c.silence_db
        if not note_held or self.hold_off > 0 or c.dropout_s <= 0 or db >= c.silence_db:
            self.quiet = 0
            return None
        if self.quiet == 0:
            self.fell_from = before
        self.quiet += 1
        fell = (self.fell_from >= c.silence_db + c.dropout_db and not decay_ok) or not self.sounded
        if fell and self.quiet >= max(1, int(round(c.dropout_s / self.sub_s))):
            return "dropout"
        return None

    @property
    def total(self) -> int:
        return sum(self.recoveries.values())
