"""Offline rendering: an event timeline through controller, engine and output stage.

Headless and as fast as the engine goes. Events are applied at their exact
sample positions (blocks are split there), which is also how a recorded live
take is replayed.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from realtime.control.controller import Controller
from realtime.control.presets import ENGINES, Preset
from realtime.engine.base import Engine
from realtime.engine.priming import prime_waveform
from realtime.model.model_file import ModelFile, load_model
from realtime.sound.audio_input import InputChannel
from realtime.sound.effects import EffectChain
from realtime.sound.output_stage import OutputStage
from realtime.sound.watchdog import Watchdog


def resolve_engine(name: str, model: ModelFile, compute: str = "cpu",
                   say: Callable[[str], None] | None = None) -> str:
    """``name`` itself, or for auto the engine it picks: TorchScript on CUDA when ``compute`` is cuda
    and a GPU exists, else the fastest exact-enough Numba precision for this machine and model (a
    ~1 s probe); ``say`` gets the reason."""
    if name != "auto":
        return name
    cuda = False
    if compute == "cuda":
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        name, reason = "torchscript", "torchscript: CUDA is available"
    else:
        from realtime.engine.numba_engine import choose_engine

        name, reason = choose_engine(model)
    if say is not None:
        say(f"engine auto -> {reason}")
    return name


def make_engine(name: str, model: ModelFile, seed: int = 0, compute: str = "cpu",
                say: Callable[[str], None] | None = None) -> Engine:
    """Build an engine by name: numba (fp32), numba-bf16, numba-bf16dot, numba-int8, numba-int8dot, torchscript, or auto
    (see :func:`resolve_engine`); lpc-pulse plays the model's envelope bank without the network, lpc-pulse-mulaw
    the same mu-law coded (realtime.engine.pulse_engine)."""
    name = resolve_engine(name, model, compute, say)
    if name.startswith("numba"):
        from realtime.engine.numba_engine import engine_from_name

        return engine_from_name(name, model, seed=seed)
    if name == "torchscript":
        from realtime.engine.torch_engine import TorchScriptEngine

        return TorchScriptEngine(model, seed=seed, device=compute)
    if name in ("lpc-pulse", "lpc-pulse-mulaw"):
        from realtime.engine.pulse_engine import PulseEngine

        return PulseEngine(model, seed=seed, mulaw_output=name == "lpc-pulse-mulaw")
    raise ValueError(f"unknown engine {name!r} ({', '.join(ENGINES)})")


@dataclass
class Session:
    """Engine + output stage + controller, set up from a preset (shared by render, play and replay)."""

    preset: Preset
    model: ModelFile
    engine: Engine
    stage: OutputStage
    controller: Controller
    watchdog: Watchdog | None = None
    events: list[dict[str, Any]] = field(default_factory=list)   # the whole log (render); see keep_log
    pending: list[dict[str, Any]] = field(default_factory=list)  # not yet taken by take_events()
    position: int = 0  # samples generated so far (model rate)
    keep_log: bool = True
    effects: EffectChain | None = None  # the preset's [[effects]] (realtime/sound/effects.py), before the limiter
    stopped: bool = False  # after stop(): silence into the effect chain, whose tail rings out
    swapper: Any = None  # [swap]: the model hot-swap (realtime/control/swap.py), None without slots
    input: InputChannel | None = None  # the live audio input (realtime/sound/audio_input.py), see attach_input

    @classmethod
    def open(cls, preset: Preset, model: ModelFile | None = None,
             say: Callable[[str], None] | None = None) -> "Session":
        model = model or load_model(preset.model_path())
        sr, rf = model.config.sample_rate, model.config.receptive_field
        prime = prime_waveform(preset.model.prime, sr, rf, seed=preset.model.seed)
        stage = OutputStage(sr, release_s=preset.sound.release_ms / 1000.0)
        name = preset.model.engine
        if preset.sound.voices > 1:  # the batch is Numba only: another engine plays one voice for every channel
            name = resolve_engine(name, model, "cpu", say)
            if not name.startswith("numba") and say is not None:
                say(f"engine {name} plays one voice (sound.voices = {preset.sound.voices} needs a numba engine): "
                    f"one note at a time, across all channels")
        if preset.sound.voices > 1 and name.startswith("numba"):  # polyphonic: one batched kernel call for all voices
            from realtime.control.poly_controller import PolyController
            from realtime.engine.poly_engine import PolyEngine

            threads = preset.sound.threads or min(2, len(os.sched_getaffinity(0)))
            engine = PolyEngine(model, preset.sound.voices, preset.model.seed, name.partition("-")[2] or "fp32",
                                threads=threads)
            engine.name = f"poly-{engine.precision}x{engine.n_voices}"
            for v in range(engine.n_voices):
                engine.prime(v, prime)
            controller: Controller = PolyController(engine, stage, preset)
        else:
            engine = make_engine(name, model, preset.model.seed, preset.model.compute, say)
            engine.prime(prime)
            controller = Controller(engine, stage, preset)
        effects = EffectChain(preset.effects, sr, preset.path or "preset", say) if preset.effects else None
        controller.effects = effects
        session = cls(preset, model, engine, stage, controller, Watchdog(preset.watchdog, sr), effects=effects)
        if preset.swap.slots:
            from realtime.control.swap import Swapper

            session.swapper = Swapper(session)
            session.swapper.say = say
        return session

    def prepare_live(self, say: Callable[[str], None] | None = None) -> float:
        """Before live play (main thread): make every re-prime state now (realtime.engine.prime_bank), so
        no note-on computes one on the generator thread; returns the seconds it took. Offline renders need
        not: a state made at its first note has the same bits."""
        return self.controller.primes.prepare(say=say)

    def attach_input(self, feed) -> InputChannel:
        """Give the session an audio input (issue 40): ``feed.read(out)`` supplies it at the model rate, one
        sample per generated sample (a file: realtime.sound.audio_input.FileFeed; live:
        realtime.live.audio_in.LiveFeed); the preset's [input] says what it does."""
        self.input = InputChannel(feed, self.preset.input, self.engine.sample_rate)
        self.controller.input = self.input
        return self.input

    def emit(self, ev: dict[str, Any]) -> dict[str, Any]:
        """Log an applied change at the current sample (``position``)."""
        ev = {"sample": self.position, **ev}
        if self.keep_log:
            self.events.append(ev)
        self.pending.append(ev)
        return ev

    def take_events(self) -> list[dict[str, Any]]:
        """Events logged since the last call (for a recorder)."""
        out, self.pending = self.pending, []
        return out

    def apply_midi(self, data: bytes) -> list[dict[str, Any]]:
        """Apply raw MIDI bytes now (at ``position``); returns the applied events (also logged)."""
        if self.swapper is not None:  # swap triggers out, held notes tracked, both sessions during a crossfade
            return self.swapper.apply_midi(data)
        return self._apply_midi(data)

    def apply_event(self, ev: dict[str, Any]) -> None:
        """Replay a logged event that is not MIDI: a model swap (loaded now, crossfaded from here)."""
        if ev.get("param") == "swap":
            from realtime.control.swap import Swapper

            if self.swapper is None:
                self.swapper = Swapper(self)
            self.swapper.open_event(ev)

    def _apply_midi(self, data: bytes) -> list[dict[str, Any]]:
        if self.input is not None:  # the controller primes from it (one swapped in gets it too)
            self.controller.input = self.input
        evs = [self.emit(ev) for ev in self.controller.feed(data)]
        if self.watchdog is not None and any(e.get("param") == "note_on" for e in evs):
            self.watchdog.note_started()
        return evs

    def stop(self) -> None:
        """The player stopped: from now on the engine is idle and the effect chain gets silence, so its
        tail rings out (see ``ringing``); logged as an event, so a replay stops at the same sample."""
        if not self.stopped:
            self.stopped = True
            if self.swapper is not None and self.swapper.incoming is not None:  # mid-crossfade: both stop
                self.swapper.incoming.stopped = True
            self.emit({"param": "stop", "value": 0})

    @property
    def ringing(self) -> bool:
        """After stop(): whether the effect chain's tail still sounds (above -90 dBFS, at most 10 s)."""
        return self.effects is not None and self.effects.ringing

    def generate(self, out: np.ndarray) -> np.ndarray:
        """Generate ``len(out)`` samples through engine, watchdog, output stage and effect chain into ``out``."""
        if self.swapper is not None and self.swapper.active:  # a model swap: two sessions, crossfaded
            return self.swapper.generate(out)
        return self._generate(out)

    def _generate(self, out: np.ndarray) -> np.ndarray:
        x_in = self.input.pull(len(out)) if self.input is not None else None
        if self.stopped:
            out[:] = 0.0
            self.position += len(out)
            if self.effects is not None:
                self.effects.process(out, stopped=True)
            return self.stage.limit(out)
        ctl = self.controller
        ctl.generate(out)
        self.position += len(out)
        if self.watchdog is not None:  # the controller's watch: per voice when polyphonic
            for reason in ctl.watch(out, self.watchdog):
                self.emit({"param": "recovery", "value": reason, "count": self.watchdog.total})
        through = x_in is not None and self.input.mode == "through"
        if self.effects is None and not through:
            self.stage.process(out)
        else:  # the input (through) and the chain between the output stage and its safety limiter
            self.stage.process(out, limit=False)
            if through:
                self.input.mix_into(out)
            if self.effects is not None:
                self.effects.process(out)
            self.stage.limit(out)
        return out


def run_stream(session: Session, timeline: list[tuple[int, bytes]], n_samples: int, block: int = 1024,
               resampler=None, sink=None, stop_after: int | None = None,
               progress: Callable[[int], None] | None = None, keep: bool = True,
               stop_at: int | None = None) -> np.ndarray:
    """Generate ``n_samples`` (model rate) in blocks of ``block``, applying each (sample, bytes)
    event at its exact sample index (blocks are split there).

    Each block optionally goes through a streaming ``resampler`` and to ``sink.write``; applied
    events go to ``sink.event``. Returns the concatenated output (resampled if a resampler is
    given), stopping early once ``stop_after`` output samples exist; with ``keep=False`` nothing
    is kept (long renders that only stream to the sink) and an empty array is returned.
    At sample ``stop_at`` the session stops (``Session.stop``); the stream then ends once the effect
    chain's tail has rung out (at once without effects).
    """
    buf = np.zeros(max(1, block), np.float32)
    chunks: list[np.ndarray] = []
    have = 0
    k = pos = 0
    while pos < n_samples and (stop_after is None or have < stop_after):
        if stop_at is not None and pos >= stop_at:
            if session.stopped and not session.ringing:
                break
            session.stop()
        while k < len(timeline) and timeline[k][0] <= pos:
            item = timeline[k][1]  # MIDI bytes, or a logged event to replay (a model swap)
            if isinstance(item, (bytes, bytearray)):
                session.apply_midi(item)
            else:
                session.apply_event(item)
            k += 1
        end = min(n_samples, pos + block)
        if k < len(timeline):
            end = min(end, max(timeline[k][0], pos + 1))
        if stop_at is not None and pos < stop_at:
            end = min(end, stop_at)
        x = session.generate(buf[:end - pos])
        if sink is not None and session.input is not None and hasattr(sink, "write_input"):
            sink.write_input(session.input.block[:session.input.n_block])  # the input, for an exact replay
        if sink is not None:
            for ev in session.take_events():
                sink.event(ev)
        y = resampler.process(x) if resampler is not None else x
        if sink is not None and len(y):
            sink.write(y)
        if keep:
            chunks.append(y.copy())
        have += len(y)
        pos = end
        if progress is not None:
            progress(pos)
    out = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return out if stop_after is None else out[:stop_after]


def tail_room(session: Session, n_samples: int) -> tuple[int, int | None]:
    """(samples to run at most, stop_at) for a render of ``n_samples``: with an effect chain the session
    stops there and its tail rings out (up to TAIL_MAX_S more); without, just ``n_samples``."""
    if session.effects is None:
        return n_samples, None
    from realtime.sound.effects import TAIL_MAX_S

    return n_samples + int(TAIL_MAX_S * session.engine.sample_rate) + 1, n_samples


def render_timeline(session: Session, timeline: list[tuple[int, bytes]], n_samples: int,
                    block: int = 1024, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Render ``n_samples`` at the model rate applying each (sample, bytes) event at its exact sample index."""
    total, stop_at = tail_room(session, n_samples)
    return run_stream(session, timeline, total, block, progress=progress, stop_at=stop_at)


def timed_render(session: Session, timeline, n_samples: int, block: int = 1024) -> tuple[np.ndarray, dict]:
    """Render and report {seconds, samples, sample_rate, rtf, engine}; rtf = audio seconds / wall seconds.

    A throwaway engine of the same kind runs first, so the first run's JIT compilation is not timed.
    """
    name = session.engine.name if not session.engine.name.startswith("poly") else session.preset.model.engine
    make_engine(name, session.model, compute=session.preset.model.compute).generate(1)
    t0 = time.perf_counter()
    audio = render_timeline(session, timeline, n_samples, block)
    wall = time.perf_counter() - t0
    sr = session.engine.sample_rate
    info = {"seconds": round(n_samples / sr, 6), "samples": int(n_samples), "sample_rate": int(sr),
            "rtf": round((n_samples / sr) / max(wall, 1e-9), 3), "engine": session.engine.name}
    return audio, info
