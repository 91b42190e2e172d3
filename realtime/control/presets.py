"""TOML presets: model, engine, sound, audio and MIDI mapping, validated with one-line errors.

Every error names the file, the key and the problem. A preset file inherits presets/default.toml: each
table is merged key by key (a key the file gives wins; an array, such as an array of tables, replaces the
default's whole), and a CC or program bound to "" in [midi.cc] / [midi.programs] drops the inherited binding.
A relative path is relative to the folder of the file that names it: the default's against presets/, a
user preset's (anywhere, e.g. the config folder ``--learn`` writes to) against its own.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from realtime.kernel import loop_lowpass, period_noise

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parents[2] / "presets"
DEFAULT_PRESET = PRESET_DIR / "default.toml"

#: parameters a CC can drive
CC_PARAMS = ("temperature", "morph", "gain", "glide", "expression", "period_noise", "loop_lowpass",
             "input_mode", "input_capture", "input_level")
#: what the live audio input does ([input] mode; realtime/sound/audio_input.py)
INPUT_MODES = ("off", "prime", "continue", "through")
#: engines that play without the network: the envelope bank's filter driven by a pulse train (engine/pulse_engine.py)
REFERENCE_ENGINES = ("lpc-pulse", "lpc-pulse-mulaw")
ENGINES = ("numba", "numba-bf16", "numba-bf16dot", "numba-int8", "numba-int8dot", "torchscript", "auto") + REFERENCE_ENGINES
REPRIME_MODES = ("off", "note_on", "note_on_program")


def instrument_names(csv: str) -> tuple[str, ...]:
    """Instrument names of a comma-separated preset value ("drums, bass")."""
    return tuple(x.strip() for x in csv.split(",") if x.strip())


class PresetError(ValueError):
    """A preset file is missing, malformed or holds a bad value."""


@dataclass
class ModelSection:
    path: str = "../models/default/model.npz"
    engine: str = "numba"
    compute: str = "cpu"
    seed: int = 0
    temperature: float = 0.9
    prime: str = "silence"
    reprime: str = "note_on"
    reprime_crossfade_ms: float = 5.0
    period_noise: float = 0.0  # sampler noise correlated one f0 period back (0..0.95; realtime/kernel/period_noise.py)
    # low-pass inside the feedback loop, pitched instruments (0..0.5; realtime/kernel/loop_lowpass.py)
    loop_lowpass: float = 0.0
    # LPCNet's probability floor: each class's probability lowered by this before the draw (0..0.01, 0 = off)
    prob_floor: float = 0.0
    unpitched: str = "drums"   # comma-separated instrument names without an f0: independent noise, no loop low-pass
    # instruments whose note-on plays the seed bank's recorded attack before the network goes on from it
    bank_attack: str = "drums"


@dataclass
class SoundSection:
    gain_db: float = -3.0
    velocity_to_level: float = 0.5
    release_ms: float = 300.0
    glide_ms: float = 40.0
    bend_range: float = 2.0
    morph_to: str = ""
    temperature_min: float = 0.5
    temperature_max: float = 1.2
    max_glide_ms: float = 500.0
    voices: int = 1            # 1 = monophonic (legato glide); 2-16 = polyphonic (one batched kernel call)
    threads: int = 0           # polyphonic voice groups on 1 or 2 cores; 0 = as many as this process may use (max 2)
    legato: bool = False       # with voices > 1: each MIDI channel monophonic (last-note priority, glide)


@dataclass
class AudioSection:
    device: str = ""
    samplerate: int = 0
    blocksize: int = 256
    latency: str = "low"
    lead_ms: float = 40.0
    resample: str = "hq"     # hq (soxr, ~15 ms, clean) | fast (cubic, ~0 ms, some imaging)
    record_format: str = "wav"  # session folders: wav (float32, replays exactly) | flac (24-bit)


@dataclass
class InputSection:
    """Live audio input (issue 40; realtime/sound/audio_input.py): --input DEVICE, or render --input-file."""

    device: str = ""         # name substring or index; "" = no input unless --input / --input-file gives one
    channel: int = 1         # the device channel to take (1-based; 0 = the mean of all)
    mode: str = "prime"      # off | prime | continue | through (a CC bound to input_mode switches)
    prime_ms: float = 128.0  # prime: the last N ms of the input become the prime at each note-on
    level_db: float = -6.0   # through: the input's level in the output (a CC bound to input_level moves it)
    gate_db: float = -60.0   # prime: an input quieter than this (RMS over prime_ms) primes from the seed bank


@dataclass
class MidiSection:
    port: str = ""
    api: str = ""
    channel: int = 0
    virtual: bool = False
    cc: dict[int, str] = field(default_factory=dict)
    programs: dict[int, str] = field(default_factory=dict)
    drum_channel: int = 10     # General MIDI's percussion channel (1-16; 0 = none): notes pick drums


@dataclass
class WatchdogSection:
    """Thresholds of the generation watchdog (realtime/sound/watchdog.py)."""

    enabled: bool = True
    silence_db: float = -50.0
    silence_s: float = 0.4
    dc_max: float = 0.25
    dc_s: float = 0.3
    flatness_max: float = 0.4   # white noise measures ~0.56, tonal notes < 0.1
    noise_s: float = 0.6
    noise_ok: str = "drums"   # comma-separated instrument names exempt from the noise check
    dropout_s: float = 0.05   # a held note falling silent this long (s) right after sounding: a dropout (0 = off)
    dropout_db: float = 15.0  # ... when it fell from at least this many dB above silence_db within 0.2 s
    decay_ok: str = "drums"   # comma-separated instrument names whose held notes may decay to silence


@dataclass
class SwapSection:
    """[swap]: models or presets to switch to while playing, crossfaded (realtime/control/swap.py)."""

    slots: list = field(default_factory=list)  # model files (.npz) or presets (.toml), relative to this file
    crossfade_ms: float = 50.0
    cc: int = 0                # a CC whose value picks a slot: 0-127 split evenly among the slots (0 = none)
    program_channel: int = 0   # program N on this channel (1-16) picks slot N (0 = none); other channels as before


@dataclass
class Preset:
    model: ModelSection = field(default_factory=ModelSection)
    sound: SoundSection = field(default_factory=SoundSection)
    audio: AudioSection = field(default_factory=AudioSection)
    midi: MidiSection = field(default_factory=MidiSection)
    watchdog: WatchdogSection = field(default_factory=WatchdogSection)
    swap: SwapSection = field(default_factory=SwapSection)
    input: InputSection = field(default_factory=InputSection)
    # [[effects]]: pedalboard effects in order, each {"type": ..., parameters} (realtime/sound/effects.py)
    effects: list[dict[str, Any]] = field(default_factory=list)
    name: str = "default"
    path: Path | None = None

    def model_path(self) -> Path:
        p = Path(self.model.path).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    def program_map(self, instruments: tuple[str, ...] | list[str]) -> dict[int, str]:
        """[midi.programs] for a model with ``instruments``: without the entries inherited from the default
        preset's General MIDI map (the same program and name as there) that name an instrument this model
        lacks, so a preset for a model of other instruments keeps only its own entries."""
        gm = default_programs()
        return {k: v for k, v in self.midi.programs.items() if v in instruments or gm.get(k) != v}

    def check_instruments(self, instruments: tuple[str, ...] | list[str]) -> None:
        """Check names in [midi.programs] (see program_map) and sound.morph_to against the model's
        instruments."""
        where = self.path or "preset"
        for prog, name in self.program_map(instruments).items():
            if name not in instruments:
                raise PresetError(f"{where}: midi.programs.{prog}: unknown instrument {name!r} "
                                  f"(model has: {', '.join(instruments)})")
        if self.sound.morph_to and self.sound.morph_to not in instruments:
            raise PresetError(f"{where}: sound.morph_to: unknown instrument {self.sound.morph_to!r} "
                              f"(model has: {', '.join(instruments)})")


_SECTIONS = {"model": ModelSection, "sound": SoundSection, "audio": AudioSection, "midi": MidiSection,
             "watchdog": WatchdogSection, "input": InputSection, "swap": SwapSection}


_DEFAULT_PROGRAMS: dict[int, str] | None = None


def default_programs() -> dict[int, str]:
    """presets/default.toml's [midi.programs] (read once; {} if it cannot be read)."""
    global _DEFAULT_PROGRAMS
    if _DEFAULT_PROGRAMS is None:
        try:
            raw = tomllib.loads(DEFAULT_PRESET.read_text()).get("midi", {}).get("programs", {})
            _DEFAULT_PROGRAMS = _number_table(DEFAULT_PRESET, "midi.programs", raw)
        except (OSError, ValueError, AttributeError):
            _DEFAULT_PROGRAMS = {}
    return _DEFAULT_PROGRAMS


def load_preset(path: str | Path | None = None) -> Preset:
    """Read and validate a preset file (default: presets/default.toml) over presets/default.toml's values."""
    path = Path(path) if path is not None else DEFAULT_PRESET
    data = _absolute_paths(_read(path), path, ("prime",))
    if path.resolve() != DEFAULT_PRESET.resolve():
        base = _absolute_paths(_read(DEFAULT_PRESET), DEFAULT_PRESET, ("path", "prime"))
        preset_from_dict(base, DEFAULT_PRESET)  # a bad value there is named as the default's
        base.pop("name", None)  # a file's name is its own (or its file name)
        data = merged(base, data)
    return preset_from_dict(data, path)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PresetError(f"preset {path}: not found")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PresetError(f"preset {path}: not valid TOML ({e})") from None


def merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: tables merged key by key, any other value (arrays included) replaced."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _absolute_paths(data: dict[str, Any], path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """``data`` with the relative paths among [model] ``keys`` (``path``; ``prime`` when it names an audio
    file) made absolute against ``path``'s folder. A user file's own model path stays as written
    (:meth:`Preset.model_path` resolves it against the file); an inherited one cannot."""
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    model = dict(model)
    for key in keys:
        value = model.get(key)
        if not isinstance(value, str):
            continue
        kind, _, arg = value.strip().partition(":")
        if key == "prime" and kind in ("silence", "sine", "noise"):
            continue
        p = Path(arg if key == "prime" and kind == "file" else value.strip()).expanduser()
        if not p.is_absolute():
            p = (path.parent / p).resolve()
            model[key] = f"file:{p}" if key == "prime" else str(p)
    return dict(data, model=model)


def preset_from_dict(data: dict[str, Any], path: Path | None = None) -> Preset:
    where = path or "preset"
    unknown = set(data) - set(_SECTIONS) - {"name", "effects"}
    if unknown:
        raise PresetError(f"{where}: unknown key {sorted(unknown)[0]!r} (sections: {', '.join(_SECTIONS)})")
    name = data.get("name", path.stem if path else "preset")
    if not isinstance(name, str):
        raise PresetError(f"{where}: name: expected a string")
    kw = {}
    for sec, cls in _SECTIONS.items():
        raw = data.get(sec, {})
        if not isinstance(raw, dict):
            raise PresetError(f"{where}: [{sec}] must be a table")
        kw[sec] = _section(where, sec, cls, raw)
    from realtime.sound.effects import EffectError, check_effects

    try:
        kw["effects"] = check_effects(where, data.get("effects", []), Path(path).resolve().parent if path else None)
    except EffectError as e:
        raise PresetError(str(e)) from None
    p = Preset(name=name, path=Path(path).resolve() if path else None, **kw)
    _validate(where, p)
    return p


def _section(where, sec: str, cls, raw: dict[str, Any]):
    known = {f.name: f for f in fields(cls)}
    vals = {}
    for key, value in raw.items():
        if key not in known:
            raise PresetError(f"{where}: {sec}.{key}: unknown key (known: {', '.join(known)})")
        want = known[key].type
        if sec == "midi" and key in ("cc", "programs"):
            vals[key] = _number_table(where, f"{sec}.{key}", value)
            continue
        if sec == "swap" and key == "slots":
            vals[key] = _slot_paths(where, value)
            continue
        vals[key] = _typed(where, f"{sec}.{key}", value, want)
    return cls(**vals)


def _typed(where, key: str, value: Any, want: str):
    ok = {"str": isinstance(value, str), "bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool)}[want]
    if not ok:
        raise PresetError(f"{where}: {key}: expected {want}, got {type(value).__name__} {value!r}")
    return float(value) if want == "float" else value


def _slot_paths(where, value: Any) -> list[str]:
    """[swap] slots: a list of model/preset paths, made absolute against the preset file's folder (a missing
    file is no error here: it fails at its swap with a one-line message, and playing goes on)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PresetError(f"{where}: swap.slots: expected a list of model (.npz) or preset (.toml) paths")
    out = []
    for v in value:
        p = Path(v.strip()).expanduser()
        if not p.is_absolute() and isinstance(where, Path):
            p = (where.parent / p).resolve()
        out.append(str(p))
    return out


def _number_table(where, key: str, value: Any) -> dict[int, str]:
    """NUMBER = "name"; [midi.programs] also takes "FIRST-LAST" = "name" (a range, e.g. a GM family
    "24-31"), which single numbers override whatever their order in the file."""
    if not isinstance(value, dict):
        raise PresetError(f"{where}: [{key}] must be a table of NUMBER = \"name\"")
    ranges = key == "midi.programs"
    spans = []
    for k, v in value.items():
        lo, dash, hi = str(k).partition("-") if ranges else (str(k), "", "")
        try:
            a, b = int(lo), int(hi if dash else lo)
        except ValueError:
            raise PresetError(f"{where}: {key}.{k}: key must be a number 0-127"
                              + (" or a range FIRST-LAST" if ranges else "")) from None
        if not (0 <= a <= 127 and 0 <= b <= 127):
            raise PresetError(f"{where}: {key}.{k}: number out of range 0-127")
        if a > b:
            raise PresetError(f"{where}: {key}.{k}: range runs backwards (FIRST-LAST with FIRST <= LAST)")
        if not isinstance(v, str):
            raise PresetError(f"{where}: {key}.{k}: expected a string, got {type(v).__name__} {v!r}")
        spans.append((not dash, a, b, v))
    out = {}
    for _, a, b, v in sorted(spans, key=lambda s: s[0]):  # ranges first, single numbers over them
        for n in range(a, b + 1):
            if v:  # "" unbinds (drops a binding inherited from presets/default.toml)
                out[n] = v
            else:
                out.pop(n, None)
    return out


def _validate(where, p: Preset) -> None:
    def bad(key, msg):
        raise PresetError(f"{where}: {key}: {msg}")

    for sec in _SECTIONS:  # nan/inf pass every range check below (nan < 0 is False)
        for f in fields(getattr(p, sec)):
            v = getattr(getattr(p, sec), f.name)
            if f.type == "float" and isinstance(v, (int, float)) and not math.isfinite(v):
                bad(f"{sec}.{f.name}", f"must be a finite number, got {v}")
    if p.model.engine not in ENGINES:
        bad("model.engine", f"{p.model.engine!r} is not one of {', '.join(ENGINES)}")
    if p.model.compute not in ("cpu", "cuda"):
        bad("model.compute", f"{p.model.compute!r} is not cpu or cuda")
    if p.model.reprime not in REPRIME_MODES:
        bad("model.reprime", f"{p.model.reprime!r} is not one of {', '.join(REPRIME_MODES)}")
    if p.model.seed < 0:
        bad("model.seed", "must be >= 0")
    if p.model.temperature < 0:
        bad("model.temperature", "must be >= 0")
    if not 0 <= p.model.reprime_crossfade_ms <= 100:
        bad("model.reprime_crossfade_ms", "must be within 0-100")
    if not 0 <= p.model.period_noise <= period_noise.RHO_MAX:
        bad("model.period_noise", f"must be within 0-{period_noise.RHO_MAX}")
    if not 0 <= p.model.loop_lowpass <= loop_lowpass.A_MAX:
        bad("model.loop_lowpass", f"must be within 0-{loop_lowpass.A_MAX}")
    if not 0 <= p.model.prob_floor <= 0.01:
        bad("model.prob_floor", "must be within 0-0.01")
    s = p.sound
    if not 0 <= s.velocity_to_level <= 1:
        bad("sound.velocity_to_level", "must be within 0-1")
    if s.gain_db > 12:
        bad("sound.gain_db", "must be <= 12")
    for k in ("release_ms", "glide_ms", "max_glide_ms", "bend_range"):
        if getattr(s, k) < 0:
            bad(f"sound.{k}", "must be >= 0")
    if not 0 <= s.temperature_min <= s.temperature_max:
        bad("sound.temperature_min", "must be >= 0 and <= sound.temperature_max")
    if not 1 <= s.voices <= 16:
        bad("sound.voices", "must be within 1-16")
    if s.threads not in (0, 1, 2):
        bad("sound.threads", "must be 0 (auto), 1 or 2")
    a = p.audio
    if a.samplerate < 0 or (a.samplerate and not 8000 <= a.samplerate <= 192000):
        bad("audio.samplerate", "must be 0 (device default) or 8000-192000")
    if not 16 <= a.blocksize <= 8192:
        bad("audio.blocksize", "must be within 16-8192")
    if not 1 <= a.lead_ms <= 2000:
        bad("audio.lead_ms", "must be within 1-2000")
    if a.record_format not in ("wav", "flac"):
        bad("audio.record_format", f"{a.record_format!r} is not wav or flac")
    if a.resample not in ("hq", "fast"):
        bad("audio.resample", f"{a.resample!r} is not hq or fast")
    if a.latency not in ("low", "high"):
        try:
            ok = math.isfinite(float(a.latency)) and float(a.latency) >= 0
        except ValueError:
            ok = False
        if not ok:
            bad("audio.latency", "must be 'low', 'high' or seconds >= 0 as a string")
    i = p.input
    if i.mode not in INPUT_MODES:
        bad("input.mode", f"{i.mode!r} is not one of {', '.join(INPUT_MODES)}")
    if not 0 <= i.channel <= 64:
        bad("input.channel", "must be 0 (the mean of all) or 1-64")
    if not 1 <= i.prime_ms <= 2000:
        bad("input.prime_ms", "must be within 1-2000")
    if i.level_db > 12:
        bad("input.level_db", "must be <= 12")
    if i.gate_db > 0:
        bad("input.gate_db", "must be <= 0 (dBFS)")
    w = p.watchdog
    if w.silence_db > 0:
        bad("watchdog.silence_db", "must be <= 0 (dBFS)")
    for k in ("silence_s", "dc_s", "noise_s"):
        if not 0 < getattr(w, k) <= 60:
            bad(f"watchdog.{k}", "must be within 0-60 seconds")
    if not 0 <= w.dropout_s <= 60:
        bad("watchdog.dropout_s", "must be within 0-60 seconds (0 = off)")
    if not 0 < w.dropout_db <= 120:
        bad("watchdog.dropout_db", "must be within 0-120 dB")
    if not 0 < w.dc_max <= 1:
        bad("watchdog.dc_max", "must be within 0-1")
    if not 0 < w.flatness_max <= 1:
        bad("watchdog.flatness_max", "must be within 0-1")
    if not 0 <= p.midi.channel <= 16:
        bad("midi.channel", "must be 0 (omni) or 1-16")
    if not 0 <= p.midi.drum_channel <= 16:
        bad("midi.drum_channel", "must be 0 (none) or 1-16")
    sw = p.swap
    if not 0 <= sw.crossfade_ms <= 5000:
        bad("swap.crossfade_ms", "must be within 0-5000")
    if not 0 <= sw.cc <= 119:
        bad("swap.cc", "must be 0 (none) or a CC number 1-119")
    if sw.cc and sw.cc in p.midi.cc:
        bad("swap.cc", f"CC {sw.cc} is bound to {p.midi.cc[sw.cc]!r} in [midi.cc] (unbind it there with \"\")")
    if not 0 <= sw.program_channel <= 16:
        bad("swap.program_channel", "must be 0 (none) or 1-16")
    if (sw.cc or sw.program_channel) and not sw.slots:
        bad("swap.slots", "empty: swap.cc / swap.program_channel need slots to pick from")
    for cc, param in p.midi.cc.items():
        if param.startswith("fx") and p.effects:  # an effect's parameter: fxN.PARAM (realtime/sound/effects.py)
            from realtime.sound.effects import check_fx_param

            problem = check_fx_param(where, param, p.effects)
            if problem:
                bad(f"midi.cc.{cc}", problem)
        elif param not in CC_PARAMS:
            bad(f"midi.cc.{cc}", f"unknown parameter {param!r} (known: {', '.join(CC_PARAMS)}, or fxN.PARAM "
                                 f"for an effect)")


def override(p: Preset, section: str, **values: Any) -> Preset:
    """A copy of ``p`` with command-line values (None = keep) set in ``section``, re-validated."""
    vals = {k: v for k, v in values.items() if v is not None}
    if not vals:
        return p
    new = replace(p, **{section: replace(getattr(p, section), **vals)})
    _validate(p.path or "command line", new)
    return new
