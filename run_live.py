#!/usr/bin/env python3
"""wavenet-live: play a WaveNet live from MIDI, or render it offline.

    wavenet-live [play] [options]          play the preset live (default)
    wavenet-live render --out OUT.wav ...  render headless, as fast as the engine goes

The command line is a thin layer: the work is done in the ``realtime`` and
``models`` packages.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUBCOMMANDS = ("play", "render")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="preset TOML (default: presets/default.toml)")
    p.add_argument("--model", help="model file (overrides the preset)")
    p.add_argument("--engine", choices=("numba", "torchscript", "auto"), help="engine (overrides the preset)")
    p.add_argument("--compute", choices=("cpu", "cuda"), help="device for the torchscript engine")
    p.add_argument("--seed", type=int, help="random seed (overrides the preset)")
    p.add_argument("--temperature", type=float, help="sampling temperature (overrides the preset)")
    p.add_argument("--prime", help="silence | sine[:HZ] | noise[:AMP] | file:PATH (overrides the preset)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wavenet-live", description=__doc__.split("\n")[1])
    sub = ap.add_subparsers(dest="command")
    r = sub.add_parser("render", help="render offline to a WAV file")
    r.add_argument("--out", required=True, help="output audio file (.wav or .flac)")
    r.add_argument("--seconds", type=float, help="length (default: the MIDI file's length, or 8 s)")
    r.add_argument("--midi", help="standard MIDI file to play")
    r.add_argument("--samplerate", type=int, help="resample the output to this rate (Hz)")
    r.add_argument("--block", type=int, default=1024, help="engine block size in samples")
    _common(r)
    p = sub.add_parser("play", help="play live (default)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    _common(p)
    return ap


def load_session_preset(a):
    """The preset with command-line overrides applied."""
    from realtime.presets import load_preset, override

    preset = load_preset(a.preset)
    preset = override(preset, "model", engine=a.engine, compute=a.compute, seed=a.seed,
                      temperature=a.temperature, prime=a.prime,
                      path=str(Path(a.model).resolve()) if a.model else None)
    return preset


def cmd_render(a) -> int:
    import numpy as np
    import soundfile as sf

    from realtime.demo import demo_events
    from realtime.midi_file import load_events
    from realtime.render import Session, timed_render

    preset = load_session_preset(a)
    session = Session.open(preset)
    sr = session.engine.sample_rate
    if a.midi:
        timeline, length = load_events(a.midi, sr)
        seconds = a.seconds if a.seconds is not None else length + preset.sound.release_ms / 1000.0 + 0.2
    else:
        seconds = a.seconds if a.seconds is not None else 8.0
        progs = sorted(preset.midi.programs) or list(range(len(session.controller.instruments)))
        timeline = demo_events(sr, seconds, progs)
    if not seconds > 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
    audio, info = timed_render(session, timeline, int(round(seconds * sr)), a.block)
    out_sr = sr
    if a.samplerate and a.samplerate != sr:
        import soxr

        audio = soxr.resample(audio, sr, a.samplerate).astype(np.float32)
        out_sr = a.samplerate
    out = Path(a.out)
    try:
        sf.write(str(out), audio, out_sr, subtype="PCM_16" if out.suffix.lower() == ".wav" else None)
    except (OSError, RuntimeError, TypeError, ValueError) as e:
        raise OSError(f"output {out}: cannot write ({e})") from None
    info["out"] = str(out)
    print(json.dumps(info), flush=True)
    return 0


def cmd_play(a) -> int:
    """Until the live host exists, play renders a demo to a WAV file."""
    import tempfile

    out = Path(tempfile.gettempdir()) / "wavenet-live-demo.wav"
    print(f"no live audio host yet: rendering a demo to {out}", file=sys.stderr)
    a.out, a.midi, a.samplerate, a.block = str(out), None, None, 1024
    a.seconds = a.seconds or 8.0
    return cmd_render(a)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["play", *argv]
    a = build_parser().parse_args(argv)
    from models.model_file import ModelFileError
    from realtime.midi_file import MidiFileError
    from realtime.presets import PresetError
    from realtime.priming import PrimeError

    try:
        return {"render": cmd_render, "play": cmd_play}[a.command](a)
    except (ModelFileError, PresetError, MidiFileError, PrimeError, OSError, ValueError) as e:
        print(f"wavenet-live: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
