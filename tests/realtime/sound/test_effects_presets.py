"""[[effects]] in presets (realtime/sound/effects.py): what parses, and the one-line errors for what does not."""
from __future__ import annotations

import numpy as np
import pedalboard
import pytest

from realtime.control.presets import PresetError, load_preset
from realtime.sound.effects import BUILTINS, EffectChain


def preset_file(tmp_path, body: str):
    p = tmp_path / "fx.toml"
    p.write_text('name = "fx"\n' + body)
    return p


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_every_builtin_builds_with_its_parameters_at_both_ends_of_their_range(tmp_path, kind):
    params = BUILTINS[kind]
    for end in (0, 1):
        lines = [f'type = "{kind}"'] + [f"{k} = {min(v[end], 7000.0) if k.endswith('_hz') else v[end]}"
                                        for k, v in params.items()]
        p = load_preset(preset_file(tmp_path, "[[effects]]\n" + "\n".join(lines) + "\n"))
        chain = EffectChain(p.effects, 16000, p.path)
        plugin = chain.plugins[0]
        assert type(plugin) is getattr(pedalboard, kind)
        for k, v in params.items():  # pedalboard holds what the preset says (float32 precision)
            want = min(v[end], 7000.0) if k.endswith("_hz") else v[end]
            assert getattr(plugin, k) == pytest.approx(want, rel=1e-5, abs=1e-6), k
        y = chain.process(np.full(512, 0.1, np.float32))
        assert y.shape == (512,) and np.isfinite(y).all()
        assert chain.describe() == f"fx {kind}"


def test_effects_in_order_with_cc_bindings(tmp_path):
    p = load_preset(preset_file(tmp_path, """
[[effects]]
type = "LadderFilter"
mode = "HPF24"
cutoff_hz = 300
[[effects]]
type = "Reverb"
room_size = 0.8
wet_level = 0.4
[midi.cc]
91 = "fx2.wet_level"
74 = "fx1.cutoff_hz"
"""))
    assert [fx["type"] for fx in p.effects] == ["LadderFilter", "Reverb"]
    assert p.midi.cc[91] == "fx2.wet_level" and p.midi.cc[74] == "fx1.cutoff_hz"
    chain = EffectChain(p.effects, 16000, p.path)
    assert chain.plugins[0].mode == pedalboard.LadderFilter.Mode.HPF24
    assert chain.plugins[1].room_size == pytest.approx(0.8)
    assert chain.describe() == "fx LadderFilter>Reverb"
    assert chain.set_param("fx2.wet_level", 1.0) == {"param": "fx2.wet_level", "value": 1.0}
    assert chain.plugins[1].wet_level == 1.0
    ev = chain.set_param("fx1.cutoff_hz", 0.5)  # log scale: the middle of 20-8000 Hz is 400 Hz
    assert ev["value"] == pytest.approx(400.0) and chain.plugins[0].cutoff_hz == pytest.approx(400.0)
    assert chain.set_param("fx1.cutoff_hz", 1.0)["value"] == pytest.approx(0.45 * 16000)  # below Nyquist


@pytest.mark.parametrize("body, message", [
    ('[[effects]]\ntype = "Flanger"\n', "effects 1 (Flanger): type: unknown effect 'Flanger' (one of Reverb"),
    ('[[effects]]\nroom_size = 0.5\n', "effects 1: type: expected a string"),
    ('[[effects]]\ntype = "Reverb"\n[[effects]]\ntype = "Delay"\ndelay_s = 0.2\n',
     "effects 2 (Delay): delay_s: unknown parameter (known: delay_seconds, feedback, mix)"),
    ('[[effects]]\ntype = "Reverb"\nroom_size = 1.5\n', "effects 1 (Reverb): room_size: 1.5 is out of range 0-1"),
    ('[[effects]]\ntype = "Gain"\ngain_db = "loud"\n', "effects 1 (Gain): gain_db: expected a number, got 'loud'"),
    ('[[effects]]\ntype = "Gain"\ngain_db = true\n', "effects 1 (Gain): gain_db: expected a number, got True"),
    ('[[effects]]\ntype = "LadderFilter"\nmode = "LPF36"\n', "effects 1 (LadderFilter): mode: 'LPF36' is not one of"),
    ('[[effects]]\ntype = "vst3"\n', "effects 1 (vst3): path: expected the plugin file's path"),
    ('effects = 3\n', "effects: expected [[effects]] tables"),
    ('[[effects]]\ntype = "Reverb"\n[midi.cc]\n91 = "fx2.wet_level"\n',
     "midi.cc.91: 'fx2.wet_level': the preset has 1 effect(s)"),
    ('[[effects]]\ntype = "Reverb"\n[midi.cc]\n91 = "fx1.wetness"\n',
     "midi.cc.91: 'fx1.wetness': Reverb has no CC-mappable parameter 'wetness'"),
    ('[midi.cc]\n91 = "fx1.wet_level"\n', "midi.cc.91: unknown parameter 'fx1.wet_level'"),
])
def test_bad_effects_give_one_line_naming_file_effect_and_parameter(tmp_path, body, message):
    with pytest.raises(PresetError) as e:
        load_preset(preset_file(tmp_path, body))
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "fx.toml")), text
    assert message in text, text


def test_a_cutoff_above_the_model_rates_nyquist_is_named(tmp_path):
    p = load_preset(preset_file(tmp_path, '[[effects]]\ntype = "LowpassFilter"\ncutoff_frequency_hz = 7900\n'))
    EffectChain(p.effects, 16000, p.path)  # below 8 kHz: fine
    with pytest.raises(ValueError, match=r"effects 1 \(LowpassFilter\): cutoff_frequency_hz: 7900 Hz is not below "
                                         r"the model rate's Nyquist frequency \(4000 Hz\)"):
        EffectChain(p.effects, 8000, p.path)


@pytest.mark.parametrize("what", ["missing", "not a plugin"])
def test_a_missing_or_broken_vst3_is_one_line_and_the_chain_plays_without_it(tmp_path, what):
    plugin = tmp_path / "Broken.vst3"
    if what == "not a plugin":
        plugin.write_bytes(b"\x7fELF not really")
    p = load_preset(preset_file(tmp_path, f"""
[[effects]]
type = "vst3"
path = "{plugin.name}"
[[effects]]
type = "Gain"
gain_db = -6
[midi.cc]
20 = "fx1.Mix"
"""))
    assert p.effects[0]["path"] == str(plugin)  # relative to the preset's folder
    said: list[str] = []
    chain = EffectChain(p.effects, 16000, p.path, say=said.append)
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(f"{p.path}: effects 1 (vst3): {plugin}: cannot load (") and "playing without it" in said[0]
    assert chain.describe() == "fx Gain"
    assert chain.set_param("fx1.Mix", 0.5) is None  # its CC does nothing
    y = chain.process(np.full(100, 0.5, np.float32))
    np.testing.assert_allclose(y, 0.5 * 10 ** (-6 / 20), rtol=1e-5)  # the Gain still plays
