"""MIDI learn: write a CC -> parameter binding into a preset file, keeping the rest of its text."""
from __future__ import annotations

import re
from pathlib import Path

from realtime.control.presets import CC_PARAMS, load_preset, tomllib


def bind_cc_text(text: str, cc: int, param: str) -> str:
    """Preset TOML text with ``cc = "param"`` in [midi.cc]; other bindings of that CC or param removed, and
    ``N = ""`` for each other CC presets/default.toml binds to ``param`` (a preset inherits those)."""
    from realtime.sound.effects import FX_PARAM

    if param not in CC_PARAMS and not FX_PARAM.match(param):
        raise ValueError(f"cannot learn {param!r} (one of {', '.join(CC_PARAMS)})")
    if not 0 <= cc <= 127:
        raise ValueError(f"CC {cc} out of range 0-127")
    lines = text.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.strip() == "[midi.cc]"), None)
    # a preset inherits presets/default.toml's bindings: those of this param on other CCs are unbound ("")
    inherited = _default_ccs_of(param, cc)
    entries = [f'{cc} = "{param}"'] + [f'{k} = ""  # unbound: {param} is on CC {cc}' for k in inherited]
    if head is None:
        return text.rstrip("\n") + "\n\n[midi.cc]\n" + "\n".join(entries) + "\n"
    end = next((i for i in range(head + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    body = [ln for ln in lines[head + 1:end]
            if not any(re.match(rf'\s*("?){k}\1\s*=', ln) for k in (cc, *inherited))
            and not re.search(rf'=\s*"{param}"', ln)]
    return "\n".join(lines[:head + 1] + entries + body + lines[end:]) + "\n"


def _default_ccs_of(param: str, cc: int) -> list[int]:
    """The CCs other than ``cc`` that presets/default.toml binds to ``param``."""
    from realtime.control.presets import DEFAULT_PRESET

    try:
        table = tomllib.loads(DEFAULT_PRESET.read_text()).get("midi", {}).get("cc", {})
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return [int(k) for k, v in table.items() if v == param and str(k).isdigit() and int(k) != cc]


def user_preset_path() -> Path:
    """Where ``--learn`` writes when no ``--preset`` is given: ``user.toml`` in the user's config folder
    (platformdirs: ``~/.config/wavenet-live`` on Linux), never the source tree."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("wavenet-live")) / "user.toml"


def replaced_bindings(text: str, cc: int, param: str) -> list[str]:
    """The ``[midi.cc]`` bindings of preset ``text`` that binding ``cc`` to ``param`` replaces, as
    ``CC n -> param`` strings (the CC's old parameter, and the old CC of the parameter)."""
    try:
        table = tomllib.loads(text).get("midi", {}).get("cc", {})
    except tomllib.TOMLDecodeError:
        return []
    return [f"CC {k} -> {v}" for k, v in table.items() if v and (str(k) == str(cc)) != (v == param)]


def _as_user_copy(text: str, source: Path) -> str:
    """``source``'s text for a new user preset: named "user", its relative model path made absolute."""
    text = re.sub(r'(?m)^name\s*=.*$', 'name = "user"', text, count=1)

    def absolute(m: re.Match) -> str:
        p = Path(m.group(2)).expanduser()
        return m.group(1) + str(p if p.is_absolute() else (source.parent / p).resolve()) + '"'

    return re.sub(r'(?m)^(path\s*=\s*")([^"]*)"', absolute, text, count=1)


def save_binding(preset_path: str | Path, cc: int, param: str, source: str | Path | None = None) -> Path:
    """Write the binding into ``preset_path`` (created from ``source`` if missing, named "user", its model
    path absolute; the folder is created too); validates the result."""
    path = Path(preset_path)
    text = path.read_text() if path.is_file() else _as_user_copy(Path(source).read_text(), Path(source)) \
        if source else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(bind_cc_text(text, cc, param))
    try:
        load_preset(tmp)
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(path)
    return path


def learned_message(before: str, cc: int, param: str, target: Path) -> str:
    """One line for the player: the binding, what it replaced (from the preset text ``before``), where it
    was saved and how to play with it."""
    old = replaced_bindings(before, cc, param)
    return (f"wavenet-live: learned CC {cc} -> {param}" + (f" (replaces {', '.join(old)})" if old else "")
            + f"; saved in {target}; play with it: wavenet-live --preset {target}")
