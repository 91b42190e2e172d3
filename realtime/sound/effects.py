"""The effect chain: pedalboard's built-in effects (and VST3 plugins) on the model-rate stream.

Thread: generator (live), the caller's (render, replay). A preset's ``[[effects]]`` tables name
pedalboard classes and their parameters by pedalboard's own names, in order::

    [[effects]]
    type = "Reverb"          # a class of BUILTINS, or "vst3" with path = "plugin.vst3"
    room_size = 0.8
    wet_level = 0.4

:func:`check_effects` validates the tables when a preset loads (one-line errors naming the file,
the effect's number and type, and the parameter). :class:`EffectChain` builds a
``pedalboard.Pedalboard`` from them and processes each block with ``reset=False``, so its state
(delay lines, reverb tails, LFO phases) carries across blocks: block by block equals the whole
signal (tested; the chain is prepared once for the largest block, since a plugin re-prepared for a
larger block would drop its state). A CC mapped to ``fxN.PARAM`` (N = the effect's number, from 1)
sets the parameter at a block boundary, as an event logged with its MIDI, so a replay is exact.

After :meth:`EffectChain` input stops (``Session.stop``) the chain keeps running on silence until
its output is below ``TAIL_DB`` dBFS (:attr:`EffectChain.ringing`) or ``TAIL_MAX_S`` passed.
A VST3 plugin that is missing or fails to load or to process mono is left out with one line;
the rest of the chain plays.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: pedalboard's built-in effects a preset may name, with their parameters' ranges and CC scale
#: (lin or log); ``mode`` of LadderFilter is a name of ``pedalboard.LadderFilter.Mode`` (not CC-mappable)
BUILTINS: dict[str, dict[str, tuple[float, float, str]]] = {
    "Reverb": {"room_size": (0, 1, "lin"), "damping": (0, 1, "lin"), "wet_level": (0, 1, "lin"),
               "dry_level": (0, 1, "lin"), "width": (0, 1, "lin"), "freeze_mode": (0, 1, "lin")},
    "Delay": {"delay_seconds": (0, 5, "lin"), "feedback": (0, 1, "lin"), "mix": (0, 1, "lin")},
    "Chorus": {"rate_hz": (0, 20, "lin"), "depth": (0, 1, "lin"), "centre_delay_ms": (1, 100, "lin"),
               "feedback": (-1, 1, "lin"), "mix": (0, 1, "lin")},
    "Phaser": {"rate_hz": (0, 20, "lin"), "depth": (0, 1, "lin"), "centre_frequency_hz": (20, 8000, "log"),
               "feedback": (-1, 1, "lin"), "mix": (0, 1, "lin")},
    "Distortion": {"drive_db": (0, 60, "lin")},
    "LadderFilter": {"cutoff_hz": (20, 8000, "log"), "resonance": (0, 1, "lin"), "drive": (1, 10, "lin")},
    "Compressor": {"threshold_db": (-60, 0, "lin"), "ratio": (1, 20, "lin"), "attack_ms": (0.1, 100, "log"),
                   "release_ms": (1, 1000, "log")},
    "Gain": {"gain_db": (-60, 24, "lin")},
    "Limiter": {"threshold_db": (-60, 0, "lin"), "release_ms": (1, 1000, "log")},
    "NoiseGate": {"threshold_db": (-100, 0, "lin"), "ratio": (1, 20, "lin"), "attack_ms": (0.1, 100, "log"),
                  "release_ms": (1, 1000, "log")},
    "HighpassFilter": {"cutoff_frequency_hz": (20, 8000, "log")},
    "LowpassFilter": {"cutoff_frequency_hz": (20, 8000, "log")},
    "PeakFilter": {"cutoff_frequency_hz": (20, 8000, "log"), "gain_db": (-24, 24, "lin"), "q": (0.1, 10, "log")},
    "HighShelfFilter": {"cutoff_frequency_hz": (20, 8000, "log"), "gain_db": (-24, 24, "lin"),
                        "q": (0.1, 10, "log")},
    "LowShelfFilter": {"cutoff_frequency_hz": (20, 8000, "log"), "gain_db": (-24, 24, "lin"),
                       "q": (0.1, 10, "log")},
    "Bitcrush": {"bit_depth": (1, 32, "lin")},
    "Clipping": {"threshold_db": (-60, 0, "lin")},
    "Invert": {},
}
LADDER_MODES = ("LPF12", "HPF12", "BPF12", "LPF24", "HPF24", "BPF24")
VST3 = "vst3"
#: a CC parameter name of the chain: fx<number>.<parameter>
FX_PARAM = re.compile(r"^fx([1-9][0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
#: the tail after a stop rings until the chain's output peak falls below this (dBFS) ...
TAIL_DB = -90.0
#: ... or this long at most (a frozen reverb never decays)
TAIL_MAX_S = 10.0
#: the largest block the chain is prepared for (pedalboard's own buffer size; larger blocks are split)
MAX_BLOCK = 8192


class EffectError(ValueError):
    """An ``[[effects]]`` table is malformed (raised as the preset's one-line error)."""


def check_effects(where: Any, raw: Any, base: Path | None = None) -> list[dict[str, Any]]:
    """The validated ``[[effects]]`` list: each a dict with ``type`` and parameters (VST3 paths made
    absolute against ``base``, the preset's folder). EffectError names ``where``, the effect and the key."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise EffectError(f"{where}: effects: expected [[effects]] tables")
    out = []
    for i, table in enumerate(raw, 1):
        kind = table.get("type")
        at = f"{where}: effects {i}"
        if not isinstance(kind, str):
            raise EffectError(f"{at}: type: expected a string (one of {', '.join(BUILTINS)}, or {VST3!r})")
        at = f"{at} ({kind})"
        fx = {"type": kind}
        if kind == VST3:
            path = table.get("path")
            if not isinstance(path, str) or not path:
                raise EffectError(f"{at}: path: expected the plugin file's path as a string")
            p = Path(path).expanduser()
            fx["path"] = str(p if p.is_absolute() or base is None else (base / p).resolve())
            for key, value in table.items():
                if key in ("type", "path"):
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise EffectError(f"{at}: {key}: expected a number or a string, got {value!r}")
                fx[key] = float(value) if isinstance(value, (int, float)) else value
            out.append(fx)
            continue
        params = BUILTINS.get(kind)
        if params is None:
            raise EffectError(f"{at}: type: unknown effect {kind!r} (one of {', '.join(BUILTINS)}, or {VST3!r})")
        for key, value in table.items():
            if key == "type":
                continue
            if kind == "LadderFilter" and key == "mode":
                if value not in LADDER_MODES:
                    raise EffectError(f"{at}: mode: {value!r} is not one of {', '.join(LADDER_MODES)}")
                fx[key] = value
                continue
            if key not in params:
                raise EffectError(f"{at}: {key}: unknown parameter (known: {', '.join(params) or 'none'})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise EffectError(f"{at}: {key}: expected a number, got {value!r}")
            lo, hi, _ = params[key]
            if not lo <= value <= hi:
                raise EffectError(f"{at}: {key}: {value} is out of range {lo:g}-{hi:g}")
            fx[key] = float(value)
        out.append(fx)
    return out


def check_fx_param(where: Any, name: str, effects: list[dict[str, Any]]) -> str | None:
    """None if ``name`` (``fxN.PARAM``) names a CC-mappable parameter of ``effects``, else what is wrong."""
    m = FX_PARAM.match(name)
    if m is None:
        return f"{name!r} is not fxN.PARAM"
    n, param = int(m.group(1)), m.group(2)
    if n > len(effects):
        return f"{name!r}: the preset has {len(effects)} effect(s)"
    kind = effects[n - 1]["type"]
    if kind != VST3 and param not in BUILTINS[kind]:
        return f"{name!r}: {kind} has no CC-mappable parameter {param!r} (known: {', '.join(BUILTINS[kind])})"
    return None


def cc_value(kind: str, param: str, x: float) -> float:
    """The value of built-in ``kind``'s ``param`` at CC position ``x`` in 0..1 (its range, lin or log)."""
    lo, hi, scale = BUILTINS[kind][param]
    x = min(1.0, max(0.0, x))
    return lo * (hi / lo) ** x if scale == "log" else lo + (hi - lo) * x


def short_name(fx: dict[str, Any]) -> str:
    """A short label for the status line: 'Reverb', 'Delay', a plugin's file stem."""
    return Path(fx["path"]).stem if fx["type"] == VST3 else fx["type"]


class EffectChain:
    """A ``pedalboard.Pedalboard`` built from a preset's effects, processing mono float32 blocks in place."""

    def __init__(self, effects: list[dict[str, Any]], sample_rate: int, where: Any = "preset",
                 say: Callable[[str], None] | None = None) -> None:
        import pedalboard

        self.sample_rate = int(sample_rate)
        self.where = where
        self.specs: list[dict[str, Any]] = []
        self.plugins: list[Any] = []
        self.index: dict[int, int] = {}   # preset effect number (from 1) -> position in the board
        self.skipped: list[str] = []      # one line per plugin left out
        nyquist = self.sample_rate / 2.0
        for i, fx in enumerate(effects, 1):
            at = f"{where}: effects {i} ({fx['type']})"
            if fx["type"] == VST3:
                plugin = self._load_vst3(at, fx)
                if plugin is None:
                    continue
            else:
                plugin = getattr(pedalboard, fx["type"])()
                for key, value in fx.items():
                    if key == "type":
                        continue
                    if key == "mode":
                        value = getattr(pedalboard.LadderFilter.Mode, value)
                    elif key.endswith("_hz") and value >= nyquist:
                        raise EffectError(f"{at}: {key}: {value:g} Hz is not below the model rate's Nyquist "
                                          f"frequency ({nyquist:g} Hz)")
                    setattr(plugin, key, value)
            self.index[i] = len(self.plugins)
            self.specs.append(fx)
            self.plugins.append(plugin)
        for line in self.skipped:
            if say is not None:
                say(line)
        self.board = pedalboard.Pedalboard(self.plugins)
        # prepare once for the largest block: a plugin re-prepared for a larger block than before resets
        self.board.process(np.zeros(MAX_BLOCK, np.float32), self.sample_rate, buffer_size=MAX_BLOCK, reset=True)
        self.board.reset()
        self.peak = 0.0        # |output| peak of the last block
        self.tail_samples = 0  # samples processed since the input stopped (see ringing)

    def _load_vst3(self, at: str, fx: dict[str, Any]) -> Any:
        import pedalboard

        try:
            plugin = pedalboard.load_plugin(fx["path"])
        except Exception as e:  # missing, not a plugin, crashed on load: the chain plays without it
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.skipped.append(f"{at}: {fx['path']}: cannot load ({why}); playing without it")
            return None
        for key, value in fx.items():
            if key in ("type", "path"):
                continue
            if key not in plugin.parameters:
                self.skipped.append(f"{at}: {key}: the plugin has no such parameter "
                                    f"(it has: {', '.join(list(plugin.parameters)[:12])}); playing without it")
                return None
            try:
                setattr(plugin, key, value)
            except Exception as e:
                self.skipped.append(f"{at}: {key}: bad value {value!r} ({e}); playing without it")
                return None
        try:
            y = plugin.process(np.zeros(64, np.float32), self.sample_rate, reset=True)
            if np.asarray(y).shape[-1] != 64:
                raise ValueError(f"returned {np.asarray(y).shape} for 64 mono samples")
        except Exception as e:
            self.skipped.append(f"{at}: {fx['path']}: cannot process mono at {self.sample_rate} Hz ({e}); "
                                f"playing without it")
            return None
        return plugin

    def describe(self) -> str:
        """The chain in a few characters for the status line: 'fx Reverb>Delay' ('' without effects)."""
        return "fx " + ">".join(short_name(fx) for fx in self.specs) if self.specs else ""

    def process(self, x: np.ndarray, stopped: bool = False) -> np.ndarray:
        """Run mono float32 ``x`` through the chain in place (state carries to the next block); ``stopped``
        counts the block into the tail (see :attr:`ringing`)."""
        if self.plugins and len(x):
            for a in range(0, len(x), MAX_BLOCK):
                seg = x[a:a + MAX_BLOCK]
                y = self.board.process(seg, self.sample_rate, buffer_size=MAX_BLOCK, reset=False)
                seg[:] = np.asarray(y, np.float32).reshape(-1, len(seg))[0]
            self.peak = float(np.max(np.abs(x)))
        else:
            self.peak = 0.0
        if stopped:
            self.tail_samples += len(x)
        return x

    @property
    def ringing(self) -> bool:
        """After the input stopped: whether the tail is still above TAIL_DB (and within TAIL_MAX_S)."""
        return (self.peak > 10.0 ** (TAIL_DB / 20.0) or self.tail_samples == 0) \
            and self.tail_samples < TAIL_MAX_S * self.sample_rate

    def set_param(self, name: str, x: float) -> dict[str, Any] | None:
        """CC position ``x`` (0..1) to parameter ``fxN.PARAM``; the applied event, None for a plugin left out."""
        m = FX_PARAM.match(name)
        if m is None:
            raise ValueError(f"unknown parameter {name!r}")
        n, param = int(m.group(1)), m.group(2)
        pos = self.index.get(n)
        if pos is None:
            return None
        fx, plugin = self.specs[pos], self.plugins[pos]
        if fx["type"] == VST3:
            p = plugin.parameters.get(param)
            if p is None:
                return None
            p.raw_value = min(1.0, max(0.0, x))
            return {"param": name, "value": round(float(p.raw_value), 6)}
        value = cc_value(fx["type"], param, x)
        if param.endswith("_hz"):
            value = min(value, 0.45 * self.sample_rate)
        setattr(plugin, param, value)
        return {"param": name, "value": round(value, 6)}
