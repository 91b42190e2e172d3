"""Issue 39 item 6: ``wavenet-live --help`` shows the commands and the live (play) options."""
from __future__ import annotations

import pytest
from wnl_testutil import run_cli


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_commands_and_live_options(flag):
    r = run_cli(flag)
    assert r.returncode == 0, r.stderr
    for word in ("render", "replay", "--list-devices", "--midi-port", "--virtual-midi", "--record", "--preset"):
        assert word in r.stdout, word
