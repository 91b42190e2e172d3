"""Issue 39 item 5: --learn writes a named preset in the user's config folder and says what it replaced."""
from __future__ import annotations

from pathlib import Path

from realtime.control.learn import learned_message, save_binding, user_preset_path
from realtime.control.presets import DEFAULT_PRESET, PRESET_DIR, load_preset


def test_user_preset_is_in_the_config_folder_not_the_source_tree(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = user_preset_path()
    assert path == tmp_path / "cfg" / "wavenet-live" / "user.toml"
    assert PRESET_DIR not in path.parents


def test_new_user_preset_is_named_and_plays_the_default_model(tmp_path):
    out = save_binding(tmp_path / "cfg" / "wavenet-live" / "user.toml", 16, "morph", source=DEFAULT_PRESET)
    p = load_preset(out)
    assert p.name == "user" and p.midi.cc[16] == "morph"
    assert p.model_path() == (PRESET_DIR / "../models/default/model.npz").resolve()


def test_learned_message_says_what_was_replaced_and_how_to_use_it():
    msg = learned_message(DEFAULT_PRESET.read_text(), 74, "morph", Path("/home/me/user.toml"))
    assert "CC 74 -> loop_lowpass" in msg and "CC 1 -> morph" in msg  # CC 74's old job, morph's old CC
    assert "--preset /home/me/user.toml" in msg and len(msg.splitlines()) == 1
    assert "(replaces CC 5 -> glide);" in learned_message(DEFAULT_PRESET.read_text(), 99, "glide", Path("u.toml"))
    assert "replaces" not in learned_message("", 99, "glide", Path("u.toml"))
