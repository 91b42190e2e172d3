"""Issue 39 item 8: ``plot`` draws digital silence without a RuntimeWarning and starts at the first event."""
from __future__ import annotations

import json
import warnings

import numpy as np
import soundfile as sf

from realtime.offline.plot import plot_session, time_span


def _take(folder, sr=16000):
    """A session folder: 1 s of digital silence, then a 0.5 s tone from the note-on at 1.0 s."""
    folder.mkdir()
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr)
    sf.write(str(folder / "audio.wav"), np.concatenate([np.zeros(sr), tone]).astype(np.float32), sr)
    (folder / "session.json").write_text(json.dumps({"audio": "audio.wav", "model_rate": sr}))
    (folder / "events.jsonl").write_text(json.dumps({"sample": sr, "param": "note_on", "value": 69}) + "\n")
    return folder


def test_plot_silence_without_warning(tmp_path):
    take = _take(tmp_path / "take")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plot_session(take)
    assert png == take / "session.png" and png.stat().st_size > 1000


def test_time_axis_starts_at_first_event():
    events = [{"sample": 24000, "param": "note_on"}, {"sample": 16000, "param": "note_on"}, {"note": "no sample"}]
    assert time_span(events, 16000, 3.0) == (1.0, 3.0)
    assert time_span([], 16000, 3.0) == (0.0, 3.0)
    assert time_span([{"sample": 10 * 16000}], 16000, 3.0) == (0.0, 3.0)  # an event past the end: whole take
