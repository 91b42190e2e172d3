"""The audio callback: ring -> ``outdata`` (mono to every channel), with click-free underruns.

Thread: PortAudio's audio thread runs :meth:`AudioOutput._callback`. It only
calls one compiled kernel on preallocated arrays: no locks, no logging, no
waiting, no numpy temporaries. On underflow it plays what the ring has, then
holds the last value and ramps it linearly to silence over ``ramp`` samples
(2 ms); when audio returns it fades back in over the same ramp, so neither
edge clicks. Underruns are counted as episodes (a short callback after a full
one), with short callbacks and missing frames, and so are PortAudio's
``output_underflow`` status flags.

``sounddevice`` is imported lazily (see :mod:`realtime.live.devices`), because
PortAudio only sees a JACK server that was running when it was initialised.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from realtime.live.ring import Ring, ring_read

#: ``stats`` (int64) layout, written by the audio thread only: frames asked for, callbacks,
#: underruns (episodes: a short callback after a full one), short callbacks, frames missing,
#: PortAudio ``output_underflow`` flags
FRAMES, CALLBACKS, UNDERRUNS, SHORT, MISSING, PA_UNDERFLOWS = range(6)
N_STATS = 6
#: ``state`` (float64) layout: last output sample, live gain 0..1, gain step per sample (1/ramp),
#: PortAudio's output time minus current time (s) of the last callback, 1.0 while starved,
#: 1.0 once closing (fade out, stop reading, count nothing), held value, its gain, 1.0 while fed
LAST, GAIN, STEP, DAC_DELAY, STARVED, CLOSING, HOLD, HOLD_GAIN, FED = range(9)
N_STATE = 9


@njit(cache=True)
def fill_output(buf, wpos, rpos, out, scratch, state, stats) -> int:
    """Fill ``out`` (frames, channels) from the ring; returns the samples taken from the ring.

    When the ring runs dry the last output value is held and faded out
    linearly, and the live signal restarts from gain 0 and fades in when
    audio returns (a crossfade: the held value keeps fading meanwhile), so
    every sample-to-sample step stays within the signal's own slope plus
    about ``2 / ramp`` of full scale.
    """
    frames = out.shape[0]
    chans = out.shape[1]
    closing = state[CLOSING] != 0.0
    got = 0 if closing else ring_read(buf, wpos, rpos, scratch[:frames])
    last, g, step = state[LAST], state[GAIN], state[STEP]
    hold, hg, fed = state[HOLD], state[HOLD_GAIN], state[FED] != 0.0
    for i in range(frames):
        live = 0.0
        if i < got:
            g = min(1.0, g + step)
            live = scratch[i] * g
            fed = True
        elif fed:  # ran dry: hold the last output and fade it; live audio will restart from silence
            hold, hg, g, fed = last, 1.0, 0.0, False
        hg = max(0.0, hg - step)
        last = live + hold * hg
        v = np.float32(last)
        for c in range(chans):
            out[i, c] = v
    state[LAST], state[GAIN], state[HOLD], state[HOLD_GAIN] = last, g, hold, hg
    state[FED] = 1.0 if fed else 0.0
    stats[FRAMES] += frames
    stats[CALLBACKS] += 1
    if closing:
        pass
    elif got < frames:
        if state[STARVED] == 0.0:
            stats[UNDERRUNS] += 1
        state[STARVED] = 1.0
        stats[SHORT] += 1
        stats[MISSING] += frames - got
    else:
        state[STARVED] = 0.0
    return got


class AudioOutput:
    """A sounddevice ``OutputStream`` fed from a :class:`Ring` (mono, copied to all channels).

    Create, :meth:`start`, :meth:`stop`/:meth:`close` from the main thread.
    ``stats`` and ``state`` are read by other threads as snapshots.
    """

    def __init__(self, ring: Ring, device: int | None, samplerate: float | None, blocksize: int,
                 latency: str | float, channels: int | None = None, ramp_s: float = 0.002,
                 max_frames: int = 16384) -> None:
        from realtime.live import devices

        sd = devices.import_sounddevice()
        info = sd.query_devices(device, "output")
        if channels is None:
            channels = max(1, min(2, int(info["max_output_channels"])))
        self.ring = ring
        self.stats = np.zeros(N_STATS, np.int64)
        self.state = np.zeros(N_STATE, np.float64)
        self.scratch = np.zeros(max_frames, np.float32)
        self._warm_up()
        self.stream = sd.OutputStream(
            samplerate=samplerate or None, blocksize=blocksize, device=device, channels=channels,
            dtype="float32", latency=latency, callback=self._callback, dither_off=True)
        devices.open_streams[0] += 1
        self._counted = True
        self.samplerate = float(self.stream.samplerate)
        self.channels = channels
        self.device_name = str(info["name"])
        self.state[STEP] = 1.0 / max(1, int(round(ramp_s * self.samplerate)))

    # ----------------------------------------------------------- audio thread
    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status and status.output_underflow:
            self.stats[PA_UNDERFLOWS] += 1
        if frames > self.scratch.shape[0]:  # cannot happen with sane block sizes; stay silent, count it
            outdata.fill(0.0)
            self.stats[SHORT] += 1
            return
        self.state[DAC_DELAY] = time.outputBufferDacTime - time.currentTime
        fill_output(self.ring.buf, self.ring.wpos, self.ring.rpos, outdata, self.scratch, self.state, self.stats)

    # ------------------------------------------------------------ main thread
    def _warm_up(self) -> None:
        """Compile the kernel before the stream exists (the first call is slow)."""
        tmp = Ring(8)
        out = np.zeros((4, 2), np.float32)
        fill_output(tmp.buf, tmp.wpos, tmp.rpos, out, np.zeros(4, np.float32),
                    np.zeros(N_STATE, np.float64), np.zeros(N_STATS, np.int64))

    @property
    def latency_s(self) -> float:
        """PortAudio's output latency estimate (seconds): the last callback's DAC delay, else the stream's."""
        d = float(self.state[DAC_DELAY])
        return d if d > 0 else float(self.stream.latency)

    def start(self) -> None:
        self.stream.start()

    def fade_out(self) -> float:
        """Ask the callback to ramp to silence (not counted as an underrun); returns the seconds to wait."""
        self.state[CLOSING] = 1.0
        return 1.0 / (self.state[STEP] * self.samplerate) + 2.0 * self.stream.blocksize / self.samplerate + 0.01

    def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        from realtime.live import devices

        devices.close_stream(self)
