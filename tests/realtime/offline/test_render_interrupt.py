"""Issue 39 item 4: Ctrl-C during ``render`` says so, keeps a valid shorter file and exits 130."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import soundfile as sf
from wnl_testutil import ROOT, small_model, write_preset


def _ctrl_c_as_at_a_terminal() -> None:
    """In the child before exec: SIGINT's default disposition, as a render started at a terminal has (a shell runs
    background jobs, such as a CI script started with ``&``, with SIGINT ignored, and Python then keeps it so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_a_valid_shorter_file(tmp_path):
    preset = write_preset(tmp_path / "p.toml", small_model().save(tmp_path / "m.npz"))
    out = tmp_path / "long.wav"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
    # the child's output goes to files, not pipes nobody reads while it renders (a full pipe would block it)
    with open(tmp_path / "stdout", "w") as so, open(tmp_path / "stderr", "w") as se:
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "render", "--out", str(out), "--preset",
                                 str(preset), "--seconds", "3000"], stdout=so, stderr=se, text=True, cwd=ROOT,
                                env=env, preexec_fn=_ctrl_c_as_at_a_terminal)
        err = lambda: (tmp_path / "stderr").read_text()  # noqa: E731
        try:
            deadline = time.monotonic() + 240
            while not (out.is_file() and out.stat().st_size > 64000) and time.monotonic() < deadline:
                assert proc.poll() is None, err()
                time.sleep(0.2)
            assert out.is_file() and out.stat().st_size > 64000, f"no audio after 240 s: {err()}"
            time.sleep(0.5)  # well inside the render loop
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGABRT)  # faulthandler: where it hung, into the stderr file
                time.sleep(2)
                proc.kill()
    assert proc.returncode == 130, err()
    assert "interrupted" in err() and str(out) in err(), err()
    info = sf.info(str(out))
    assert 1.0 < info.duration < 3000
    audio, _ = sf.read(str(out))
    assert len(audio) == info.frames
