"""The preset's probability floor ([model] prob_floor) reaches every voice's sampler, mono and polyphonic; a value
out of range is one line naming the field."""
from __future__ import annotations

import dataclasses

import pytest
from wnl_testutil import small_model

from realtime.control.presets import Preset, PresetError, load_preset
from realtime.offline.render import Session


@pytest.mark.parametrize("voices", [1, 3])
def test_every_voice_samples_with_the_presets_floor(voices):
    base = Preset()
    p = dataclasses.replace(base, model=dataclasses.replace(base.model, prob_floor=0.003),
                            sound=dataclasses.replace(base.sound, voices=voices))
    s = Session.open(p, small_model())
    engines = s.controller._voice_engines()
    assert len(engines) == voices
    assert [float(e.temperature[1]) for e in engines] == [0.003] * voices


@pytest.mark.parametrize("value", ["-0.1", "0.5"])
def test_a_floor_out_of_range_is_one_line(tmp_path, value):
    f = tmp_path / "p.toml"
    f.write_text(f"[model]\nprob_floor = {value}\n")
    with pytest.raises(PresetError, match=r"model\.prob_floor.*0-0\.01") as e:
        load_preset(f)
    assert "\n" not in str(e.value)
