"""Render straight to an audio file: each block is written as it is made, so memory stays flat.

Thread: the caller's (the render loop). Output: ``.wav`` as 16-bit PCM, ``.flac`` at soundfile's
default subtype, at the model rate or resampled on the way with one streaming soxr HQ resampler
(flushed at the end, so the file has the whole ``n * rate / model_rate`` frames). Nothing grows with
the length of the render: one block in flight, the file on disk (the session's event log is not
kept either; a session folder render keeps its events in events.jsonl, see realtime.live.recorder).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from realtime.offline.render import Session, make_engine, run_stream, tail_room


class AudioFileSink:
    """A ``run_stream`` sink writing blocks to ``path`` (resampled from ``in_rate`` to ``out_rate``)."""

    def __init__(self, path: str | Path, in_rate: int, out_rate: int) -> None:
        import soundfile as sf

        self.path = Path(path)
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.frames = 0
        self._soxr = None
        if self.out_rate != self.in_rate:
            import soxr

            self._soxr = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")
        subtype = "PCM_16" if self.path.suffix.lower() == ".wav" else None
        try:
            self._sf = sf.SoundFile(str(self.path), "w", self.out_rate, 1, subtype=subtype)
        except (OSError, RuntimeError, TypeError, ValueError) as e:
            raise OSError(f"output {self.path}: cannot write ({e})") from None

    def write(self, block: np.ndarray) -> None:
        """Append one model-rate block (resampled on the way)."""
        self._put(block if self._soxr is None else self._soxr.resample_chunk(block))

    def event(self, ev: dict[str, Any]) -> None:
        """Events are not kept in an audio file."""

    def close(self) -> None:
        """Flush the resampler's tail and close the file."""
        if self._soxr is not None:
            self._put(self._soxr.resample_chunk(np.zeros(0, np.float32), last=True))
            self._soxr = None
        self._sf.close()

    def _put(self, y: np.ndarray) -> None:
        if len(y):
            try:
                self._sf.write(y)
            except (OSError, RuntimeError) as e:
                raise OSError(f"output {self.path}: cannot write ({e})") from None
            self.frames += len(y)


def warm_up(session: Session) -> None:
    """Run a throwaway engine of the session's kind for a sample, so JIT compilation happens now, not in
    the render being timed (as realtime.offline.render.timed_render does)."""
    name = session.engine.name if not session.engine.name.startswith("poly") else session.preset.model.engine
    make_engine(name, session.model, compute=session.preset.model.compute).generate(1)


def render_to_file(session: Session, timeline: list[tuple[int, bytes]], n_samples: int, path: str | Path,
                   block: int = 1024, out_rate: int | None = None,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Render ``n_samples`` (model rate) of ``timeline`` into ``path``; returns {seconds, samples,
    sample_rate, rtf, engine, out, frames}. Call :func:`warm_up` first for a real-time factor without JIT
    compilation in it."""
    sr = session.engine.sample_rate
    session.keep_log = False
    sink = AudioFileSink(path, sr, out_rate or sr)
    t0 = time.perf_counter()
    try:
        total, stop_at = tail_room(session, n_samples)  # an effect chain's tail rings out after the end
        shown = None if progress is None else (lambda pos: progress(min(pos, n_samples)))  # the tail: at 100 %
        run_stream(session, timeline, total, block, sink=sink, progress=shown, keep=False, stop_at=stop_at)
    finally:
        sink.close()
    wall = time.perf_counter() - t0
    return {"seconds": round(n_samples / sr, 6), "samples": int(n_samples), "sample_rate": int(sr),
            "rtf": round((n_samples / sr) / max(wall, 1e-9), 3), "engine": session.engine.name,
            "out": str(sink.path), "frames": sink.frames}
