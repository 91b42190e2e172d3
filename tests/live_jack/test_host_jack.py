"""The live host against a real (dummy-driver) JACK server: pace, underruns, MIDI end to end, latency, CLI.

In-process tests drive :class:`realtime.live.host.LiveHost` with a sine source
so the underrun ramp is measurable; end-to-end tests run ``run_live.py`` as
a subprocess with a virtual JACK MIDI input, play it from an rtmidi JACK
output and record its JACK audio output with a JACK-Client client.
Figures are printed (``pytest -s`` shows them).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

try:
    from .jack_server import JackCapture
    from .live_rig import LiveProcess, live_rig
    from .live_rig import write_preset as _write_preset
except ImportError:
    from jack_server import JackCapture
    from live_rig import LiveProcess, live_rig
    from live_rig import write_preset as _write_preset

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.jack


# ---------------------------------------------------------------- helpers
class SineSession:
    """A ``Session`` stand-in: a steady sine at the model rate (``generate``), MIDI ignored."""

    def __init__(self, rate: int = 16000, freq: float = 200.0, amp: float = 0.5) -> None:
        self.engine = SimpleNamespace(sample_rate=rate)
        self.freq, self.amp, self.position = freq, amp, 0

    def generate(self, out: np.ndarray) -> np.ndarray:
        t = np.arange(self.position, self.position + len(out))
        out[:] = self.amp * np.sin(2 * np.pi * self.freq * t / self.engine.sample_rate)
        self.position += len(out)
        return out

    def apply_midi(self, data: bytes) -> list:
        return []


def sharp_random_model(path: Path, seed: int = 0) -> Path:
    """The small random model of the issue, with output and conditioning projections scaled x4 (``seed``: its
    random draw; 0 is the one measured below).

    At torch's default init the logits are nearly flat: every instrument gives
    the same white noise (measured offline: band-energy distance between
    instruments 1.0 dB, between repeats 1.0 dB). Scaled, instrument b is
    clearly different (8.7 dB vs 1.8 dB) while the net stays random.
    """
    from realtime.model.config import ConditioningSpec, WaveNetConfig
    from realtime.model.model_file import random_model

    # the local inputs it was measured with (a level input changes the random draw: 2.0 vs 1.0 dB)
    spec = ConditioningSpec(instruments=("a", "b"), local=("gate", "f0_sin", "f0_cos"))
    m = random_model(WaveNetConfig(16, 32, 8, 1, conditioning=spec), seed=seed)
    for name in ("w_out1", "w_out2", "w_glob"):
        m.weights[name] = (m.weights[name] * 4.0).astype(np.float32)
    m.save(path)
    return path


def write_preset(tmp: Path, model: Path, lead_ms: float = 40.0, blocksize: int = 256) -> Path:
    return _write_preset(tmp / "test-preset.toml", model, name="test", blocksize=blocksize, lead_ms=lead_ms,
                         model_extra="period_noise = 0.0   # not the default preset's: these tests measure the "
                                     "network's own timbres\nloop_lowpass = 0.0\n")


def band_levels(x: np.ndarray, rate: float, top_hz: float = 8000.0, bands: int = 24) -> np.ndarray:
    """Log energies (dB) of ``bands`` equal bands up to ``top_hz``: an MFCC-ish timbre vector with level."""
    X = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    X = X[f < top_hz]
    edges = np.linspace(0, len(X), bands + 1).astype(int)
    return np.array([10 * np.log10(X[a:b].mean() + 1e-12) for a, b in zip(edges[:-1], edges[1:])])


def onset_after(y: np.ndarray, start: int, thr: float, limit: int) -> int | None:
    hit = np.flatnonzero(np.abs(y[start:start + limit]) > thr)
    return None if hit.size == 0 else start + int(hit[0])


# --------------------------------------------------- in-process: pace, underruns
@pytest.fixture(scope="class")
def sine_host(jack_server):
    from realtime.live.host import LiveHost

    host = LiveHost(SineSession(), lead_ms=40.0, blocksize=256, client_name="wnl-sine")
    host.start()
    try:
        yield host
    finally:
        host.stop()


class TestInProcessHost:
    """One sine host for the pace and underrun tests (stopped before the end-to-end tests start)."""

    @pytest.mark.slow
    def test_callback_runs_at_the_server_rate(self, sine_host, jack_server):
        """Frames the callback consumed / wall time = 48000 within 2 %, over ~8 s; underruns reported."""
        import jack

        c = jack.Client("wnl-clock", no_start_server=True)
        try:
            s0, w0, j0 = sine_host.snapshot(), time.monotonic(), c.frame_time
            time.sleep(8.0)
            s1, w1, j1 = sine_host.snapshot(), time.monotonic(), c.frame_time
        finally:
            c.close()
        rate = (s1.frames - s0.frames) / (w1 - w0)
        jack_rate = ((j1 - j0) % 2**32) / (w1 - w0)
        print(f"\npace: callback {rate:.0f} frames/s ({rate / jack_server.rate:.4f} of {jack_server.rate}), "
              f"JACK clock {jack_rate:.0f}/s; underruns {s1.underruns - s0.underruns}, "
              f"PortAudio underflow flags {s1.pa_underflows - s0.pa_underflows}, ring {s1.ring_ms:.1f} ms, "
              f"latency ~{s1.latency_ms:.0f} ms, loadavg {os.getloadavg()[0]:.2f}")
        assert abs(rate / jack_server.rate - 1.0) < 0.02
        assert sine_host.error is None


    @pytest.mark.slow
    def test_generator_stall_counts_an_underrun_and_ramps(self, sine_host, jack_server):
        """A 300 ms generator stall: >= 1 underrun counted, output fades to silence and back without a click.

        The click bound is judged on a capture free of JACK xruns and of cycles the (Python) capture
        client missed: either puts a step into the recording that the host's output does not have.
        Such a take is measured again, up to three times."""
        for attempt in range(3):
            m = _stall_take(sine_host)
            print(f"\nunderrun (take {attempt + 1}): count +{m.underruns} (short callbacks +{m.short}), "
                  f"missing frames +{m.missing}, silent {1000 * m.silent_s:.0f} ms, max step around it "
                  f"{m.max_step:.4f} at {m.worst_at:+d} samples from the gap's start (gap {m.gap} samples; tone's "
                  f"own max step {m.natural:.4f}, amplitude {m.amplitude:.3f}); JACK xruns {m.xruns}, "
                  f"capture gaps at {m.capture_gaps}")
            assert m.underruns >= 1
            assert m.silent_s > 0.1, "no silent gap: the stall did not reach the output"
            assert m.amplitude > 0.4, "the tone before the underrun was not steady"
            assert sine_host.error is None
            if m.xruns == 0 and not m.capture_gaps:
                assert m.max_step < 0.05
                return
        pytest.skip("every take had JACK xruns or capture gaps (machine overloaded); the click bound was not judged")


def _stall_take(host) -> SimpleNamespace:
    """Record the sine host's output around an injected 300 ms generator stall; measure the gap and its edges."""
    with JackCapture("wnl-rec-sine", seconds=4.0) as cap:
        cap.connect_from("wnl-sine:out_0")
        cap.recording = True
        time.sleep(1.0)
        before = host.snapshot()
        host.inject_stall(0.3)
        time.sleep(1.5)
        after = host.snapshot()
        cap.recording = False
    y = cap.recorded()
    quiet = np.abs(y) < 1e-6
    # the longest silent stretch: the underrun (the tone itself crosses zero only for a sample)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(np.int8), [0]))))
    runs = edges.reshape(-1, 2)
    a, b = (int(v) for v in runs[np.argmax(runs[:, 1] - runs[:, 0])])
    steady = y[max(0, a - 24000):a - 2000]
    w0 = max(0, a - 4800)
    steps = np.abs(np.diff(y[w0:min(len(y), b + 4800)]))
    return SimpleNamespace(
        underruns=after.underruns - before.underruns, short=after.short_callbacks - before.short_callbacks,
        missing=after.missing - before.missing, silent_s=(b - a) / cap.rate, gap=b - a,
        max_step=float(steps.max()), worst_at=int(np.argmax(steps)) + w0 - a,
        natural=float(np.abs(np.diff(steady)).max()), amplitude=float(np.abs(steady).max()),
        xruns=cap.xruns, capture_gaps=cap.gap_positions().tolist())


def test_tee_sink_gets_blocks_and_events(jack_server):
    """The tee sees device-rate blocks (exactly what goes to the ring) and every applied event."""
    from realtime.live.host import LiveHost

    class Recorder:
        def __init__(self):
            self.n, self.events = 0, []

        def write(self, block):
            assert block.dtype == np.float32 and block.ndim == 1
            self.n += len(block)

        def event(self, ev):
            self.events.append(ev)

    class EchoSession(SineSession):
        def apply_midi(self, data):
            return [{"param": "note_on", "value": data[1]}] if data[0] & 0xF0 == 0x90 else []

    rec = Recorder()
    host = LiveHost(EchoSession(), lead_ms=30.0, client_name="wnl-sine", tee=rec)
    host.start()
    try:
        time.sleep(0.3)
        host.push_midi(bytes([0x90, 60, 100]))
        time.sleep(0.5)
        st = host.snapshot()
    finally:
        host.stop()
    assert host.tee_error is None and host.error is None
    assert rec.n >= st.frames  # everything played went through the tee first
    assert len(rec.events) == 1 and rec.events[0]["value"] == 60
    ev = rec.events[0]
    assert ev["sample"] > 0 and abs(ev["device_frame"] - 3 * ev["sample"]) <= 1


def test_tee_with_a_real_session(jack_server, tmp_path):
    """A real Session: the tee gets the MIDI events with their sample index, and audio that is not silent."""
    from realtime.control.presets import load_preset
    from realtime.live.host import LiveHost
    from realtime.offline.render import Session

    class Recorder:
        def __init__(self):
            self.blocks, self.events = [], []

        def write(self, block):
            self.blocks.append(block.copy())

        def event(self, ev):
            self.events.append(ev)

    session = Session.open(load_preset(write_preset(tmp_path, sharp_random_model(tmp_path / "m.npz"))))
    rec = Recorder()
    host = LiveHost(session, lead_ms=30.0, client_name="wnl-sine", tee=rec)
    host.start()
    try:
        time.sleep(0.2)
        host.push_midi(bytes([0xC0, 1, 0x90, 64, 100]))
        time.sleep(0.4)
        host.push_midi(bytes([0x80, 64, 0]))
        time.sleep(0.2)
    finally:
        host.stop()
    assert host.error is None and host.tee_error is None
    kinds = [ev["param"] for ev in rec.events]
    assert kinds[:3] == ["instrument", "note_on", "note_off"], kinds
    on, off = rec.events[1], rec.events[2]
    assert 0 < on["sample"] < off["sample"] and on["device_frame"] == round(on["sample"] * 3)
    y = np.concatenate(rec.blocks)
    assert np.abs(y[on["device_frame"]:off["device_frame"]]).max() > 0.05


# ---------------------------------------------------- subprocess: MIDI end to end
@pytest.fixture(scope="class")
def live(jack_server, tmp_path_factory):
    """run_live.py with a virtual JACK MIDI input, a keyboard (rtmidi JACK output) and a recorder."""
    tmp = tmp_path_factory.mktemp("live")
    # the low-latency preset's settings (override with WNL_LEAD_MS, WNL_BLOCKSIZE, WNL_RESAMPLE=hq)
    preset = write_preset(tmp, sharp_random_model(tmp / "m.npz"), lead_ms=float(os.environ.get("WNL_LEAD_MS", 20)),
                          blocksize=int(os.environ.get("WNL_BLOCKSIZE", 128)))
    with live_rig("wnl-e2e", preset, seconds=120, args=("--resample", os.environ.get("WNL_RESAMPLE", "fast")),
                  playing_timeout=120, capture_seconds=40.0, kbd_name="wnl-kbd", cap_name="wnl-rec",
                  stop_signal=signal.SIGTERM) as (proc, kbd, cap):
        yield SimpleNamespace(proc=proc, kbd=kbd, cap=cap, rate=cap.rate)


def play(live, msgs: list[tuple[bytes, float]]) -> list[tuple[bytes, int]]:
    """Send ``(message, pause_s)`` pairs; returns ``(message, capture index at send)``."""
    sent = []
    for msg, pause in msgs:
        frame = live.cap.frame_time()
        live.kbd.send_message(list(msg))
        sent.append((msg, frame))
        time.sleep(pause)
    return [(m, live.cap.index_of_frame(f)) for m, f in sent]


class TestEndToEnd:
    """One run_live.py process with a keyboard and a recorder for these tests."""

    @pytest.mark.slow
    def test_notes_and_program_change_end_to_end(self, live):
        notes = [57, 64, 69]
        seq: list[tuple[bytes, float]] = []
        for prog in (0, 1):
            seq.append((bytes([0xC0, prog]), 0.05))
            for _ in range(2):
                for n in notes:
                    seq += [(bytes([0x90, n, 100]), 0.3), (bytes([0x80, n, 0]), 0.25)]
        sent = play(live, seq)
        time.sleep(0.3)
        y, rate = live.cap.recorded(), live.rate
        if os.environ.get("WNL_DUMP"):
            np.savez(os.environ["WNL_DUMP"], y=y, idx=np.array([i for _, i in sent]),
                     msgs=np.array([list(m[:2]) for m, _ in sent]))
        prog, reps, feats, onsets = 0, {}, {}, []
        for msg, idx in sent:
            if msg[0] == 0xC0:
                prog = msg[1]
                continue
            if msg[0] != 0x90:
                continue
            rep = reps[(prog, msg[1])] = reps.get((prog, msg[1]), -1) + 1
            pre = y[max(0, idx - int(0.1 * rate)):idx]
            on = onset_after(y, idx, 0.01, int(0.3 * rate))
            assert on is not None, f"no sound after note-on {msg[1]} (program {prog})"
            onsets.append((on - idx) / rate)
            body = y[on:on + int(0.2 * rate)]
            loud = float(np.sqrt(np.mean(body ** 2)))
            quiet = float(np.sqrt(np.mean(pre ** 2))) if len(pre) else 0.0
            assert loud > 10 * quiet + 1e-4, f"note {msg[1]}: no energy change ({quiet:.4f} -> {loud:.4f})"
            feats[(prog, msg[1], rep)] = band_levels(y[on + int(0.03 * rate):on + int(0.23 * rate)], rate)
        within = np.mean([np.sqrt(np.mean((feats[(p, n, 0)] - feats[(p, n, 1)]) ** 2)) for p in (0, 1) for n in notes])
        between = np.mean([np.sqrt(np.mean((feats[(0, n, r)] - feats[(1, n, r2)]) ** 2))
                           for n in notes for r in (0, 1) for r2 in (0, 1)])
        print(f"\nend to end: recorder gaps {live.cap.gaps()}; "
              f"onsets after note-on {1000 * np.median(onsets):.0f} ms median, "
              f"{1000 * max(onsets):.0f} ms max; timbre distance same program {within:.2f} dB, "
              f"after program change {between:.2f} dB")
        assert max(onsets) < 0.15 + float(os.environ.get("WNL_SLACK_S", 0))
        assert between > 2.0 * within and between > 3.0


    @pytest.mark.slow
    def test_note_on_to_sound_latency(self, live):
        """Note-on (JACK frame time when sent) to the first audible sample in the JACK graph."""
        rng = np.random.default_rng(0)
        seq: list[tuple[bytes, float]] = [(bytes([0xC0, 0]), 0.05)]
        for _ in range(16):
            seq += [(bytes([0x90, 64, 110]), 0.15), (bytes([0x80, 64, 0]), 0.2 + 0.05 * float(rng.random()))]
        sent = play(live, seq)
        time.sleep(0.3)
        y, rate = live.cap.recorded(), live.rate
        lat = []
        for msg, idx in sent:
            if msg[0] == 0x90:
                on = onset_after(y, idx, 0.02, int(0.5 * rate))
                assert on is not None
                lat.append((on - idx) / rate * 1000.0)
        lat = np.array(lat)
        med, p95 = float(np.median(lat)), float(np.percentile(lat, 95))
        print(f"\nlatency note-on -> sound in the JACK graph: median {med:.1f} ms, p95 {p95:.1f} ms, "
              f"min {lat.min():.1f} ms (n={len(lat)}, period {live.cap.client.blocksize}, "
              f"loadavg {os.getloadavg()[0]:.2f}; add one period for the driver's playback latency)")
        assert med < 150.0


    @pytest.mark.slow
    def test_sigterm_exits_0_with_summary(self, live):
        rc = live.proc.stop(signal.SIGTERM)
        assert rc == 0, live.proc.err[-10:]
        s = live.proc.summary()
        print(f"\nsummary: {s}")
        assert s["underruns"] >= 0 and s["frames"] > 0 and s["events"] > 0
        assert s["midi"] and "wnl-e2e-midi:midi_in" in s["midi"]


# ------------------------------------------------------------------ CLI paths
def assert_played_for(s: dict, seconds: float, tol: float) -> None:
    """The run's closing JSON: the stream ran ``seconds`` of wall time (within ``tol``), and its frames show it
    played for most of that. (The frames are the server's clock, which a loaded machine can slow; the pace
    test measures that over 8 s.)"""
    assert abs(s["seconds"] - seconds) < tol and 0.5 * s["seconds"] < s["frames"] / 48000 < s["seconds"] + 0.1, s


def _run(args: list[str], timeout: float = 120.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_live.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


def test_list_devices_and_midi_ports(jack_server):
    r = _run(["--list-devices"])
    assert r.returncode == 0 and "JACK" in r.stdout
    r = _run(["play", "--list-midi", "--midi-api", "jack"])
    assert r.returncode == 0 and r.stdout.startswith("jack:")


def test_missing_midi_port_and_device_exit_2_with_one_line(jack_server, tmp_path):
    preset = write_preset(tmp_path, tmp_path / "missing-model-never-loaded.npz")
    r = _run(["--preset", str(preset), "-m", "no-such-port", "--midi-api", "jack"])
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "no-such-port" in err[0] and "available" in err[0], r.stderr
    r = _run(["--preset", str(preset), "-d", "no-such-device"])
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "no-such-device" in err[0] and "system" in err[0], r.stderr


@pytest.mark.slow
def test_seconds_stops_cleanly_without_midi(jack_server, tmp_path):
    preset = write_preset(tmp_path, sharp_random_model(tmp_path / "m.npz"))
    # ALSA MIDI is absent on these machines: no port, none asked for -> play without MIDI
    r = _run(["--preset", str(preset), "--seconds", "2", "--midi-api", "alsa", "--client-name", "wnl-secs"])
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\n--seconds 2: {s['seconds']} s of stream, {s['frames'] / 48000:.3f} s of frames, "
          f"{s['underruns']} underruns, loadavg {os.getloadavg()[0]:.2f}")
    assert_played_for(s, 2.0, 0.25)
    if s["midi"] is not None:
        pytest.skip(f"this machine has an ALSA MIDI port ({s['midi']})")
    assert "MIDI none" in r.stderr


@pytest.mark.slow
@pytest.mark.jack
def test_no_output_device_renders_a_demo(tmp_path):
    """No sound card and no JACK server: play says so in one line and renders a demo WAV (exit 0)."""
    preset = write_preset(tmp_path, sharp_random_model(tmp_path / "m.npz"))
    env = {"JACK_DEFAULT_SERVER": "wnl-no-such-server", "JACK_NO_START_SERVER": "1"}
    r = _run(["--preset", str(preset), "--seconds", "1"], env=env)
    if "rendering a demo" not in r.stderr and r.returncode == 0:
        pytest.skip("this machine has an audio output device")
    assert r.returncode == 0, r.stderr
    wav = Path(r.stdout.strip().splitlines()[-1])
    assert wav.suffix == ".wav" and wav.is_file() and wav.stat().st_size > 1000


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(jack_server, tmp_path):
    preset = write_preset(tmp_path, sharp_random_model(tmp_path / "m.npz"))
    proc = LiveProcess(["--preset", str(preset), "--midi-api", "alsa", "--client-name", "wnl-sigint"])
    proc.wait_for_line("playing", timeout=120)
    time.sleep(1.0)
    assert proc.stop(signal.SIGINT) == 0, proc.err[-10:]
    assert proc.summary()["frames"] > 0


@pytest.mark.slow
def test_wavenet_live_seconds_5_plays_the_default_preset(jack_server):
    """The acceptance command: `wavenet-live --seconds 5` (default preset and model) with a status line, exit 0."""
    exe = Path(sys.executable).with_name("wavenet-live")
    cmd = [str(exe)] if exe.exists() else [sys.executable, str(ROOT / "run_live.py")]
    r = subprocess.run([*cmd, "--seconds", "5", "--client-name", "wnl-accept"], cwd=ROOT, capture_output=True,
                       text=True, timeout=180, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert_played_for(s, 5.0, 0.3)
    assert s["device"]
    assert "playing 'default'" in r.stderr and "RTF" in r.stderr and "ring" in r.stderr  # the status line
