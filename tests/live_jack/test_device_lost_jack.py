"""The audio device disappears mid-stream (its JACK server dies): the host says so, stops, keeps the take."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest
import soundfile as sf
from jack_server import clear_stale_jack_registry
from test_host_jack import LiveProcess

pytestmark = [pytest.mark.jack, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("jackd") is None, reason="needs jackd")]


def test_server_death_stops_cleanly_and_keeps_the_recording(tmp_path):
    clear_stale_jack_registry()
    name = f"wnl-doomed-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    jackd = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert subprocess.run(["jack_wait", "-w", "-s", name, "-t", "10"], capture_output=True).returncode == 0
        take = tmp_path / "take"
        proc = LiveProcess(["--record", str(take), "--seconds", "60", "--client-name", "wnl-doomed"],
                           env={"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"})
        proc.wait_for_line("playing", timeout=120)
        time.sleep(3.0)
        jackd.send_signal(signal.SIGTERM)  # the "device" vanishes (SIGKILL would leak JACK's server registry)
        t_gone = time.monotonic()
        deadline = time.monotonic() + 20
        while proc.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        noticed = time.monotonic() - t_gone
        rc = proc.stop(signal.SIGKILL)
    finally:
        jackd.kill()
        jackd.wait(10)
    print(f"\ndevice lost: the host stopped {noticed:.1f} s after the server died, exit code {rc}")
    assert rc == 3 and noticed < 10
    assert any("audio device stopped" in ln for ln in proc.err)
    man = json.loads((take / "session.json").read_text())
    assert man["device_lost"] is True and man["frames_dropped"] == 0
    info = sf.info(str(take / "audio.wav"))
    # ~3 s played before the server died; a loaded machine's dummy server can run ~15 % slow, hence 2 s
    assert info.frames == man["frames_written"] >= 2.0 * 48000, (info.frames, man["frames_written"])
