"""Shipped presets validate; bad presets give one-line PresetErrors naming the file and the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from realtime.control.presets import PRESET_DIR, PresetError, load_preset

SHIPPED = sorted(PRESET_DIR.glob("*.toml"))


def test_the_shipped_presets_are_there():
    names = {p.name for p in SHIPPED}
    assert {"default.toml", "mod-wheel-temperature.toml", "low-latency.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_preset_validates(path: Path):
    p = load_preset(path)
    assert p.path == path.resolve() and p.name
    model = p.model_path()
    if model.is_file():  # the names in [midi.programs] / morph_to must be the model's instruments
        from realtime.model.model_file import load_model

        p.check_instruments(load_model(model).instruments)


def test_shipped_presets_show_different_mappings():
    by_name = {p.stem: load_preset(p) for p in SHIPPED}
    assert by_name["mod-wheel-temperature"].midi.cc[1] == "temperature"
    assert by_name["default"].midi.cc[1] != "temperature"
    low = by_name["low-latency"].audio
    assert low.blocksize == 128 and low.lead_ms == 20.0


BAD = {
    "unknown-key": ("[audio]\nblocksize = 256\nbuffer = 3\n", "audio.buffer"),
    "unknown-section": ("[sounds]\ngain_db = 1.0\n", "sounds"),
    "wrong-type": ("[audio]\nblocksize = \"big\"\n", "audio.blocksize"),
    "wrong-type-bool": ("[midi]\nvirtual = 1\n", "midi.virtual"),
    "cc-out-of-range": ("[midi.cc]\n200 = \"gain\"\n", "midi.cc.200"),
    "cc-not-a-number": ("[midi.cc]\nmodwheel = \"gain\"\n", "midi.cc.modwheel"),
    "unknown-cc-param": ("[midi.cc]\n1 = \"wobble\"\n", "midi.cc.1"),
    "bad-value": ("[audio]\nlead_ms = 0.0\n", "audio.lead_ms"),
    "period-noise-too-high": ("[model]\nperiod_noise = 1.0\n", "model.period_noise"),
    "loop-lowpass-too-high": ("[model]\nloop_lowpass = 0.6\n", "model.loop_lowpass"),
    "malformed": ("[audio\nblocksize = 256\n", "TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_preset_one_line_error_names_file_and_key(tmp_path: Path, case: str):
    text, key = BAD[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(PresetError) as e:
        load_preset(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg and key in msg, msg


def test_unknown_instrument_in_program_map(tmp_path: Path):
    path = tmp_path / "programs.toml"
    path.write_text("[midi.programs]\n0 = \"a\"\n40 = \"kazoo\"\n")
    p = load_preset(path)  # names are checked against a model, not on load
    with pytest.raises(PresetError) as e:
        p.check_instruments(("a", "b"))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "midi.programs.40" in msg and "kazoo" in msg


def test_missing_preset_names_the_file(tmp_path: Path):
    with pytest.raises(PresetError, match="nope.toml"):
        load_preset(tmp_path / "nope.toml")


def test_partial_preset_uses_the_default_model(tmp_path: Path):
    """Issue 39 item 2: a preset with only some keys (no [model] path) plays the default preset's model,
    resolved against presets/default.toml, not against the user's file; a path it names is its own."""
    only = tmp_path / "only_programs.toml"
    only.write_text('[midi.programs]\n0 = "piano"\n')
    p = load_preset(only)
    assert p.model_path() == (PRESET_DIR / "../models/default/model.npz").resolve()
    assert p.model_path().is_file()
    own = tmp_path / "own.toml"
    own.write_text('[model]\npath = "mine.npz"\n')
    assert load_preset(own).model_path() == tmp_path / "mine.npz"
