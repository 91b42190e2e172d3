"""The live host: a generator thread that keeps the audio ring filled, and :class:`LiveHost` around it.

Threads:

* generator (``LiveHost._run``): pops MIDI, applies it at the block boundary
  (``session.apply_midi``), generates one block at the model rate
  (``session.generate``), resamples it to the device rate (a streaming
  ``soxr.ResampleStream``), offers it to the tee sink, and writes it to the
  ring. It keeps the ring at most ``lead_ms`` full and otherwise sleeps for
  about the time the device needs to drain what is over the target (short
  polling sleeps: the audio callback signals nothing, it must not touch locks).
  It runs at a raised priority where permitted (:mod:`realtime.live.priority`:
  SCHED_FIFO, else a better nice value; ``HostStats.priority`` says which), as
  does a polyphonic engine's worker thread, and with numpy's BLAS on one thread
  (:mod:`realtime.engine.blas`), so other work on the machine neither preempts
  it nor multiplies the cost of a matrix product. Nothing it does at a note-on
  may take more than a fraction of the lead: re-prime states are prepared
  before the stream starts (``session.prepare_live``, :mod:`realtime.engine.prime_bank`).
* audio callback: :mod:`realtime.live.audio_out` (ring -> device, ramps on underflow).
* MIDI: :mod:`realtime.live.midi_in` (timestamp + enqueue only).
* main: :meth:`LiveHost.start`, :meth:`LiveHost.stop`, :meth:`LiveHost.snapshot`.

The tee sink (a recorder, a meter ...) is any object with

``write(block)``
    called in the generator thread with each block exactly as it goes to the
    device: mono float32 at the device rate, after output stage and
    resampling. The array is only valid during the call (copy what you keep).
``event(ev)``
    called in the generator thread with each applied event: the dicts from
    ``session.apply_midi`` (or, where the session has it,
    ``session.take_events()``, which adds the session's own events such as
    watchdog recoveries), with ``"sample"`` (model-rate sample index where
    it took effect) and ``"device_frame"`` (the matching index in the
    stream of ``write`` blocks, device rate; 0 = the first block written).

Both must return quickly and never block (hand work to another thread). A
sink that raises is detached and its error kept in ``LiveHost.tee_error``.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from realtime.live.audio_out import CALLBACKS, FRAMES, MISSING, PA_UNDERFLOWS, SHORT, UNDERRUNS, AudioOutput
from realtime.live.ring import Ring
from realtime.sound.resample import RESAMPLE_MODES, Resampler


class TeeSink(Protocol):
    """Receives the live output and the applied events (generator thread; must not block)."""

    def write(self, block: np.ndarray) -> None: ...

    def event(self, ev: dict[str, Any]) -> None: ...


@dataclass
class HostStats:
    """A snapshot for the status line and tests (main thread)."""

    seconds: float = 0.0          # since the stream started
    frames: int = 0               # device frames the callback was asked for
    callbacks: int = 0
    underruns: int = 0            # underrun episodes (glitches)
    short_callbacks: int = 0      # callbacks the ring could not fill
    missing: int = 0              # frames the ring could not supply
    pa_underflows: int = 0        # PortAudio output_underflow flags
    ring_ms: float = 0.0
    lead_ms: float = 0.0
    latency_ms: float = 0.0       # ring + resampler + device (PortAudio's estimate)
    rtf: float = 0.0              # engine speed: audio seconds per compute second (>1 keeps up)
    generated: int = 0            # model-rate samples generated
    events: int = 0               # applied MIDI events
    midi_in: int = 0              # raw MIDI messages received
    instrument: str = ""
    note: int | None = None
    temperature: float | None = None
    samplerate: float = 0.0
    device: str = ""
    midi: str = ""
    recoveries: int = 0           # watchdog recoveries (collapse, blow-up)
    warning: str = ""             # e.g. the recorder stopped writing (disk full); playback goes on
    voices: str = ""              # polyphony: "busy/total" voices
    effects: str = ""             # the effect chain: "fx Reverb>Delay" ("" = none)
    input: str = ""               # the audio input: "in -18 dB prime" (its last block's peak, its mode; "" = none)
    model: str = ""               # the model playing ("default"; "a (loading b)" during a hot-swap's load)
    priority: str = ""            # the generator thread's scheduling: "SCHED_FIFO 3", "nice -10" or "normal"
    error: str = ""


class LiveHost:
    """Plays a ``Session`` live: generator thread + ring + audio output (+ optional MIDI input and tee).

    ``session`` needs ``generate(out)``, ``apply_midi(data) -> list[dict]`` and
    ``engine.sample_rate``; ``realtime.offline.render.Session`` is the real one.
    The host owns ``midi`` (a :class:`realtime.live.midi_in.MidiInput`) and closes it on stop.
    """

    def __init__(self, session: Any, *, device: int | None = None, samplerate: float | None = None,
                 blocksize: int = 256, latency: str | float = "low", lead_ms: float = 40.0,
                 channels: int | None = None, midi: Any = None, tee: TeeSink | None = None,
                 resample: str = "hq", client_name: str = "wavenet-live", gen_block: int | None = None,
                 input_device: int | None | bool = False, input_channel: int = 1) -> None:
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"resample mode {resample!r}: one of {', '.join(RESAMPLE_MODES)}")
        self.session = session
        self.model_rate = int(session.engine.sample_rate)
        self.device, self.samplerate, self.blocksize = device, samplerate, int(blocksize)
        self.latency, self.lead_ms, self.channels = latency, float(lead_ms), channels
        self.midi = midi
        self.midi_queue: collections.deque = midi.queue if midi is not None else collections.deque(maxlen=8192)
        self.tee = tee
        self.tee_error: BaseException | None = None
        self.resample_mode = resample
        self.client_name = client_name
        self.gen_block_arg = gen_block
        #: the audio input (issue 40; realtime/live/audio_in.py): a device index, None = the default, False = none
        self.input_device, self.input_channel = input_device, input_channel
        self.audio_in = None
        self.error: BaseException | None = None
        self.output: AudioOutput | None = None
        self.ring: Ring | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._stall_s = 0.0
        self._started_at = 0.0
        self._generated = 0
        self._events = 0
        self._rtf = 0.0
        self._ring_out = False   # main -> generator: stop the session, let its effect chain's tail ring out
        self._rung_out = False   # generator -> main: the tail has decayed (nothing more is generated)
        self._old_switch = sys.getswitchinterval()
        self.device_lost = False
        self._cb_seen, self._cb_time = -1, 0.0
        #: what the generator thread got from realtime.live.priority.raise_priority ("" before it starts)
        self.priority = ""

    # ------------------------------------------------------------ main thread
    def start(self, prefill_timeout: float = 120.0) -> None:
        """Open the device, prefill the ring to the lead, start generating and playing."""
        try:
            self._start(prefill_timeout)
        except BaseException:
            self.stop()
            raise
        self._started_at = time.monotonic()

    def _start(self, prefill_timeout: float) -> None:
        from realtime.live.devices import import_sounddevice

        sd = import_sounddevice(self.client_name)
        info = sd.query_devices(self.device, "output")
        rate = float(self.samplerate or info["default_samplerate"])
        self.lead_frames = max(1, int(round(self.lead_ms / 1000.0 * rate)))
        gb = self.gen_block_arg or int(round(self.blocksize * self.model_rate / rate))
        self.gen_block = int(min(1024, max(16, gb)))
        self.block_out = self.gen_block * rate / self.model_rate  # device frames per block (average)
        self.lead_frames = max(self.lead_frames, int(np.ceil(self.block_out)) + 1)
        self.ring = Ring(4 * (self.lead_frames + int(self.block_out) + self.blocksize + 4096))
        self.ring.warm_up()
        self.output = AudioOutput(self.ring, self.device, rate, self.blocksize, self.latency, self.channels)
        self.rate = self.output.samplerate
        self.resampler = Resampler(self.model_rate, self.rate, self.resample_mode)
        if self.input_device is not False:  # its own stream and ring; the session pulls it each block
            from realtime.live.audio_in import AudioInput, LiveFeed

            self.audio_in = AudioInput(self.input_device, self.rate, self.blocksize, self.latency, self.input_channel)
            self.session.attach_input(LiveFeed(self.audio_in.ring, self.audio_in.samplerate, self.model_rate))
            self.audio_in.start()
        self._block = np.zeros(self.gen_block, np.float32)
        self._silence = np.zeros(int(np.ceil(self.block_out)), np.float32)
        self._pos0 = int(getattr(self.session, "position", 0))  # session sample index of our first block
        if self.tee is not None and hasattr(self.tee, "begin"):  # e.g. a recorder opens its files now
            self.tee.begin(self.rate, self.stream_info())
        sys.setswitchinterval(0.001)  # the audio callback needs the GIL promptly
        self._running = True
        self._thread = threading.Thread(target=self._run, name="wavenet-live-generator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + prefill_timeout
        while self.ring.fill() + self.block_out <= self.lead_frames:
            if self.error is not None:
                raise self.error
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the generator did not fill the audio buffer in time")
            time.sleep(0.002)
        self.output.start()

    def stop(self) -> None:
        """Fade out, stop generating, join the thread, close the stream and MIDI (idempotent)."""
        self.stop_generator()
        self.close_devices()

    def stop_generator(self) -> None:
        """Let an effect chain's tail ring out, fade out (if the device still runs), stop the generator
        thread and join it (idempotent)."""
        playing = (self.output is not None and self._running and not self.device_lost
                   and not self.output.stream.closed and self.output.stream.active)
        if playing and getattr(self.session, "effects", None) is not None and self.error is None:
            from realtime.sound.effects import TAIL_MAX_S

            self._ring_out = True  # the generator stops the session at its next block; the tail plays out
            deadline = time.monotonic() + TAIL_MAX_S + 2.0
            while not self._rung_out and self.alive and time.monotonic() < deadline and not self.device_lost:
                time.sleep(0.01)
        if playing:
            time.sleep(self.output.fade_out())
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def close_devices(self, timeout: float = 3.0) -> bool:
        """Close the stream and MIDI; False if the device hung (gone) and was abandoned after ``timeout`` s."""
        def close() -> None:
            if self.output is not None:
                self.output.stop()
            if self.audio_in is not None:
                self.audio_in.stop()
            if self.midi is not None:
                self.midi.close()

        t = threading.Thread(target=close, name="wavenet-live-close", daemon=True)
        t.start()
        t.join(timeout)
        sys.setswitchinterval(self._old_switch)
        return not t.is_alive()

    def device_stalled(self, seconds: float = 2.0) -> bool:
        """Main thread: True once the audio callback has not run for ``seconds`` (device gone, server died)."""
        if self.output is None or not self._started_at:
            return False
        n, now = int(self.output.stats[CALLBACKS]), time.monotonic()
        if n != self._cb_seen:
            self._cb_seen, self._cb_time = n, now
            return False
        if now - self._cb_time >= seconds or (not self.output.stream.closed and not self.output.stream.active):
            self.device_lost = True
        return self.device_lost

    def __enter__(self) -> "LiveHost":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stream_info(self) -> dict[str, Any]:
        """How the stream is generated (what a replay needs to reproduce it); valid after start."""
        return {"model_rate": self.model_rate, "device_rate": self.rate, "gen_block": self.gen_block,
                "resample": self.resample_mode, "blocksize": self.blocksize, "lead_ms": self.lead_ms}

    @property
    def alive(self) -> bool:
        return self._running and self.error is None

    def push_midi(self, data: bytes) -> None:
        """Enqueue raw MIDI as if it came from the port (any thread)."""
        self.midi_queue.append((time.perf_counter_ns(), bytes(data)))

    def inject_stall(self, seconds: float) -> None:
        """Test hook: the generator sleeps ``seconds`` before its next block (forces an underrun)."""
        self._stall_s = float(seconds)

    def snapshot(self) -> HostStats:
        """Counters and state now (main thread; values are read without locks)."""
        st = HostStats(lead_ms=self.lead_ms, samplerate=getattr(self, "rate", 0.0), generated=self._generated,
                       events=self._events, rtf=self._rtf, error=repr(self.error) if self.error else "",
                       priority=self.priority)
        if self.midi is not None:
            st.midi, st.midi_in = self.midi.port_name, self.midi.received
        if self.output is not None and self.ring is not None:
            s = self.output.stats.copy()
            st.frames, st.callbacks, st.underruns = int(s[FRAMES]), int(s[CALLBACKS]), int(s[UNDERRUNS])
            st.missing, st.pa_underflows = int(s[MISSING]), int(s[PA_UNDERFLOWS])
            st.short_callbacks = int(s[SHORT])
            st.device = self.output.device_name
            fill = self.ring.fill()
            st.ring_ms = 1000.0 * fill / self.rate
            st.latency_ms = 1000.0 * ((fill + self.resampler.pending) / self.rate + self.output.latency_s)
            st.lead_ms = 1000.0 * self.lead_frames / self.rate
        if self._started_at:
            st.seconds = time.monotonic() - self._started_at
        st.warning = str(getattr(self.tee, "error", "") or (f"recorder detached: {self.tee_error}"
                                                            if self.tee_error else ""))
        fx = getattr(self.session, "effects", None)
        if fx is not None:
            st.effects = fx.describe()
        inp = getattr(self.session, "input", None)
        if inp is not None:
            st.input = inp.describe()
        sw, model = getattr(self.session, "swapper", None), getattr(self.session, "model", None)
        if sw is not None:
            st.model = sw.label + (f" (loading {sw.loading})" if sw.loading else "")
        elif model is not None:
            from realtime.control.swap import model_label

            st.model = model_label(getattr(model, "path", None))
        dog = getattr(self.session, "watchdog", None)
        if dog is not None:
            st.recoveries = dog.total
        ctl = getattr(self.session, "controller", None)
        alloc = getattr(ctl, "alloc", None)
        if alloc is not None:
            st.voices = f"{len(alloc.busy())}/{alloc.max_voices}"
        if ctl is not None:
            cs = ctl.state
            st.note, st.temperature = cs.note, cs.temperature
            st.instrument = ctl.instruments[cs.instrument] if 0 <= cs.instrument < len(ctl.instruments) else ""
        return st

    # ------------------------------------------------------- generator thread
    def _run(self) -> None:
        from realtime.engine.blas import one_blas_thread
        from realtime.live.priority import raise_priority

        self.priority = raise_priority()
        for tid in getattr(self.session.engine, "worker_thread_ids", ()):  # a batch's second voice group
            raise_priority(tid)
        try:
            with one_blas_thread():
                self._loop()
        except BaseException as e:  # reported by the main thread
            self.error = e
            self._running = False

    def _loop(self) -> None:
        ring, rate = self.ring, self.rate
        block = self._block
        q = self.midi_queue
        take = getattr(self.session, "take_events", None)
        if take is not None:
            take()  # drop what was logged before we started
        t_acc, n_acc, t_mark = 0.0, 0, time.perf_counter()
        engine = self.session.engine
        while self._running:
            if self._stall_s:
                s, self._stall_s = self._stall_s, 0.0
                time.sleep(s)
            over = ring.fill() + self.block_out - self.lead_frames
            if over > 0:
                time.sleep(min(0.004, max(0.0002, over / rate)))
                continue
            if self._rung_out:  # the tail has decayed: silence until the fade (no underrun, nothing recorded)
                ring.write(self._silence)
                continue
            if self._ring_out:  # stopping: silence into the effect chain until its tail has decayed
                if not self.session.stopped:
                    self.session.stop()
                elif not self.session.ringing:
                    self._rung_out = True
                    continue
            while q:
                _, data = q.popleft()
                evs = self.session.apply_midi(data)
                self._events += len(evs)
                if take is None and evs:
                    self._forward(evs)
            t0 = time.perf_counter()
            self.session.generate(block)
            t1 = time.perf_counter()
            if self.session.engine is not engine:  # a model hot-swap: its batch's worker thread as ours
                from realtime.live.priority import raise_priority

                engine = self.session.engine
                for tid in getattr(engine, "worker_thread_ids", ()):
                    raise_priority(tid)
            if take is not None:  # MIDI events and the session's own (e.g. recoveries), drained every block
                evs = take()
                if evs:
                    self._forward(evs)
            inp = getattr(self.session, "input", None)
            if inp is not None and self.tee is not None and hasattr(self.tee, "write_input"):
                self._tee("write_input", inp.block[:inp.n_block])  # the input the block used (model rate)
            y = self.resampler.process(block)
            self._generated += len(block)
            t_acc += t1 - t0
            n_acc += len(block)
            if t1 - t_mark > 0.5:
                self._rtf = (n_acc / self.model_rate) / max(t_acc, 1e-9)
                t_acc, n_acc, t_mark = 0.0, 0, t1
            if len(y) == 0:
                continue
            if self.tee is not None:
                self._tee("write", y)
            done = ring.write(y)
            while done < len(y) and self._running:  # only if the ring is too small for a burst
                time.sleep(0.001)
                done += ring.write(y[done:])

    def _forward(self, evs: list[dict[str, Any]]) -> None:
        """Offer events to the tee with ``sample`` (model rate) and ``device_frame`` (device rate)."""
        if self.tee is None:
            return
        for ev in evs:
            sample = int(ev.get("sample", self._pos0 + self._generated))
            frame = int(round((sample - self._pos0) * self.resampler.ratio))
            self._tee("event", {**ev, "sample": sample, "device_frame": frame})

    def _tee(self, method: str, arg: Any) -> None:
        try:
            getattr(self.tee, method)(arg)
        except Exception as e:  # a faulty sink must not stop the music
            self.tee_error, self.tee = e, None
