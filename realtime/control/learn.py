"""MIDI learn: write a CC -> parameter binding into a preset file, keeping the rest of its text."""
from __future__ import annotations

import re
from pathlib import Path

from realtime.control.presets import CC_PARAMS, load_preset


def bind_cc_text(text: str, cc: int, param: str) -> str:
    """Preset TOML text with ``cc = "param"`` in [midi.cc]; other bindings of that CC or param removed."""
    if param not in CC_PARAMS:
        raise ValueError(f"cannot learn {param!r} (one of {', '.join(CC_PARAMS)})")
    if not 0 <= cc <= 127:
        raise ValueError(f"CC {cc} out of range 0-127")
    lines = text.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.strip() == "[midi.cc]"), None)
    entry = f'{cc} = "{param}"'
    if head is None:
        return text.rstrip("\n") + f"\n\n[midi.cc]\n{entry}\n"
    end = next((i for i in range(head + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    body = [ln for ln in lines[head + 1:end]
            if not re.match(rf'\s*("?){cc}\1\s*=', ln) and not re.search(rf'=\s*"{param}"', ln)]
    return "\n".join(lines[:head + 1] + [entry] + body + lines[end:]) + "\n"


def save_binding(preset_path: str | Path, cc: int, param: str, source: str | Path | None = None) -> Path:
    """Write the binding into ``preset_path`` (created from ``source`` if missing); validates the result."""
    path = Path(preset_path)
    text = path.read_text() if path.is_file() else Path(source).read_text() if source else ""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(bind_cc_text(text, cc, param))
    try:
        load_preset(tmp)
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(path)
    return path
