"""MIDI learn of an effect's parameter (issue 40): ``--learn fxN.PARAM`` binds the CC that moves, the preset
keeps its [[effects]], and the CC then drives that parameter; one-line errors for what the preset lacks."""
from __future__ import annotations

import pytest
from wnl_testutil import run_cli

from realtime.control.learn import bind_cc_text, save_binding
from realtime.control.presets import PRESET_DIR, load_preset
from realtime.offline.render import Session
from run_live import build_parser


def test_learn_binds_an_effect_parameter_and_the_cc_then_drives_it(tmp_path):
    target = tmp_path / "mine.toml"
    target.write_text((PRESET_DIR / "reverb.toml").read_text())
    save_binding(target, 20, "fx2.room_size")
    p = load_preset(target)
    assert p.midi.cc[20] == "fx2.room_size" and p.midi.cc[91] == "fx2.wet_level"
    assert [fx["type"] for fx in p.effects] == ["Delay", "Reverb"]
    session = Session.open(p)
    for value, room in ((0, 0.0), (64, 64 / 127), (127, 1.0)):
        (ev,) = session.apply_midi(bytes([0xB0, 20, value]))
        assert ev["param"] == "fx2.room_size" and ev["value"] == pytest.approx(room, abs=1e-6)
        assert session.effects.plugins[1].room_size == pytest.approx(room, abs=1e-6)


def test_learn_in_the_running_controller_takes_the_first_cc_that_moves():
    session = Session.open(load_preset(PRESET_DIR / "reverb.toml"))
    session.controller.learn = "fx1.feedback"
    (ev,) = session.apply_midi(bytes([0xB0, 30, 127]))
    assert session.controller.learned == (30, "fx1.feedback")
    assert ev["param"] == "fx1.feedback" and session.effects.plugins[0].feedback == 1.0


@pytest.mark.parametrize("param, ok", [("fx1.wet_level", True), ("temperature", True), ("fx0.mix", False),
                                       ("reverb.wet_level", False), ("fx1", False)])
def test_learn_accepts_effect_parameters_on_the_command_line(param, ok, capsys):
    if ok:
        assert build_parser().parse_args(["play", "--learn", param]).learn == param
        assert f'7 = "{param}"' in bind_cc_text("", 7, param)
    else:
        with pytest.raises(SystemExit):
            build_parser().parse_args(["play", "--learn", param])
        assert "fxN.PARAM" in capsys.readouterr().err


@pytest.mark.parametrize("param, message", [
    ("fx3.mix", "--learn 'fx3.mix': the preset has 2 effect(s)"),
    ("fx2.mix", "--learn 'fx2.mix': Reverb has no CC-mappable parameter 'mix'"),
])
def test_learning_a_parameter_the_preset_lacks_is_one_line_before_any_sound(param, message):
    r = run_cli("--preset", str(PRESET_DIR / "reverb.toml"), "--learn", param, "--seconds", "1", timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert message in r.stderr and "playing" not in r.stderr
