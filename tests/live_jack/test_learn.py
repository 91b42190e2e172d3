"""MIDI learn: the next CC that moves is bound, and the binding lands in the preset file."""
from __future__ import annotations

import pytest
from wnl_testutil import small_model, write_preset

from realtime.control.learn import bind_cc_text, save_binding
from realtime.control.presets import DEFAULT_PRESET, load_preset
from realtime.model.model_file import load_model
from realtime.offline.render import Session


def test_bind_replaces_old_bindings_and_keeps_the_rest():
    text = '# mine\n[model]\nseed = 3\n\n[midi.cc]\n1 = "morph"\n21 = "temperature"\n\n[watchdog]\nenabled = true\n'
    out = bind_cc_text(text, 74, "temperature")
    assert '74 = "temperature"' in out and '21 = "temperature"' not in out and '1 = "morph"' in out
    assert "# mine" in out and "seed = 3" in out and "[watchdog]" in out
    out2 = bind_cc_text(out, 1, "gain")
    assert '1 = "gain"' in out2 and '1 = "morph"' not in out2
    assert bind_cc_text("[model]\n", 5, "glide").endswith('[midi.cc]\n5 = "glide"\n')
    with pytest.raises(ValueError):
        bind_cc_text(text, 5, "volume")


def test_learn_binds_the_next_cc_and_writes_the_preset(tmp_path):
    path = small_model().save(tmp_path / "m.npz")
    preset_path = write_preset(tmp_path / "p.toml", path)
    s = Session.open(load_preset(preset_path), load_model(path))
    s.controller.learn = "temperature"
    s.apply_midi(bytes([0x90, 60, 100]))  # notes do not count
    evs = s.apply_midi(bytes([0xB0, 74, 127]))
    assert s.controller.learned == (74, "temperature")
    assert evs[0]["param"] == "temperature" and s.engine.temperature[0] == pytest.approx(1.2)
    save_binding(preset_path, *s.controller.learned)
    default = load_preset(DEFAULT_PRESET)
    # the default preset's bindings are inherited, but its temperature CC (21) is unbound: one CC per parameter
    assert default.midi.cc[21] == "temperature" and default.midi.cc[74] == "loop_lowpass"
    want = {k: v for k, v in default.midi.cc.items() if v != "temperature"} | {74: "temperature"}
    assert load_preset(preset_path).midi.cc == want
    s.apply_midi(bytes([0xB0, 74, 0]))
    assert s.engine.temperature[0] == pytest.approx(default.sound.temperature_min) == pytest.approx(0.3)


def test_learn_into_a_new_preset_copies_the_default(tmp_path):
    out = save_binding(tmp_path / "user.toml", 16, "morph", source=DEFAULT_PRESET)
    p = load_preset(out)
    assert p.midi.cc[16] == "morph" and 1 not in p.midi.cc  # the default's mod-wheel morph moved to 16


@pytest.mark.jack
@pytest.mark.slow
def test_learn_live_under_jack(jack_server, tmp_path):
    import signal

    from test_host_jack import LiveProcess
    from test_record_jack import keyboard, take_preset

    preset = take_preset(tmp_path, "learn")
    proc = LiveProcess(["--preset", str(preset), "--virtual-midi", "--midi-api", "jack", "--client-name", "wnl-learn",
                        "--learn", "glide", "--seconds", "60"])
    kbd = None
    try:
        proc.wait_for_line("MIDI learn", timeout=120)
        kbd, patch = keyboard("wnl-learn")
        kbd.send_message([0xB0, 74, 64])
        proc.wait_for_line("learned CC 74 -> glide", timeout=20)
        patch.close()
        assert proc.stop(signal.SIGINT) == 0
    finally:
        proc.stop(signal.SIGKILL)
        if kbd is not None:
            kbd.close_port()
    default = load_preset(DEFAULT_PRESET).midi.cc  # inherited, but for its glide CC (5): unbound
    assert default[5] == "glide"
    want = {k: v for k, v in default.items() if v != "glide"} | {74: "glide", 21: "temperature", 1: "morph"}
    assert load_preset(preset).midi.cc == want
