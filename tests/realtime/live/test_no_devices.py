"""Issue 39 item 7: ``--list-devices`` on a machine with no audio device says so and why (not a blank line)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from wnl_testutil import ROOT

NO_JACK = {"JACK_DEFAULT_SERVER": "wnl-no-such-server", "JACK_NO_START_SERVER": "1"}


def test_list_devices_with_none_says_so():
    env = dict(os.environ, PYTHONPATH=str(ROOT), **NO_JACK)
    r = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--list-devices"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    if "no audio devices found" not in r.stdout:
        pytest.skip("this machine has an audio device")
    out = r.stdout.strip()
    assert len(out.splitlines()) == 1 and "JACK" in out, out
