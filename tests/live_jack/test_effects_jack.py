"""Issue 40, the effect chain live under a real JACK server: a reverb's tail is heard after note-off and after
Ctrl-C, the status line names the chain, and the take (a CC sweeping the reverb's wet level, the tail after
the stop) replays sample for sample."""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import soundfile as sf
from live_rig import live_rig, write_preset
from test_host_jack import _run, sharp_random_model

pytestmark = [pytest.mark.jack, pytest.mark.slow]
NAME = "wnl-fx"


def reverb_preset(tmp):
    return write_preset(tmp / "reverb.toml", sharp_random_model(tmp / "m.npz"), name="fx-test", extra="""[[effects]]
type = "Reverb"
room_size = 0.9
damping = 0.3
wet_level = 0.5
dry_level = 0.8
[midi.cc]
91 = "fx1.wet_level"
""")


def db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def test_reverb_tail_live_after_note_off_and_after_stop_and_the_take_replays(jack_server, tmp_path):
    take = tmp_path / "take"
    with live_rig(NAME, reverb_preset(tmp_path), take=take, capture_seconds=40.0) as (proc, kbd, cap):
        on = cap.frame_time()
        kbd.send_message([0x90, 60, 110])
        for k in range(12):  # the CC sweeps the reverb's wet level while the note sounds
            kbd.send_message([0xB0, 91, 40 + 7 * k])
            time.sleep(0.05)
        off = cap.frame_time()
        kbd.send_message([0x80, 60, 0])
        time.sleep(1.5)
        kbd.send_message([0x90, 64, 110])
        time.sleep(0.5)
        kbd.send_message([0x80, 64, 0])
        stop = cap.frame_time()
        proc.proc.send_signal(signal.SIGINT)  # Ctrl-C right after the note-off: the tail still rings out
        rc = proc.stop(signal.SIGINT, timeout=60)
        ended = cap.frame_time()
        time.sleep(0.3)
        y, rate = cap.recorded().copy(), cap.rate
        i_on, i_off, i_stop = cap.index_of_frame(on), cap.index_of_frame(off), cap.index_of_frame(stop)
        i_end = cap.index_of_frame(ended)
    assert rc == 0, proc.err[-10:]
    assert any("fx Reverb" in line for line in proc.err), proc.err[-5:]  # the status line names the chain
    held = db(y[i_on + int(0.1 * rate):i_off])
    after_off = db(y[i_off + int(0.3 * rate):i_off + int(0.6 * rate)])  # 10-20 release times after note-off
    late = db(y[i_off + int(1.2 * rate):i_off + int(1.45 * rate)])
    after_stop = db(y[i_stop + int(0.3 * rate):i_stop + int(0.6 * rate)])
    print(f"\nlive through JACK: held {held:.1f} dB, 0.3-0.6 s after note-off {after_off:.1f} dB, 1.2 s after "
          f"{late:.1f} dB; 0.3-0.6 s after Ctrl-C {after_stop:.1f} dB; the process ended "
          f"{(i_end - i_stop) / rate:.2f} s after Ctrl-C")
    assert held > -40
    assert held - 30 < after_off < held  # the reverb is heard after the note ended ...
    assert late < after_off - 10         # ... and decays
    assert after_stop > held - 30        # after Ctrl-C too: the tail rings out before the fade
    assert (i_end - i_stop) / rate > 0.6
    # the take: what was heard, the sweep and the stop logged, replayed sample for sample
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    sweep = [e["value"] for e in evs if e["param"] == "fx1.wet_level"]
    assert len(sweep) == 12 and sweep == sorted(sweep) and sweep[-1] == pytest.approx(117 / 127, abs=1e-5)
    assert [e["param"] for e in evs].count("stop") == 1
    audio, rate_take = sf.read(str(take / "audio.wav"), dtype="float32")
    stop_frame = next(e["device_frame"] for e in evs if e["param"] == "stop")
    assert db(audio[stop_frame:stop_frame + int(0.3 * rate_take)]) > held - 30  # the recording holds the tail
    r = _run(["replay", str(take), "--out", str(tmp_path / "replay.wav")], timeout=300)
    assert r.returncode == 0, r.stderr
    replayed, _ = sf.read(str(tmp_path / "replay.wav"), dtype="float32")
    np.testing.assert_array_equal(replayed, audio)
    assert json.loads(r.stdout.strip().splitlines()[-1])["matches_recording"] is True
