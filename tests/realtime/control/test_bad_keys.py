"""Every key of the preset schema and of the model file, fed a bad value: one-line errors naming file and key.

The cases are generated from the schema (``dataclasses.fields`` of the preset
sections, ``REQUIRED_WEIGHTS`` and the config dataclasses), so a new key is
covered without touching this file.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from wnl_testutil import small_model

from realtime.control.presets import _SECTIONS, Preset, PresetError, load_preset, override
from realtime.model.config import ConditioningSpec, SourceFilterSpec, WaveNetConfig
from realtime.model.model_file import REQUIRED_WEIGHTS, ModelFileError, load_model

# ----------------------------------------------------------------- presets


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + " }"
    raise TypeError(v)


#: values of the wrong type for each schema type (every one must be refused)
WRONG = {
    "str": [5, 1.5, True, ["a"], {"a": "b"}, dt.date(2024, 1, 2)],
    "int": ["7", 7.5, True, [7], {"a": 7}, dt.date(2024, 1, 2)],
    "float": ["0.5", True, [0.5], {"a": 0.5}, dt.date(2024, 1, 2)],
    "bool": [1, 0, "true", 1.0, [True]],
    "dict[int, str]": [5, "x", [1, 2], True, {"1": 5}, {"1": ["a"]}, {"x": "a"}],
    "list": [5, "a.npz", 1.5, True, {"a": "b"}, [5], [""], dt.date(2024, 1, 2)],  # [swap] slots: a list of paths
}

SCHEMA = [(sec, f.name, f.type) for sec, cls in _SECTIONS.items() for f in fields(cls)]
WRONG_CASES = [(sec, key, v) for sec, key, typ in SCHEMA for v in WRONG[typ]]


def test_schema_is_what_the_cases_cover():
    assert {typ for _, _, typ in SCHEMA} <= set(WRONG)
    assert len(SCHEMA) >= 25 and {"model", "sound", "audio", "midi"} <= set(_SECTIONS)
    # [[effects]] is an array of tables, pedalboard's own parameters: tests/realtime/sound/test_effects_presets.py
    assert set(_SECTIONS) == {f.name for f in fields(Preset)} - {"name", "path", "effects"}


def preset_error(path: Path, text: str, *must: str) -> str:
    path.write_text(text)
    with pytest.raises(PresetError) as e:
        load_preset(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for m in must:
        assert m in msg, msg
    return msg


@pytest.mark.parametrize("sec,key,value", WRONG_CASES,
                         ids=[f"{s}.{k}={toml_value(v)}" for s, k, v in WRONG_CASES])
def test_wrong_type_names_file_and_key(tmp_path, sec, key, value):
    preset_error(tmp_path / "bad.toml", f"[{sec}]\n{key} = {toml_value(value)}\n", f"{sec}.{key}")


@pytest.mark.parametrize("sec,key", [(s, k) for s, k, t in SCHEMA if t == "float"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(tmp_path, sec, key, value):
    preset_error(tmp_path / "bad.toml", f"[{sec}]\n{key} = {toml_value(value)}\n", f"{sec}.{key}", "finite")


@pytest.mark.parametrize("sec,key", [(s, k) for s, k, t in SCHEMA if t == "float"])
def test_non_finite_floats_are_refused_as_overrides(sec, key):
    with pytest.raises(PresetError, match=re.escape(f"{sec}.{key}")):
        override(Preset(), sec, **{key: math.nan})


OUT_OF_RANGE = [
    ("model", "engine", "turbo"), ("model", "compute", "tpu"), ("model", "reprime", "always"),
    ("model", "seed", -1), ("model", "temperature", -0.01),
    ("model", "reprime_crossfade_ms", -1.0), ("model", "reprime_crossfade_ms", 100.5),
    ("sound", "gain_db", 12.5), ("sound", "velocity_to_level", -0.1), ("sound", "velocity_to_level", 1.1),
    ("sound", "release_ms", -1.0), ("sound", "glide_ms", -1.0), ("sound", "max_glide_ms", -0.5),
    ("sound", "bend_range", -2.0), ("sound", "temperature_min", -0.1), ("sound", "temperature_min", 1.5),
    ("audio", "samplerate", -1), ("audio", "samplerate", 7999), ("audio", "samplerate", 192001),
    ("audio", "blocksize", 15), ("audio", "blocksize", 8193), ("audio", "blocksize", 0),
    ("audio", "lead_ms", 0.5), ("audio", "lead_ms", 2000.5), ("audio", "latency", "fast"),
    ("audio", "latency", "-0.1"), ("audio", "latency", "nan"), ("audio", "latency", "inf"),
    ("midi", "channel", -1), ("midi", "channel", 17),
    ("watchdog", "silence_db", 0.5), ("watchdog", "silence_s", 0.0), ("watchdog", "dc_s", 60.5),
    ("watchdog", "noise_s", -1.0), ("watchdog", "dc_max", 0.0), ("watchdog", "dc_max", 1.5),
    ("watchdog", "flatness_max", 0.0), ("watchdog", "flatness_max", 1.01),
    ("watchdog", "dropout_s", -0.01), ("watchdog", "dropout_s", 61.0), ("watchdog", "dropout_db", 0.0),
    ("watchdog", "dropout_db", 121.0),
]


@pytest.mark.parametrize("sec,key,value", OUT_OF_RANGE, ids=[f"{s}.{k}={v}" for s, k, v in OUT_OF_RANGE])
def test_out_of_range_names_file_and_key(tmp_path, sec, key, value):
    preset_error(tmp_path / "bad.toml", f"[{sec}]\n{key} = {toml_value(value)}\n", f"{sec}.{key}")


def test_temperature_min_above_max(tmp_path):
    preset_error(tmp_path / "bad.toml", "[sound]\ntemperature_min = 1.0\ntemperature_max = 0.9\n",
                 "sound.temperature_min")


@pytest.mark.parametrize("table", ["cc", "programs"])
@pytest.mark.parametrize("number", ["128", "-1", "1000", "x", "1.5", ""])
def test_bad_numbers_in_tables(tmp_path, table, number):
    value = "gain" if table == "cc" else "a"
    preset_error(tmp_path / "bad.toml", f'[midi.{table}]\n"{number}" = "{value}"\n', f"midi.{table}.{number}")


def test_unknown_cc_parameter(tmp_path):
    preset_error(tmp_path / "bad.toml", '[midi.cc]\n7 = "volume"\n', "midi.cc.7", "volume")


BOUNDARIES = [
    ("model", "temperature", 0.0), ("model", "reprime_crossfade_ms", 100.0), ("model", "seed", 2**63 - 1),
    ("sound", "gain_db", 12.0), ("sound", "velocity_to_level", 0.0), ("sound", "velocity_to_level", 1.0),
    ("audio", "samplerate", 8000), ("audio", "samplerate", 192000), ("audio", "samplerate", 0),
    ("audio", "blocksize", 16), ("audio", "blocksize", 8192), ("audio", "lead_ms", 1.0),
    ("audio", "lead_ms", 2000.0), ("audio", "latency", "0.005"), ("audio", "latency", "high"),
    ("midi", "channel", 0), ("midi", "channel", 16), ("sound", "release_ms", 0), ("model", "temperature", 3),
]


@pytest.mark.parametrize("sec,key,value", BOUNDARIES, ids=[f"{s}.{k}={v}" for s, k, v in BOUNDARIES])
def test_boundary_values_are_accepted(tmp_path, sec, key, value):
    path = tmp_path / "ok.toml"
    path.write_text(f"[{sec}]\n{key} = {toml_value(value)}\n")
    got = getattr(getattr(load_preset(path), sec), key)
    assert got == value and type(got) is {"int": int, "float": float, "str": str}[
        {f.name: f.type for f in fields(_SECTIONS[sec])}[key]]


@pytest.mark.parametrize("sec", sorted(_SECTIONS))
def test_unknown_key_in_every_section(tmp_path, sec):
    msg = preset_error(tmp_path / "bad.toml", f"[{sec}]\nbogus_key = 1\n", f"{sec}.bogus_key", "unknown key")
    for f in fields(_SECTIONS[sec]):  # the message lists the known keys
        assert f.name in msg


@pytest.mark.parametrize("text,key", [
    ("[bogus]\nx = 1\n", "'bogus'"), ("speed = 3\n", "'speed'"), ("name = 5\n", "name"),
    ("model = 5\n", "[model]"), ("sound = \"loud\"\n", "[sound]"), ("audio = [1]\n", "[audio]"),
    ("midi = true\n", "[midi]"), ("[midi]\ncc = 3\n", "midi.cc"), ("[midi]\nprograms = \"x\"\n", "midi.programs"),
])
def test_bad_top_level(tmp_path, text, key):
    preset_error(tmp_path / "bad.toml", text, key)


# ----------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the header of a small valid model file."""
    path = small_model().save(tmp_path_factory.mktemp("model") / "good.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(arrays["header"].tobytes())


def write_model(path: Path, arrays: dict[str, np.ndarray], header=None, raw_header: bytes | None = None) -> Path:
    arrays = dict(arrays)
    if raw_header is None and header is not None:
        raw_header = json.dumps(header).encode()
    if raw_header is not None:
        arrays["header"] = np.frombuffer(raw_header, np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def model_error(path: Path, *must: str) -> str:
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for m in must:
        assert re.search(m, msg), (m, msg)
    return msg


def test_the_good_model_loads(tmp_path, good):
    arrays, header = good
    m = load_model(write_model(tmp_path / "ok.npz", arrays))
    assert set(m.weights) == set(REQUIRED_WEIGHTS) and m.config.to_dict() == header["config"]


@pytest.mark.parametrize("name", REQUIRED_WEIGHTS)
@pytest.mark.parametrize("how", ["grow", "shrink", "extra-axis", "flat"])
def test_wrong_weight_shape_names_the_weight(tmp_path, good, name, how):
    arrays = dict(good[0])
    w = arrays[f"w/{name}"]
    arrays[f"w/{name}"] = {"grow": lambda: np.zeros((w.shape[0] + 1,) + w.shape[1:], w.dtype),
                           "shrink": lambda: w[..., :-1],
                           "extra-axis": lambda: w[..., None],
                           "flat": lambda: w.reshape(-1) if w.ndim > 1 else w.reshape(1, -1)}[how]()
    msg = model_error(write_model(tmp_path / "shape.npz", arrays), rf"\bweight {name}\b", "shape")
    assert str(tuple(w.shape)) in msg  # the shape the config needs


@pytest.mark.parametrize("name", REQUIRED_WEIGHTS)
def test_missing_weight_names_it(tmp_path, good, name):
    arrays = {k: v for k, v in good[0].items() if k != f"w/{name}"}
    model_error(write_model(tmp_path / "missing.npz", arrays), rf"missing weights {name}$")


@pytest.mark.parametrize("name", REQUIRED_WEIGHTS)
@pytest.mark.parametrize("dtype", ["<U2", "complex64"])
def test_non_numeric_weight_names_it(tmp_path, good, name, dtype):
    arrays = dict(good[0])
    arrays[f"w/{name}"] = np.zeros(arrays[f"w/{name}"].shape, dtype)
    model_error(write_model(tmp_path / "dtype.npz", arrays), rf"\bweight {name}\b", "dtype")


def config_cases():
    """(dotted key, bad value) for every config field, from the dataclasses."""
    bad_for = {"int": ["32", 1.5, True, None, -3, [1]], "bool": [1, "yes", None],
               "tuple[str, ...]": ["abc", [1, 2], None, {"a": 1}], "float": ["0.85", True, None, [1.0]]}
    out = []
    for f in fields(WaveNetConfig):
        if f.name not in ("conditioning", "source_filter"):
            out += [(f"config.{f.name}", v) for v in bad_for[f.type]]
    for f in fields(ConditioningSpec):
        out += [(f"config.conditioning.{f.name}", v) for v in bad_for[f.type]]
    for f in fields(SourceFilterSpec):
        out += [(f"config.source_filter.{f.name}", v) for v in bad_for[f.type]]
    out += [("config.conditioning.instruments", []), ("config.conditioning", [1]), ("config.conditioning", None),
            ("config", "x"), ("config", None), ("config", [])]
    return out


CONFIG_CASES = config_cases()


@pytest.mark.parametrize("key,value", CONFIG_CASES, ids=[f"{k}={v!r}" for k, v in CONFIG_CASES])
def test_bad_config_value_names_the_key(tmp_path, good, key, value):
    arrays, header = good
    header = json.loads(json.dumps(header))
    if key.startswith("config.source_filter."):  # a source-filter model's config, then the bad value
        header["config"]["source_filter"] = dataclasses.asdict(SourceFilterSpec())
        header["config"]["conditioning"]["local"].append("pred")
    parts = key.split(".")
    if len(parts) == 1:
        header["config"] = value
    else:
        d = header
        for p in parts[:-1]:
            d = d[p]
        d[parts[-1]] = value
    model_error(write_model(tmp_path / "cfg.npz", arrays, header), re.escape(key))


@pytest.mark.parametrize("key,value,must", [
    ("residual_channels", 0, "residual_channels"), ("sample_rate", 0, "sample_rate"),
    ("quantization", 255, "quantization"), ("bogus", 1, "bogus"),
    ("conditioning.local", ["gate", "wobble"], "wobble"), ("conditioning.bogus", 1, "bogus"),
    ("conditioning.pitch_dim", 5, r"weight (w_glob|pitch_embed)"),  # consistent type, wrong size: shapes disagree
    ("layers_per_stack", 7, r"weight w_dil"),
])
def test_bad_config_range_names_the_key(tmp_path, good, key, value, must):
    arrays, header = good
    header = json.loads(json.dumps(header))
    d = header["config"]
    *outer, last = key.split(".")
    for p in outer:
        d = d[p]
    d[last] = value
    model_error(write_model(tmp_path / "cfg.npz", arrays, header), must)


@pytest.mark.parametrize("raw,must", [
    (b"{not json", "corrupt header"), (b"", "corrupt header"), (b"\xff\xfe\x00", "corrupt header"),
    (b"[1, 2, 3]", r"corrupt header \(JSON an array, not an object"), (b"[]", "JSON an array"),
    (b'"wavenet-live-model"', "JSON a string"), (b"42", "JSON a number"), (b"true", "JSON a boolean"),
    (b"null", "JSON null"),
])
def test_bad_header(tmp_path, good, raw, must):
    model_error(write_model(tmp_path / "hdr.npz", good[0], raw_header=raw), must)


@pytest.mark.parametrize("change,must", [
    ({"format": "some-other-model"}, "format 'some-other-model'"), ({"format": None}, "format None"),
    ({"format": 1}, "format 1"), ({"version": 2}, "unknown version 2"), ({"version": "1"}, "unknown version '1'"),
    ({"version": None}, "unknown version None"), ({"metadata": [1]}, "metadata"), ({"metadata": "x"}, "metadata"),
])
def test_bad_header_fields(tmp_path, good, change, must):
    header = {**good[1], **change}
    model_error(write_model(tmp_path / "hdr.npz", good[0], header), re.escape(must))


@pytest.mark.parametrize("drop", ["format", "version", "config"])
def test_header_missing_field(tmp_path, good, drop):
    header = {k: v for k, v in good[1].items() if k != drop}
    model_error(write_model(tmp_path / "hdr.npz", good[0], header), drop)


def test_cli_names_the_model_file_for_a_list_header(tmp_path, good):
    from wnl_testutil import run_cli

    bad = write_model(tmp_path / "listhdr.npz", good[0], raw_header=b"[]")
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(bad), timeout=120)
    err = res.stderr.strip()
    assert res.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(bad) in err and "corrupt header" in err
