#!/usr/bin/env python3
"""wavenet-live: play a WaveNet live from MIDI, or render it offline.

    wavenet-live [play] [options]          play the preset live (default); --record PATH records
    wavenet-live render --out OUT.wav ...  render headless, as fast as the engine goes
    wavenet-live replay SESSION --out OUT.wav   re-render a recorded take, sample for sample
    wavenet-live plot SESSION              waveform + spectrogram + MIDI events as a PNG
    wavenet-live repair FILE.wav           fix the header of a WAV cut short by a crash

The command line is a thin layer: the work is done in the ``realtime`` and
``models`` packages.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from realtime.control.presets import CC_PARAMS, ENGINES
from realtime.offline.demo import AUDIO_SUFFIXES  # what render --out writes as one audio file

SUBCOMMANDS = ("play", "render", "replay", "plot", "repair")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="preset TOML (default: presets/default.toml)")
    p.add_argument("--model", help="model file (overrides the preset)")
    p.add_argument("--engine", choices=ENGINES,
                   help="engine (overrides the preset); auto probes this machine and says which it picked")
    p.add_argument("--compute", choices=("cpu", "cuda"), help="device for the torchscript engine")
    p.add_argument("--seed", type=int, help="random seed (overrides the preset)")
    p.add_argument("--temperature", type=float, help="sampling temperature (overrides the preset)")
    p.add_argument("--period-noise", type=float, metavar="RHO",
                   help="sampler noise correlated one f0 period back, 0-0.95, 0 = independent (overrides the preset)")
    p.add_argument("--loop-lowpass", type=float, metavar="A",
                   help="low-pass inside the feedback loop for pitched instruments, 0-0.5, 0 = off: upper "
                        "harmonics die faster, as a plucked string's do (overrides the preset)")
    p.add_argument("--prime", help="silence | sine[:HZ] | noise[:AMP] | file:PATH (overrides the preset)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wavenet-live", description=__doc__.split("\n")[1])
    sub = ap.add_subparsers(dest="command")
    r = sub.add_parser("render", help="render offline to a WAV file")
    r.add_argument("--out", required=True,
                   help="output audio file (.wav or .flac), or a session folder (audio, events, manifest)")
    r.add_argument("--seconds", type=float, help="length (default: the MIDI file's length, or 8 s)")
    r.add_argument("--max-seconds", type=float, metavar="N",
                   help="render the MIDI file's length but at most N seconds; also needed for a file over an hour "
                        "long or with a long silence after its last event")
    r.add_argument("--midi", help="standard MIDI file to play")
    r.add_argument("--samplerate", type=int, help="resample the output to this rate (Hz)")
    r.add_argument("--block", type=int, default=1024, help="engine block size in samples")
    r.add_argument("--input-file", metavar="PATH",
                   help="an audio file as the audio input (from the render's first sample): the preset's [input] "
                        "mode primes notes from it, continues it or mixes it through")
    _common(r)
    p = sub.add_parser("play", help="play live (default)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("-l", "--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("-i", "--input", metavar="DEVICE",
                   help="audio input: index or name substring, 'default' for the default input (overrides the "
                        "preset's [input] device); the preset's [input] mode says what it does")
    p.add_argument("-d", "--device", help="output device: index or name substring (overrides the preset)")
    p.add_argument("-r", "--samplerate", type=int, help="device sample rate in Hz (default: the device's)")
    p.add_argument("-b", "--blocksize", type=int, help="audio callback block size in frames")
    p.add_argument("--latency", help="device latency: low, high or seconds")
    p.add_argument("--lead-ms", type=float, help="generator lead in ms: the latency/robustness knob")
    p.add_argument("--resample", choices=("hq", "fast"),
                   help="model->device resampler: hq (soxr, ~15 ms) or fast (cubic, ~0 ms); overrides the preset")
    p.add_argument("--record", metavar="PATH",
                   help="record: PATH.wav/.flac is the audio only, any other PATH a session folder")
    p.add_argument("--plot", action="store_true", help="with --record: write a PNG of the take at the end")
    p.add_argument("--learn", type=_learnable, metavar="PARAM",
                   help=f"MIDI learn: bind the next CC that moves to PARAM ({', '.join(CC_PARAMS)}, or fxN.PARAM: "
                        "a parameter of the preset's effect N, e.g. fx1.wet_level) "
                        "and write it into the preset (--preset, else user.toml in the user's config folder)")
    p.add_argument("--list-midi", action="store_true", help="list MIDI input ports and exit")
    p.add_argument("-m", "--midi-port", help="MIDI input port: number or name substring")
    p.add_argument("--virtual-midi", nargs="?", const="midi_in", metavar="NAME",
                   help="open a virtual MIDI input port (default name: midi_in)")
    p.add_argument("--demo", action="store_true", help="play the built-in demo phrase instead of a MIDI port")
    p.add_argument("--midi-api", help="MIDI API: alsa, jack, coremidi, winmm (default: env RTMIDI_API, else any)")
    p.add_argument("--client-name", default="wavenet-live", help="JACK client name of the audio output")
    p.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    _common(p)
    rp = sub.add_parser("replay", help="re-render a recorded session folder")
    rp.add_argument("session", help="session folder (from --record or render --out FOLDER)")
    rp.add_argument("--out", required=True, help="output WAV")
    pl = sub.add_parser("plot", help="PNG of a session: envelope, spectrogram, MIDI events")
    pl.add_argument("session", help="session folder or audio file")
    pl.add_argument("--out", help="PNG path (default: next to the take)")
    rr = sub.add_parser("repair", help="fix the header of a WAV cut short by a crash")
    rr.add_argument("file", help="WAV file")
    return ap


def _learnable(param: str) -> str:
    """--learn's PARAM: a CC parameter, or an effect's fxN.PARAM (checked against the preset once it loads)."""
    from realtime.sound.effects import FX_PARAM

    if param in CC_PARAMS or FX_PARAM.match(param):
        return param
    raise argparse.ArgumentTypeError(f"invalid choice: {param!r} (choose from {', '.join(CC_PARAMS)}, or fxN.PARAM)")


def load_session_preset(a):
    """The preset with command-line overrides applied."""
    from realtime.control.presets import load_preset, override

    preset = load_preset(a.preset)
    preset = override(preset, "model", engine=a.engine, compute=a.compute, seed=a.seed,
                      temperature=a.temperature, period_noise=a.period_noise, loop_lowpass=a.loop_lowpass,
                      prime=a.prime,
                      path=str(Path(a.model).resolve()) if a.model else None)
    return preset


def _say_starting(preset, stream=None) -> None:
    """On a terminal, one line before the silent part of a start (loading the model, JIT-compiling the
    engines); a pipe or log gets nothing (its stderr stays one line on an error)."""
    stream = stream or sys.stderr
    if stream.isatty():
        print(f"wavenet-live: loading model {preset.model_path().name} / compiling engines... "
              f"(up to a minute on a first start)", file=stream, flush=True)


def cmd_render(a) -> int:
    """Render offline, streaming to the output as it goes (flat memory), with a progress bar on a terminal."""
    from realtime.offline.demo import demo_events, demo_programs
    from realtime.offline.midi_file import check_length, load_events
    from realtime.offline.progress import RenderProgress
    from realtime.offline.render import Session

    if a.max_seconds is not None and not a.max_seconds > 0:
        raise ValueError(f"--max-seconds must be > 0, got {a.max_seconds}")
    out = Path(a.out)
    if out.suffix and out.suffix.lower() not in AUDIO_SUFFIXES:  # not a session folder either
        raise ValueError(f"--out {out}: unknown extension {out.suffix!r} (supported: "
                         f"{', '.join(AUDIO_SUFFIXES)}, or a name without one for a session folder)")
    preset = load_session_preset(a)
    _say_starting(preset)
    session = Session.open(preset, say=lambda m: print(f"wavenet-live: {m}", file=sys.stderr))
    sr = session.engine.sample_rate
    if a.midi:
        timeline, length = load_events(a.midi, sr)
        session = _voices_for_file(a.midi, preset, session, timeline)
        if a.seconds is None and a.max_seconds is None:
            check_length(a.midi, timeline, length, sr)
        seconds = a.seconds if a.seconds is not None else length + preset.sound.release_ms / 1000.0 + 0.2
    else:
        seconds = a.seconds if a.seconds is not None else 8.0
        progs = demo_programs(session.controller.programs, session.controller.instruments)
        timeline = demo_events(sr, seconds, progs)
    if getattr(a, "input_file", None):  # the audio input from a file, sample-locked to the render
        from realtime.sound.audio_input import FileFeed, load_input_file

        session.attach_input(FileFeed(load_input_file(a.input_file, sr, preset.input.channel)))
    if a.max_seconds is not None and a.seconds is None:
        seconds = min(seconds, a.max_seconds)
    if not seconds > 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
    n = int(round(seconds * sr))
    from realtime.offline.render_file import render_to_file, warm_up

    warm_up(session)
    progress = RenderProgress(n, sr)
    if out.suffix.lower() not in AUDIO_SUFFIXES:  # a session folder: the same kind of thing as a live take
        import time

        from realtime.live.recorder import Recorder
        from realtime.offline.render import run_stream, tail_room
        from realtime.offline.replay import manifest_for
        from realtime.sound.resample import Resampler

        out_sr = a.samplerate or sr
        rec = Recorder(out, synchronous=True)
        rec.begin(out_sr, {**manifest_for(session), "device_rate": out_sr, "gen_block": a.block, "resample": "hq",
                           "kind": "render", **({"input_rate": sr} if session.input is not None else {})})
        session.keep_log = False  # the events go to events.jsonl as they happen
        t0 = time.perf_counter()
        try:
            with progress:
                total, stop_at = tail_room(session, n)  # an effect chain's tail rings out after the end
                run_stream(session, timeline, total, a.block, Resampler(sr, out_sr, "hq") if out_sr != sr else None,
                           sink=rec, keep=False, progress=lambda pos: progress(min(pos, n)), stop_at=stop_at)
        except KeyboardInterrupt:  # keep what was rendered: a valid, shorter take
            rec.close({"recoveries": session.watchdog.total if session.watchdog else 0, "interrupted": True})
            return _interrupted(rec.path, rec.frames_written / out_sr)
        wall = time.perf_counter() - t0
        rec.close({"recoveries": session.watchdog.total if session.watchdog else 0})
        info = {"seconds": round(n / sr, 6), "samples": n, "sample_rate": sr, "rtf": round(n / sr / wall, 3),
                "engine": session.engine.name, "out": str(out), "frames_written": rec.frames_written}
        print(json.dumps(_program_notes(session, info)), flush=True)
        return 0
    try:
        with progress:
            info = render_to_file(session, timeline, n, out, a.block, a.samplerate or sr, progress=progress)
    except KeyboardInterrupt:  # render_to_file closed the file: a valid, shorter one
        import soundfile as sf

        return _interrupted(out, sf.info(str(out)).duration if out.is_file() else 0.0)
    info.pop("frames")
    print(json.dumps(_program_notes(session, info)), flush=True)
    return 0


def _voices_for_file(path, preset, session, timeline):
    """render --midi plays every note of every channel: a one-voice preset gets a pool of as many voices as
    the file holds notes at once, plus two for release tails (at most 16), each channel its own part."""
    from realtime.control.presets import override
    from realtime.offline.midi_file import peak_notes
    from realtime.offline.render import Session

    need = peak_notes(timeline)
    if preset.sound.voices > 1 or need < 2:
        return session
    voices = min(16, need + 2)
    print(f"wavenet-live: {Path(path).name} holds {need} notes at once: playing it on {voices} voices",
          file=sys.stderr)
    return Session.open(override(preset, "sound", voices=voices), session.model,
                        say=lambda m: print(f"wavenet-live: {m}", file=sys.stderr))


def _program_notes(session, info: dict) -> dict:
    """The render summary's note of each General MIDI family the model lacks that the file asked for (also
    said once on stderr)."""
    notes = list(getattr(session.controller, "program_notes", []))
    for line in notes:
        print(f"wavenet-live: {line}", file=sys.stderr)
    return {**info, "programs": notes} if notes else info


def _interrupted(out: Path, seconds: float) -> int:
    """Ctrl-C during a render: say what was kept; the exit code is 130 (128 + SIGINT)."""
    print(f"\nwavenet-live: interrupted: kept the first {seconds:.1f} s in {out}", file=sys.stderr, flush=True)
    return 130


def cmd_replay(a) -> int:
    import numpy as np
    import soundfile as sf

    from realtime.offline.replay import read_session, replay

    audio, rate = replay(a.session)
    out = Path(a.out)
    try:
        sf.write(str(out), audio, rate, subtype="FLOAT")
    except (OSError, RuntimeError) as e:
        raise OSError(f"output {out}: cannot write ({e})") from None
    manifest, _ = read_session(a.session)
    rec_path = Path(a.session) / manifest.get("audio", "audio.wav")
    info = {"seconds": round(len(audio) / rate, 6), "samples": len(audio), "sample_rate": rate, "out": str(out)}
    if rec_path.is_file():
        rec, _ = sf.read(str(rec_path), dtype="float32")
        info["matches_recording"] = bool(len(rec) == len(audio) and np.array_equal(rec, audio))
    print(json.dumps(info), flush=True)
    return 0


def cmd_plot(a) -> int:
    from realtime.offline.plot import plot_session

    print(plot_session(a.session, a.out), flush=True)
    return 0


def cmd_repair(a) -> int:
    from realtime.live.recorder import repair_wav

    frames = repair_wav(a.file)
    print(json.dumps({"file": a.file, "frames": frames}), flush=True)
    return 0


def cmd_play(a) -> int:
    """Play the preset live from MIDI (realtime.live.host); with no audio output at all, render a demo WAV."""
    import signal
    import time

    from realtime.control.presets import override
    from realtime.live import devices, midi_in

    if a.list_midi:
        for api, ports in midi_in.list_ports(a.midi_api).items():
            print(f"{api}: " + ("(not running)" if ports is None else ", ".join(
                f"[{i}] {p}" for i, p in enumerate(ports)) or "no input ports"))
        return 0
    sd = devices.import_sounddevice(a.client_name)  # lazily: PortAudio sees JACK only if it runs now
    if a.list_devices:
        print(devices.list_devices_text())
        return 0
    preset = load_session_preset(a)
    preset = override(preset, "audio", device=a.device, samplerate=a.samplerate, blocksize=a.blocksize,
                      latency=a.latency, lead_ms=a.lead_ms, resample=a.resample)
    preset = override(preset, "midi", port=a.midi_port, api=a.midi_api)
    if a.learn and a.learn.startswith("fx"):  # an effect's parameter: the preset must have that effect
        from realtime.sound.effects import check_fx_param

        problem = check_fx_param(preset.path, a.learn, preset.effects)
        if problem:
            raise ValueError(f"--learn {problem}")
    if not devices.has_output_device():
        from realtime.offline.demo import demo_path

        out = demo_path(a.record)
        print(f"wavenet-live: no audio output device (no sound card, no JACK server): "
              f"rendering a demo to {out}", file=sys.stderr)
        a.out, a.midi, a.samplerate, a.block, a.max_seconds = str(out), None, None, 1024, None
        a.seconds = a.seconds or 8.0
        code = cmd_render(a)
        print(out, flush=True)
        return code

    from realtime.live.demo_midi import NO_MIDI_HINT
    from realtime.live.host import LiveHost
    from realtime.live.status import StatusLine
    from realtime.offline.render import Session

    au = preset.audio
    device = devices.choose_output_device(au.device)
    in_spec = a.input if a.input is not None else preset.input.device
    input_device = devices.choose_input_device(in_spec) if in_spec else False  # False: no audio input
    latency = au.latency if au.latency in ("low", "high") else float(au.latency)
    virtual = a.virtual_midi or ("midi_in" if preset.midi.virtual else None)
    midi = None if a.demo else midi_in.open_input(preset.midi.port or None, virtual, preset.midi.api or None,
                                                  client_name=f"{a.client_name}-midi",
                                                  required=bool(preset.midi.port))
    recorder = None
    try:
        if not a.quiet:
            _say_starting(preset)
        session = Session.open(preset, say=lambda m: print(f"wavenet-live: {m}", file=sys.stderr))
        session.keep_log = False  # events go to the recorder, if any
        session.prepare_live(say=lambda m: print(f"wavenet-live: {m}", file=sys.stderr, flush=True))
        if a.demo:
            from realtime.live.demo_midi import DemoMidi
            from realtime.offline.demo import demo_programs

            midi = DemoMidi(demo_programs(session.controller.programs, session.controller.instruments))
        if a.record:  # fails here, before any sound, if the path is not writable
            from realtime.live.recorder import Recorder
            from realtime.offline.replay import manifest_for

            recorder = Recorder(a.record, audio_format=preset.audio.record_format)
            recorder.manifest_base = {**manifest_for(session), "kind": "live",
                                      **({"input_rate": session.engine.sample_rate} if in_spec else {})}
    except BaseException:
        if midi is not None:
            midi.close()
        raise
    loader = None
    if session.swapper is not None:  # [swap] slots: a thread builds the next model off the audio path
        from realtime.live.swap_loader import SwapLoader

        session.swapper.say = None  # its one-line messages are printed below, between status lines
        loader = SwapLoader(session.swapper)
    host = LiveHost(session, device=device, samplerate=au.samplerate or None, blocksize=au.blocksize,
                    latency=latency, lead_ms=au.lead_ms, midi=midi, resample=au.resample,
                    client_name=a.client_name, tee=recorder, input_device=input_device,
                    input_channel=preset.input.channel)
    stopping: list[int] = []  # the handlers only append (no locks in a signal handler)
    old = {sig: signal.signal(sig, lambda sig, _: stopping.append(sig)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            host.start()
        except sd.PortAudioError as e:
            raise devices.DeviceError(f"audio device: cannot open ({e}) "
                                      f"(available: {devices.describe_outputs()})") from None
        st = host.snapshot()
        if not a.quiet:
            print(f"wavenet-live: playing {preset.name!r} on {st.device} at {st.samplerate:.0f} Hz, "
                  f"lead {st.lead_ms:.0f} ms; MIDI: {host.midi or NO_MIDI_HINT}; Ctrl-C stops",
                  file=sys.stderr, flush=True)
        if a.learn:
            session.controller.learn = a.learn
            print(f"wavenet-live: MIDI learn: move the control to use for {a.learn}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + a.seconds if a.seconds else None
        said = 0  # program notes said (a GM family the model lacks), each once
        said_swap = 0  # model hot-swap messages said (a slot that failed to load)
        with StatusLine(quiet=a.quiet) as status:
            while not stopping:
                time.sleep(0.25)
                notes = session.controller.program_notes
                while said < len(notes):
                    print(f"\nwavenet-live: {notes[said]}", file=sys.stderr, flush=True)
                    said += 1
                while loader is not None and said_swap < len(session.swapper.messages):  # a model that failed
                    print(f"\nwavenet-live: {session.swapper.messages[said_swap]}", file=sys.stderr, flush=True)
                    said_swap += 1
                status.update(host.snapshot())
                if host.error is not None or (deadline and time.monotonic() >= deadline):
                    break
                if a.learn and session.controller.learned is not None:
                    from realtime.control.learn import learned_message, save_binding, user_preset_path
                    from realtime.control.presets import DEFAULT_PRESET

                    cc, param = session.controller.learned
                    target = Path(a.preset) if a.preset else user_preset_path()
                    before = target.read_text() if target.is_file() else DEFAULT_PRESET.read_text()
                    save_binding(target, cc, param, source=DEFAULT_PRESET)
                    print("\n" + learned_message(before, cc, param, target), file=sys.stderr, flush=True)
                    a.learn = None
                if host.device_stalled(2.0):
                    print("\nwavenet-live: error: the audio device stopped (no callbacks for 2 s: "
                          "device unplugged or audio server gone); stopping", file=sys.stderr, flush=True)
                    break
    finally:
        host.stop_generator()
        if loader is not None:
            loader.close()
        for sig, h in old.items():
            signal.signal(sig, h)
        if recorder is not None:  # before the devices: a hung device must not cost the take
            st = host.snapshot()
            recorder.close({"underruns": st.underruns, "pa_underflows": st.pa_underflows,
                            "recoveries": session.watchdog.total if session.watchdog else 0,
                            "device_lost": host.device_lost})
        closed = host.close_devices(timeout=3.0)
    st = host.snapshot()
    if recorder is not None:
        if recorder.error:
            print(f"wavenet-live: warning: {recorder.error}", file=sys.stderr)
        print(f"wavenet-live: recorded {recorder.frames_written / st.samplerate:.1f} s to {recorder.path}"
              + (f" ({recorder.frames_dropped} frames dropped)" if recorder.frames_dropped else ""),
              file=sys.stderr, flush=True)
        if a.plot:
            from realtime.offline.plot import plot_session

            print(f"wavenet-live: plot {plot_session(recorder.path)}", file=sys.stderr, flush=True)
    print(json.dumps({"seconds": round(st.seconds, 3), "samplerate": st.samplerate, "device": st.device,
                      "frames": st.frames, "underruns": st.underruns, "pa_underflows": st.pa_underflows,
                      "rtf": round(st.rtf, 3), "events": st.events, "midi": st.midi or None,
                      "priority": st.priority or None}), flush=True)
    if host.error is not None:
        print(f"wavenet-live: error: generator stopped: {host.error!r}", file=sys.stderr)
        return 1
    code = 3 if host.device_lost else 0
    if not closed:  # PortAudio hangs on a dead device: everything is saved, leave without its atexit hook
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):  # the commands, then the live options (play is the default command)
        ap = build_parser()
        play = next(act for act in ap._subparsers._group_actions if act.dest == "command").choices["play"]
        print(ap.format_help() + "\nplay (the default command; `wavenet-live [options]` is "
              "`wavenet-live play [options]`):\n\n" + play.format_help(), end="")
        return 0
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["play", *argv]
    a = build_parser().parse_args(argv)
    from realtime.control.presets import PresetError
    from realtime.engine.priming import PrimeError
    from realtime.model.model_file import ModelFileError
    from realtime.offline.midi_file import MidiFileError

    try:
        return {"render": cmd_render, "play": cmd_play, "replay": cmd_replay, "plot": cmd_plot,
                "repair": cmd_repair}[a.command](a)
    except (ModelFileError, PresetError, MidiFileError, PrimeError, OSError, ValueError) as e:
        print(f"wavenet-live: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
