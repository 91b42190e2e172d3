"""Issue 39 item 11: ``wavenet-live --demo`` plays the demo phrase live (JACK end to end)."""
from __future__ import annotations

import json

import pytest
from test_host_jack import _run, sharp_random_model, write_preset


@pytest.mark.jack
def test_demo_plays_the_phrase_live(jack_server, tmp_path):
    preset = write_preset(tmp_path, sharp_random_model(tmp_path / "m.npz"))
    r = _run(["--preset", str(preset), "--demo", "--seconds", "3", "--client-name", "wnl-demo"], timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["midi"] == "demo phrase (--demo)" or "demo" in str(s["midi"]), s
    assert s["events"] >= 4, s  # program change, notes on and off within 3 s
