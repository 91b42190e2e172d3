"""Issue 40, the live audio input under a real JACK server: a JACK client plays a known tone into the host's input
port (``--input``), a note-on in prime mode primes the network from the input's last 128 ms, and the note goes on
from it: its f0 and level over the first 100 ms after the prime match the tone's. The status line shows the
input's level, the take records the input (input.wav), and it replays sample for sample."""
from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from jack_server import wait_for_ports
from live_rig import live_rig
from test_host_jack import _run

pytestmark = [pytest.mark.jack, pytest.mark.slow]
NAME = "wnl-input"
ROOT = Path(__file__).resolve().parents[2]
HZ, AMP = 220.0, 0.1  # A3, the note played (57); the tone's peak (RMS -25.3 dBFS)


def tone(rate: int, seconds: float) -> np.ndarray:
    """A harmonic tone (six partials falling 4.4 dB each) at ``HZ``, peak ``AMP``."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(0.6 ** (k - 1) * np.sin(2 * np.pi * HZ * k * t) for k in range(1, 7))
    return (AMP * x / np.max(np.abs(x))).astype(np.float32)


def db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


class TonePlayer:
    """A JACK client playing ``audio`` once from :meth:`play` on (its process callback only copies)."""

    def __init__(self, name: str, audio: np.ndarray) -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.outports.register("out")
        self.audio, self.pos, self.playing = audio, 0, False
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        buf = self.port.get_array()
        n = min(frames, len(self.audio) - self.pos) if self.playing else 0
        buf[:max(n, 0)] = self.audio[self.pos:self.pos + max(n, 0)]
        buf[max(n, 0):] = 0.0
        self.pos += max(n, 0)

    def __enter__(self) -> "TonePlayer":
        self.client.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.client.deactivate()
        self.client.close()


def input_preset(tmp: Path) -> Path:
    p = tmp / "input.toml"
    p.write_text(f"""name = "input-test"
[model]
path = "{ROOT / 'models/default/model.npz'}"
[sound]
gain_db = 0.0
velocity_to_level = 0.0
[audio]
blocksize = 256
lead_ms = 60.0
[input]
mode = "prime"
prime_ms = 128.0
""")
    return p


def test_a_note_primed_from_the_jack_input_continues_the_tone_and_the_take_replays(jack_server, tmp_path):
    from realtime.sound.audio_input import estimate_f0

    take = tmp_path / "take"
    with live_rig(NAME, input_preset(tmp_path), take=take, seconds=90, args=("--input", "default"),
                  playing_timeout=300, channels=2, connect=False) as (proc, kbd, cap), \
            TonePlayer(f"{NAME}-tone", tone(cap.rate, 20.0)) as player:
        rate = cap.rate
        (host_in,) = wait_for_ports(cap.client, rf"^{NAME}:in_0$", is_input=True)
        for src in cap.client.get_all_connections(host_in):  # only the tone (the dummy capture is silent anyway)
            cap.client.disconnect(src, host_in)
        cap.client.connect(f"{NAME}-tone:out", host_in)
        cap.connect_from(f"{NAME}:out_0", f"{NAME}-tone:out")  # the host's output, and the tone it hears
        cap.recording = True
        player.playing = True
        time.sleep(1.0)  # the input's history fills
        on = cap.frame_time()
        kbd.send_message([0x90, 57, 100])
        time.sleep(1.0)
        kbd.send_message([0x80, 57, 0])
        time.sleep(0.5)
        proc.proc.send_signal(signal.SIGINT)
        rc = proc.stop(signal.SIGINT, timeout=60)
        y, heard = cap.audio[:cap.pos, 0].copy(), cap.audio[:cap.pos, 1].copy()
        i_on = cap.index_of_frame(on)
    assert rc == 0, proc.err[-10:]
    summary = proc.summary()
    # the status line shows the input's level: the tone's peak is -20 dBFS
    levels = [float(m.group(1)) for line in proc.err for m in re.finditer(r"in (-?\d+) dB prime", line)]
    assert levels and -24 <= max(levels) <= -17, proc.err[-5:]
    # the note: its onset in the capture, then the first 100 ms after the 5 ms crossfade
    thr = 0.3 * AMP
    hit = np.flatnonzero(np.abs(y[i_on:i_on + rate]) > thr)
    assert hit.size, "the note was not heard"
    start = i_on + int(hit[0]) + int(0.005 * rate)
    first = y[start:start + int(0.1 * rate)]
    f0 = estimate_f0(first, rate)
    cents = 1200 * np.log2(f0 / HZ) if f0 else np.inf
    tone_db = db(heard[start:start + int(0.1 * rate)])
    print(f"\nlive through JACK: the note {1000 * hit[0] / rate:.0f} ms after the note-on was sent; first 100 ms "
          f"after the prime: f0 {f0:.1f} Hz ({cents:+.1f} cents from the tone's {HZ:.0f}), level {db(first):.1f} "
          f"dBFS (the tone: {tone_db:.1f}); status line input peaks {sorted(set(levels))}; underruns "
          f"{summary['underruns']} (lead 60 ms, the prime pass on the generator thread)")
    assert abs(cents) < 50
    assert abs(db(first) - tone_db) < 4.0
    # the take: the note was primed from the input, which was recorded; it replays sample for sample
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    ons = [e for e in evs if e["param"] == "note_on"]
    assert len(ons) == 1 and ons[0].get("prime") == "input", ons
    man = json.loads((take / "session.json").read_text())
    assert man["input"] == "input.wav" and man["input_rate"] == 16000 and man["input_frames"] > 0
    rec_in, in_rate = sf.read(str(take / "input.wav"), dtype="float32")
    assert in_rate == 16000 and abs(db(rec_in[-int(1.5 * in_rate):-int(0.5 * in_rate)]) - db(tone(16000, 1.0))) < 1.5
    audio, _ = sf.read(str(take / "audio.wav"), dtype="float32")
    r = _run(["replay", str(take), "--out", str(tmp_path / "replay.wav")], timeout=600)
    assert r.returncode == 0, r.stderr
    replayed, _ = sf.read(str(tmp_path / "replay.wav"), dtype="float32")
    np.testing.assert_array_equal(replayed, audio)
    assert json.loads(r.stdout.strip().splitlines()[-1])["matches_recording"] is True


def test_a_wrong_input_device_is_one_line_naming_it(jack_server, tmp_path):
    r = _run(["--input", "no-such-input", "--seconds", "1", "--client-name", f"{NAME}-bad"], timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wavenet-live: error: input device 'no-such-input': no input "
                                                   "device matches (available inputs: ["), lines
    assert "--list-devices" in lines[0]
