"""Replay a recorded session: re-render it offline from its seed, preset, prime and events.

Generation is block-invariant and the controller is deterministic, so applying
the same MIDI at the same model-rate sample indices and resampling in the same
chunks reproduces the recorded stream sample for sample (same engine).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from realtime.control.presets import PresetError, preset_from_dict
from realtime.model.model_file import load_model, model_bytes_hash
from realtime.offline.render import Session, run_stream


class SessionError(ValueError):
    """A session folder is missing files or holds something unusable."""


def engine_name(engine: Any) -> str:
    """The engine name (as in presets) that rebuilds ``engine`` (realtime.engine.numba_engine.preset_engine_name)."""
    from realtime.engine.numba_engine import preset_engine_name

    return preset_engine_name(engine)


def manifest_for(session: Session) -> dict[str, Any]:
    """What a recorded take needs for replay: resolved preset, seed, model path and hash, versions."""
    from dataclasses import asdict
    from importlib import metadata

    preset = asdict(session.preset)
    preset.pop("path", None)
    preset["model"]["engine"] = engine_name(session.engine)  # "auto" resolved: replay must not re-probe
    model_path = Path(session.model.path or session.preset.model_path()).resolve()
    preset["model"]["path"] = str(model_path)
    versions = {}
    for pkg in ("wavenet-live", "numpy", "numba", "soxr", "soundfile", "sounddevice", "torch"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"format": "wavenet-live-session", "version": 1, "preset": preset, "seed": session.preset.model.seed,
            "engine": session.engine.name, "model": {"path": str(model_path), "sha256": model_bytes_hash(model_path)},
            "model_rate": session.engine.sample_rate, "versions": versions}


def read_session(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, events) of a session folder; SessionError naming the file on any problem."""
    folder = Path(folder)
    man_path, ev_path = folder / "session.json", folder / "events.jsonl"
    if not man_path.is_file():
        raise SessionError(f"session {folder}: no session.json (not a session folder)")
    try:
        manifest = json.loads(man_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SessionError(f"session file {man_path}: unreadable ({e})") from None
    events = []
    if ev_path.is_file():
        for i, line in enumerate(ev_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(ev_path.read_text().splitlines()):  # a torn last line after a crash
                    break
                raise SessionError(f"session file {ev_path}: line {i} is not JSON") from None
    return manifest, events


def timeline_of(events: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    """(model-rate sample index, MIDI bytes) for every logged event that came from MIDI."""
    tl = [(int(e["sample"]), bytes(e["midi"])) for e in events if "midi" in e and "sample" in e]
    return sorted(tl, key=lambda x: x[0])


def replay_timeline(events: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """timeline_of's MIDI plus the logged model swaps (as their event dicts), each swap after the MIDI of its
    sample (live, the MIDI at a block boundary is applied before the block that begins the crossfade)."""
    tl: list[tuple[int, Any]] = list(timeline_of(events))
    tl += [(int(e["sample"]), e) for e in events if e.get("param") == "swap" and "sample" in e]
    return sorted(tl, key=lambda x: (x[0], isinstance(x[1], dict)))


def open_session_for_replay(manifest: dict[str, Any], folder: Path) -> Session:
    """A fresh Session configured exactly as the recorded one (same model file bytes required)."""
    try:
        preset = preset_from_dict(manifest["preset"], None)
    except (KeyError, PresetError) as e:
        raise SessionError(f"session file {folder / 'session.json'}: bad preset ({e})") from None
    model_info = manifest.get("model", {})
    path = Path(model_info.get("path", ""))
    if not path.is_file():
        raise SessionError(f"session {folder}: model file {path} not found")
    if model_info.get("sha256") and model_bytes_hash(path) != model_info["sha256"]:
        raise SessionError(f"session {folder}: model file {path} changed since the recording (hash differs)")
    preset.model.path = str(path)
    return Session.open(preset, load_model(path))


def replay(folder: str | Path) -> tuple[np.ndarray, int]:
    """Re-render a session folder; returns (audio at the recorded rate, that rate)."""
    from realtime.sound.resample import Resampler

    folder = Path(folder)
    manifest, events = read_session(folder)
    session = open_session_for_replay(manifest, folder)
    model_rate = session.engine.sample_rate
    rate = int(manifest.get("device_rate", model_rate))
    frames = manifest.get("frames_written")
    if frames is None:  # an unfinished take: as long as its audio file
        import soundfile as sf

        frames = sf.info(str(folder / manifest.get("audio", "audio.wav"))).frames
    resampler = Resampler(model_rate, rate, manifest.get("resample", "hq")) if rate != model_rate else None
    block = int(manifest.get("gen_block", 1024))
    n_model = int(np.ceil(frames * model_rate / rate)) + block + 4096
    stops = [int(e["sample"]) for e in events if e.get("param") == "stop" and "sample" in e]
    if manifest.get("input"):  # the audio input the take used (model rate, from its first sample): fed back
        from realtime.sound.audio_input import FileFeed, InputFileError, load_input_file

        try:
            session.attach_input(FileFeed(load_input_file(folder / manifest["input"], model_rate)))
        except InputFileError as e:
            raise SessionError(f"session {folder}: {e}") from None
    out = run_stream(session, replay_timeline(events), n_model, block, resampler, stop_after=int(frames),
                     stop_at=stops[0] if stops else None)
    return out[:frames], rate
