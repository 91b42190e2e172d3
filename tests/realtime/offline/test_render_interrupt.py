"""Issue 39 item 4: Ctrl-C during ``render`` says so, keeps a valid shorter file and exits 130."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import soundfile as sf
from wnl_testutil import ROOT, small_model, write_preset


def test_ctrl_c_keeps_a_valid_shorter_file(tmp_path):
    preset = write_preset(tmp_path / "p.toml", small_model().save(tmp_path / "m.npz"))
    out = tmp_path / "long.wav"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "render", "--out", str(out), "--preset",
                             str(preset), "--seconds", "3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (out.is_file() and out.stat().st_size > 64000) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and str(out) in err, err
    info = sf.info(str(out))
    assert 1.0 < info.duration < 3000
    audio, _ = sf.read(str(out))
    assert len(audio) == info.frames
