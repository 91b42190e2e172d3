"""Shipped presets validate; bad presets give one-line PresetErrors naming the file and the key."""
from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest

from realtime.control.presets import (
    _SECTIONS,
    DEFAULT_PRESET,
    PRESET_DIR,
    ModelSection,
    PresetError,
    load_preset,
    merged,
    preset_from_dict,
    tomllib,
)

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


# Issue 39 item 2: a preset inherits presets/default.toml (tables merged key by key, arrays replaced); a
# relative path resolves against the file that names it.
DEFAULT = load_preset(DEFAULT_PRESET)
assert DEFAULT.model.temperature != ModelSection().temperature  # else the inheritance tests below prove nothing


@pytest.mark.parametrize("section,key", [("model", "temperature"), ("model", "period_noise"), ("model", "loop_lowpass"),
                                         ("sound", "temperature_min"), ("midi", "cc")])
def test_a_preset_with_only_programs_gets_the_defaults_other_values(tmp_path: Path, section: str, key: str):
    only = tmp_path / "only_programs.toml"
    only.write_text('[midi.programs]\n0 = "piano"\n')
    p = load_preset(only)
    assert p.midi.programs == {**DEFAULT.midi.programs, 0: "piano"} and p.name == "only_programs"
    want = getattr(getattr(DEFAULT, section), key)
    assert getattr(getattr(p, section), key) == want
    assert want != getattr(_SECTIONS[section](), key)  # default.toml's value, not the code's


@pytest.mark.parametrize("text,section,key,want", [
    ("[model]\ntemperature = 0.8\n", "model", "temperature", 0.8),
    ("[sound]\ntemperature_min = 0.45\n", "sound", "temperature_min", 0.45),
    ("[audio]\nblocksize = 512\n", "audio", "blocksize", 512),
    ("[watchdog]\nsilence_db = -60.0\n", "watchdog", "silence_db", -60.0),
])
def test_a_key_given_overrides_and_its_table_keeps_the_rest(tmp_path: Path, text, section, key, want):
    path = tmp_path / "over.toml"
    path.write_text(text)
    p = load_preset(path)
    assert getattr(getattr(p, section), key) == want
    for f in fields(_SECTIONS[section]):  # every other key of that table is still the default preset's
        if f.name not in (key, "path"):
            assert getattr(getattr(p, section), f.name) == getattr(getattr(DEFAULT, section), f.name), f.name
    assert p.model_path().resolve() == DEFAULT.model_path().resolve()


@pytest.mark.parametrize("text,want", [
    ('[midi.cc]\n74 = "morph"\n', {**DEFAULT.midi.cc, 74: "morph"}),  # one binding replaced, the rest kept
    ('[midi.cc]\n74 = ""\n11 = ""\n', {k: v for k, v in DEFAULT.midi.cc.items() if k not in (11, 74)}),  # unbound
    ('[midi.cc]\n3 = "gain"\n', {**DEFAULT.midi.cc, 3: "gain"}),
])
def test_cc_table_merges_key_by_key(tmp_path: Path, text, want):
    path = tmp_path / "cc.toml"
    path.write_text(text)
    assert load_preset(path).midi.cc == want
    assert 74 in DEFAULT.midi.cc and 11 in DEFAULT.midi.cc


def test_merge_replaces_arrays_and_merges_tables():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "fx": [{"type": "reverb"}, {"type": "delay"}], "n": "d"}
    top = {"a": {"y": {"q": 3}}, "fx": [{"type": "chorus"}]}
    assert merged(base, top) == {"a": {"x": 1, "y": {"p": 1, "q": 3}}, "fx": [{"type": "chorus"}], "n": "d"}
    assert base["a"]["y"] == {"p": 1, "q": 2}  # the inputs are not changed


@pytest.mark.parametrize("where", ["beside", "config"])
def test_relative_paths_resolve_against_the_file_naming_them(tmp_path: Path, where: str):
    """The default's model path against presets/ (for a user file anywhere, e.g. the config folder --learn
    writes to), the user's model path and prime file against the user's file, not the working directory."""
    folder = tmp_path / ("presets" if where == "beside" else ".config/wavenet-live")
    folder.mkdir(parents=True)
    folder = folder.resolve()
    inherit = folder / "inherit.toml"
    inherit.write_text('[sound]\ngain_db = -6.0\n')
    assert load_preset(inherit).model_path() == (PRESET_DIR / "../models/default/model.npz").resolve()
    assert load_preset(inherit).model_path().is_file()
    own = folder / "own.toml"
    own.write_text('[model]\npath = "../mine.npz"\nprime = "file:takes/a.wav"\n')
    p = load_preset(own)
    assert p.model_path().resolve() == folder.parent / "mine.npz"
    assert p.model.prime == f"file:{folder / 'takes' / 'a.wav'}"
    bare = folder / "bare.toml"
    bare.write_text('[model]\nprime = "a.wav"\n')
    assert load_preset(bare).model.prime == f"file:{folder / 'a.wav'}"
    assert load_preset(inherit).model.prime == DEFAULT.model.prime == "silence"


@pytest.mark.parametrize("text,key", [
    ("[model]\ntemperature = \"hot\"\n", "model.temperature"),
    ("[midi.cc]\n74 = \"wobble\"\n", "midi.cc.74"),
    ("[midi.programs]\n0 = 3\n", "midi.programs.0"),
    ("[sound]\nvoices = 40\n", "sound.voices"),
    ("midi = 3\n", "[midi]"),
    ("[midi.programs\n0 = \"piano\"\n", "TOML"),
])
def test_a_bad_field_over_the_defaults_names_this_file_and_the_field(tmp_path: Path, text, key):
    path = tmp_path / "partial.toml"
    path.write_text(text)
    with pytest.raises(PresetError) as e:
        load_preset(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and key in msg and "default.toml" not in msg, msg


#: the shipped presets that predate inheritance, and what each meant then: its own values over the code's
#: defaults. They must mean exactly the same now that they inherit presets/default.toml.
PREDATING = ["default", "low-latency", "mod-wheel-temperature", "poly"]


@pytest.mark.parametrize("name", PREDATING)
def test_shipped_presets_mean_what_they_meant_before_inheritance(name: str):
    path = PRESET_DIR / f"{name}.toml"
    before = preset_from_dict(tomllib.loads(path.read_text()), path)
    now = load_preset(path)
    # except the program map, on purpose (issue 39): every preset maps programs by General MIDI family now
    assert now.midi.programs == DEFAULT.midi.programs and now.midi.programs[24] == "guitar"
    before.midi.programs = now.midi.programs
    for sec in _SECTIONS:  # a difference: the file does not name a value default.toml sets (name it, or "" a binding)
        assert asdict(getattr(now, sec)) == asdict(getattr(before, sec)), f"{path.name} [{sec}] now inherits"
    assert asdict(now) == asdict(before)  # every other field too (the name, the model path as written)
    assert now.name == name
    assert now.model_path().resolve() == (PRESET_DIR / "../models/default/model.npz").resolve()
