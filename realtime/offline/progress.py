"""A progress bar for a long offline render: audio seconds done, real-time factor, time left.

Thread: the render loop (called once per block). On stderr, drawn with rich, and only when it helps:
never when the stream is not a terminal (a pipe, a log, a test), and only once the render has run
``probe_s`` and the speed so far says the whole will take more than ``min_seconds``. Redrawn at most
``per_second`` times a second; a call between redraws costs a clock read.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``seconds`` as h:mm:ss."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def describe(done: int, total: int, sample_rate: float, wall: float) -> str:
    """``"12.3 / 300.0 s audio, 5.2x real time, 0:00:55 left"`` for ``done`` of ``total`` samples in ``wall`` s."""
    audio = done / sample_rate
    rtf = audio / wall if wall > 0 else 0.0
    left = (total - done) / sample_rate / rtf if rtf > 0 else float("inf")
    eta = clock(left) if left != float("inf") else "?"
    return f"{audio:.1f} / {total / sample_rate:.1f} s audio, {rtf:.1f}x real time, {eta} left"


class RenderProgress:
    """Call with the model-rate samples done so far (``run_stream``'s ``progress``); :meth:`close` at the end."""

    def __init__(self, total: int, sample_rate: float, stream: TextIO | None = None, min_seconds: float = 3.0,
                 probe_s: float = 0.5, per_second: float = 4.0) -> None:
        self.total, self.sample_rate = int(total), float(sample_rate)
        self.stream = stream if stream is not None else sys.stderr
        self.min_seconds, self.probe_s, self.every = float(min_seconds), float(probe_s), 1.0 / per_second
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = False
        self._t0 = time.perf_counter()
        self._next = self._t0 + self.probe_s
        self._progress = None
        self._task = None

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now < self._next and not (self.shown and done >= self.total):  # the last block always shows
            return
        self._next = now + self.every
        wall = now - self._t0
        if not self.shown:
            if done <= 0 or done >= self.total or wall * self.total / done <= self.min_seconds:
                return
            self._show()
        self._progress.update(self._task, completed=done, text=describe(done, self.total, self.sample_rate, wall))
        self._progress.refresh()

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(TextColumn("rendering"), BarColumn(), TextColumn("{task.fields[text]}"),
                                  console=Console(file=self.stream), auto_refresh=False, transient=False)
        self._task = self._progress.add_task("render", total=self.total, text="")
        self._progress.start()
        self.shown = True

    def close(self, done: int | None = None) -> None:
        """Draw the last state and end the bar (if it was shown)."""
        if self._progress is None:
            return
        if done is not None:
            wall = time.perf_counter() - self._t0
            self._progress.update(self._task, completed=done,
                                  text=describe(done, self.total, self.sample_rate, wall))
        self._progress.refresh()
        self._progress.stop()
        self._progress = None

    def __enter__(self) -> "RenderProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
