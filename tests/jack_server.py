"""A headless JACK server for tests, and a JACK client that records what another client plays.

The ``jack_server`` fixture (session scope) starts ``jackd -d dummy`` under a
unique server name, exports ``JACK_DEFAULT_SERVER=<name>`` and
``JACK_NO_START_SERVER=1`` (subprocesses inherit them), waits with
``jack_wait``, and (re)initialises PortAudio so it sees the server. At the
end PortAudio is terminated *before* jackd is stopped. Tests needing it are
skipped where jackd or libjack is missing.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

RATE = 48000
PERIOD = 256


class JackServer:
    """``jackd -n NAME -d dummy -r RATE -p PERIOD`` as a child process."""

    def __init__(self, rate: int = RATE, period: int = PERIOD, name: str | None = None) -> None:
        self.rate, self.period = rate, period
        self.name = name or f"wnl-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.log = Path(tempfile.gettempdir()) / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self._old_env: dict[str, str | None] = {}

    def start(self, timeout: float = 15.0) -> "JackServer":
        clear_stale_jack_registry()
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["jackd", "-n", self.name, "-t", "5000", "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            r = subprocess.run(["jack_wait", "-w", "-s", self.name, "-t", str(int(timeout))],
                               capture_output=True, text=True, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            r = None
        if r is None or r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"jackd {self.name} did not start: {self.log.read_text(errors='replace')[-800:]}")
        for k, v in (("JACK_DEFAULT_SERVER", self.name), ("JACK_NO_START_SERVER", "1")):
            self._old_env[k] = os.environ.get(k)
            os.environ[k] = v
        _reinit_portaudio()
        return self

    def stop(self) -> None:
        _terminate_portaudio()
        for k, v in self._old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._old_env.clear()
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def xruns(self) -> int:
        """xruns jackd logged so far."""
        try:
            return self.log.read_text(errors="replace").lower().count("xrun")
        except OSError:
            return 0


def clear_stale_jack_registry() -> None:
    """With no jackd running, remove JACK's shared-memory registry left by killed servers.

    jackd killed with SIGKILL never unregisters; after a few of those new servers fail
    with "Too many servers already active".
    """
    if subprocess.run(["pgrep", "-x", "jackd"], capture_output=True).returncode == 0:
        return
    for p in Path("/dev/shm").glob("jack*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _reinit_portaudio() -> None:
    """If sounddevice is already imported, make PortAudio re-scan (it only sees JACK servers running at init)."""
    import sys

    sd = sys.modules.get("sounddevice")
    if sd is not None:
        while sd._initialized:
            sd._terminate()
        sd._initialize()


def _terminate_portaudio() -> None:
    import sys

    sd = sys.modules.get("sounddevice")
    if sd is not None:
        while sd._initialized:
            sd._terminate()


@pytest.fixture(scope="session")
def jack_server():
    """A running dummy JACK server for the whole test session (48 kHz, 256-frame period)."""
    if not (shutil.which("jackd") and shutil.which("jack_wait")):
        pytest.skip("jackd (Debian: jackd2) is not installed")
    try:
        import jack  # noqa: F401  (JACK-Client; needs libjack)
    except (ImportError, OSError) as e:
        pytest.skip(f"JACK-Client is not usable: {e}")
    server = JackServer().start()
    try:
        yield server
    finally:
        server.stop()


class JackCapture:
    """A JACK client recording its input ports into a preallocated array (process callback only copies).

    ``audio[:pos]`` is the recording; ``cycle_frame[k]``/``cycle_pos[k]`` map
    the JACK frame time at the start of each recorded cycle to its index in
    ``audio``, so events timed with :meth:`frame_time` can be located.
    """

    def __init__(self, name: str, seconds: float, channels: int = 1) -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.rate = self.client.samplerate
        self.ports = [self.client.inports.register(f"in_{i}") for i in range(channels)]
        n = int(seconds * self.rate)
        self.audio = np.zeros((n, channels), np.float32)
        max_cycles = n // 16 + 16
        self.cycle_frame = np.zeros(max_cycles, np.int64)
        self.cycle_pos = np.zeros(max_cycles, np.int64)
        self.pos = 0
        self.cycles = 0
        self.recording = False
        self.xruns = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)

    def _xrun(self, delayed_usecs: float) -> None:
        """JACK's notification thread: the server missed a deadline (any client, this machine's load)."""
        self.xruns += 1

    def _process(self, frames: int) -> None:
        if not self.recording:
            return
        n = min(frames, self.audio.shape[0] - self.pos)
        if n <= 0 or self.cycles >= len(self.cycle_frame):
            return
        self.cycle_frame[self.cycles] = self.client.last_frame_time
        self.cycle_pos[self.cycles] = self.pos
        self.cycles += 1
        for c, port in enumerate(self.ports):
            self.audio[self.pos:self.pos + n, c] = port.get_array()[:n]
        self.pos += n

    def __enter__(self) -> "JackCapture":
        self.client.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.recording = False
        self.client.deactivate()
        self.client.close()

    def connect_from(self, *sources: str) -> None:
        for src, port in zip(sources, self.ports):
            self.client.connect(src, port)

    def gap_positions(self) -> np.ndarray:
        """Indices in ``audio`` where the recording skips JACK frames (a cycle this client missed)."""
        k = self.cycles
        jumps = np.diff(self.cycle_frame[:k]) != np.diff(self.cycle_pos[:k])
        return self.cycle_pos[1:k][jumps]

    def frame_time(self) -> int:
        """JACK's estimate of the current frame time (any thread)."""
        return int(self.client.frame_time)

    def index_of_frame(self, frame: int) -> int:
        """Index in ``audio`` of JACK frame time ``frame`` (by the recorded cycle that contains it)."""
        k = int(np.searchsorted(self.cycle_frame[:self.cycles], frame, side="right")) - 1
        k = max(0, k)
        end = self.cycle_pos[k + 1] if k + 1 < self.cycles else self.pos
        return int(min(self.cycle_pos[k] + (frame - self.cycle_frame[k]), end))

    def gaps(self) -> int:
        """Cycles this client missed while recording (its recording has a hole there)."""
        return len(self.gap_positions())

    def recorded(self) -> np.ndarray:
        return self.audio[:self.pos, 0]


def wait_for_ports(client, pattern: str, timeout: float = 30.0, **kw) -> list[str]:
    """Names of ports matching ``pattern`` (regex) once at least one exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [p.name for p in client.get_ports(pattern, **kw)]
        if names:
            return names
        time.sleep(0.05)
    raise TimeoutError(f"no JACK port matching {pattern!r} within {timeout} s")
