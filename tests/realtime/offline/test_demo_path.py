"""Issue 39 item 10: the no-device demo goes to a file no other process shares, or to the user's --record."""
from __future__ import annotations

import os

from wnl_testutil import run_cli, small_model, write_preset

from realtime.offline.demo import demo_path

NO_JACK = {"JACK_DEFAULT_SERVER": "wnl-no-such-server", "JACK_NO_START_SERVER": "1"}


def test_demo_paths_are_unique_files():
    a, b = demo_path(), demo_path()
    try:
        assert a != b and a.is_file() and b.is_file() and a.suffix == ".wav"
    finally:
        a.unlink()
        b.unlink()


def test_demo_path_is_the_users_record_file(tmp_path):
    assert demo_path(str(tmp_path / "mine.flac")) == tmp_path / "mine.flac"
    folder = demo_path(str(tmp_path / "session"))  # a session folder is not an audio file: a temp file instead
    assert folder.parent != tmp_path
    folder.unlink()


def test_play_without_device_writes_demo_to_record(tmp_path, monkeypatch):
    for k, v in NO_JACK.items():
        monkeypatch.setenv(k, v)
    preset = write_preset(tmp_path / "p.toml", small_model().save(tmp_path / "m.npz"))
    out = tmp_path / "demo.wav"
    r = run_cli("--preset", str(preset), "--seconds", "0.5", "--record", str(out))
    if "rendering a demo" not in r.stderr and r.returncode == 0:
        import pytest

        pytest.skip("this machine has an audio output device")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(out)
    assert out.stat().st_size > 1000
    assert str(os.path.basename(out)) in r.stderr
