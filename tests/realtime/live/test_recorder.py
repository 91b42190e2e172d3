"""The recorder: exact audio, bounded buffering, disk trouble never blocks the generator."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf

from realtime.live.recorder import Recorder, RecordError


def blocks(n_blocks: int, size: int = 160, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.9, 0.9, size).astype(np.float32) for _ in range(n_blocks)]


def test_session_folder_holds_exact_audio_events_and_manifest(tmp_path):
    rec = Recorder(tmp_path / "take", flush_s=0.05)
    rec.begin(48000, {"seed": 3, "preset": {"model": {}}})
    bs = blocks(300)
    for i, b in enumerate(bs):
        rec.write(b)
        if i % 50 == 0:
            rec.event({"sample": i * 160, "param": "note_on", "value": 60 + i // 50, "midi": [0x90, 60, 100]})
    rec.close({"underruns": 2})
    audio, sr = sf.read(str(tmp_path / "take" / "audio.wav"), dtype="float32")
    assert sr == 48000
    np.testing.assert_array_equal(audio, np.concatenate(bs))
    evs = [json.loads(x) for x in (tmp_path / "take" / "events.jsonl").read_text().splitlines()]
    assert [e["value"] for e in evs] == [60, 61, 62, 63, 64, 65]
    man = json.loads((tmp_path / "take" / "session.json").read_text())
    assert man["seed"] == 3 and man["frames_written"] == 300 * 160 and man["frames_dropped"] == 0
    assert man["underruns"] == 2 and man["device_rate"] == 48000


def test_plain_wav_path_writes_only_that_file(tmp_path):
    rec = Recorder(tmp_path / "x.wav", flush_s=0.05)
    rec.begin(16000, {})
    rec.write(np.full(1000, 0.25, np.float32))
    rec.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]
    assert sf.info(str(tmp_path / "x.wav")).frames == 1000


def test_file_is_readable_while_recording(tmp_path):
    """The header is kept current: another process can read all flushed audio mid-take."""
    rec = Recorder(tmp_path / "live.wav", flush_s=0.02)
    rec.begin(16000, {})
    data = blocks(100)
    for b in data:
        rec.write(b)
    time.sleep(0.3)
    audio, _ = sf.read(str(tmp_path / "live.wav"), dtype="float32")
    np.testing.assert_array_equal(audio, np.concatenate(data))
    rec.close()


def test_slow_disk_fills_the_ring_then_drops_without_blocking(tmp_path):
    rec = Recorder(tmp_path / "slow.wav", max_buffer_s=0.5, flush_s=0.01)
    rec.begin(16000, {})
    real_write = rec._sf.write

    def stalled(x):  # a disk that hangs for 1.5 s
        time.sleep(1.5)
        real_write(x)

    rec._sf.write = stalled
    worst = 0.0
    total = 0
    for b in blocks(300):  # 3 s of audio pushed at once while the writer is stuck
        t0 = time.perf_counter()
        rec.write(b)
        worst = max(worst, time.perf_counter() - t0)
        total += len(b)
    assert worst < 0.005  # the generator never waits on the disk
    assert rec.frames_dropped > 0
    rec.close()
    info = sf.info(str(tmp_path / "slow.wav"))
    assert info.frames + rec.frames_dropped == total
    assert info.frames >= 8192  # the bounded ring's worth was kept (0.5 s -> 8192 frames)


def test_disk_full_mid_session_keeps_what_was_written(tmp_path):
    rec = Recorder(tmp_path / "full", flush_s=0.01)
    rec.begin(16000, {})
    good = blocks(50)
    for b in good:
        rec.write(b)
    time.sleep(0.2)

    def full(x):
        raise OSError(28, "No space left on device")

    rec._sf.write = full
    for b in blocks(50, seed=1):
        rec.write(b)
    time.sleep(0.2)
    assert "writing stopped" in rec.error and "No space left" in rec.error
    rec.close()
    audio, _ = sf.read(str(tmp_path / "full" / "audio.wav"), dtype="float32")
    np.testing.assert_array_equal(audio, np.concatenate(good))
    man = json.loads((tmp_path / "full" / "session.json").read_text())
    assert man["frames_written"] == 50 * 160 and man["frames_dropped"] == 50 * 160 and man["error"]


def test_unwritable_path_fails_before_anything_starts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecordError, match="file/take"):
        Recorder(blocker / "take")


def test_flac_session_folder(tmp_path):
    rec = Recorder(tmp_path / "take", audio_format="flac", flush_s=0.02)
    rec.begin(48000, {})
    data = blocks(100)
    for b in data:
        rec.write(b)
    rec.close()
    audio, sr = sf.read(str(tmp_path / "take" / "audio.flac"), dtype="float32")
    assert sr == 48000 and len(audio) == 16000
    np.testing.assert_allclose(audio, np.concatenate(data), atol=2 ** -22)  # 24-bit
    assert json.loads((tmp_path / "take" / "session.json").read_text())["audio"] == "audio.flac"
