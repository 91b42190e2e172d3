"""The live host as the JACK end-to-end tests play it: ``run_live.py`` as a subprocess (:class:`LiveProcess`),
a small preset for a test model (:func:`write_preset`), and the rig around one run (:func:`live_rig`): the host
with a virtual JACK MIDI input, an rtmidi JACK keyboard patched into it and a :class:`JackCapture` recording it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

try:
    from .jack_server import JackCapture, wait_for_ports
except ImportError:
    from jack_server import JackCapture, wait_for_ports

ROOT = Path(__file__).resolve().parents[1]


class LiveProcess:
    """``run_live.py`` as a subprocess; stderr lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()
        self.out = ""
        self.rc: int | None = None

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.err:
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} from run_live.py (rc={self.proc.poll()}): " + "\n".join(self.err[-20:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.rc is None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                self.out, _ = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.out, _ = self.proc.communicate()
            self._t.join(5)
            self.rc = self.proc.returncode
        return self.rc

    def summary(self) -> dict:
        lines = [ln for ln in self.out.splitlines() if ln.startswith("{")]
        assert lines, f"no JSON summary on stdout: {self.out!r} / {self.err[-5:]}"
        return json.loads(lines[-1])


def write_preset(path: Path, model: Path, *, name: str, reprime: str = "off", model_extra: str = "",
                 blocksize: int = 256, lead_ms: float = 40.0, extra: str = "") -> Path:
    """A preset TOML at ``path`` playing ``model`` (temperature 0.9, release 30 ms); ``model_extra`` is more of
    its ``[model]`` table, ``extra`` more tables after ``[audio]`` (each a block of lines ending in a newline)."""
    path.write_text(f"""name = "{name}"
[model]
path = "{model}"
reprime = "{reprime}"
temperature = 0.9
{model_extra}[sound]
release_ms = 30.0
[audio]
blocksize = {blocksize}
lead_ms = {lead_ms}
{extra}""")
    return path


@contextmanager
def live_rig(name: str, preset, *, take=None, seconds: int = 60, args: tuple[str, ...] = (),
             playing_timeout: float = 180, capture_seconds: float = 30.0, channels: int = 1,
             connect: bool = True, record: bool = True, kbd_name: str | None = None, cap_name: str | None = None,
             stop_signal: int = signal.SIGKILL):
    """``run_live.py --preset PRESET --virtual-midi --midi-api jack --client-name NAME [ARGS] [--record TAKE]
    --seconds SECONDS`` played from an rtmidi JACK keyboard (``NAME-kbd:out``, patched to ``NAME-midi:midi_in``)
    and heard by a :class:`JackCapture` (``NAME-cap``): yields ``(proc, kbd, cap)``.

    ``connect`` patches the host's ``out_0`` to the capture; ``record`` then starts recording and waits 0.5 s.
    On the way out the capture closes, the host gets ``stop_signal`` (a no-op once the test stopped it) and the
    keyboard closes."""
    import rtmidi

    rec = ["--record", str(take)] if take is not None else []
    proc = LiveProcess(["--preset", str(preset), "--virtual-midi", "--midi-api", "jack", "--client-name", name,
                        *args, *rec, "--seconds", str(seconds)])
    kbd_name = kbd_name or f"{name}-kbd"
    kbd = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, kbd_name)
    try:
        proc.wait_for_line("playing", timeout=playing_timeout)
        kbd.open_virtual_port("out")
        with JackCapture(cap_name or f"{name}-cap", seconds=capture_seconds, channels=channels) as cap:
            wait_for_ports(cap.client, rf"{name}-midi:midi_in", is_midi=True)
            cap.client.connect(f"{kbd_name}:out", f"{name}-midi:midi_in")
            if connect:
                cap.connect_from(f"{name}:out_0")
                if record:
                    cap.recording = True
                    time.sleep(0.5)
            yield proc, kbd, cap
    finally:
        proc.stop(stop_signal)
        kbd.close_port()
        kbd.delete()
