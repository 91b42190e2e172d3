"""The benchmark says whether a training run shared the machine: running, paused (SIGSTOP) or none."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from realtime.bench import training_state


def test_running_paused_and_gone():
    marker = f"wnl-bench-marker-{os.getpid()}"
    assert training_state(marker) == "none"
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        time.sleep(0.3)
        assert training_state(marker) == "running"
        p.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        assert training_state(marker) == "paused"
        p.send_signal(signal.SIGCONT)
        time.sleep(0.2)
        assert training_state(marker) == "running"
    finally:
        p.kill()
        p.wait()
    assert training_state(marker) == "none"


def test_a_torchrun_launcher_is_not_counted():
    marker = f"wnl-bench-launcher-{os.getpid()}"
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "torchrun", marker])
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        time.sleep(0.3)
        assert training_state(marker) == "running"
        worker.send_signal(signal.SIGSTOP)  # the workers paused, the launcher still waiting (state S)
        time.sleep(0.2)
        assert training_state(marker) == "paused"
    finally:
        for p in (launcher, worker):
            p.kill()
            p.wait()
