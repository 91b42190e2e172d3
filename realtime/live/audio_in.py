"""The live audio input (issue 40): a sounddevice ``InputStream`` whose callback only copies into its own ring,
and the generator thread's feed that turns it into a model-rate stream, one sample per generated sample.

Threads:

* audio callback (PortAudio's input): :meth:`AudioInput._callback` calls one compiled kernel
  (:func:`copy_input`) that takes the chosen channel (or the mean of all) of ``indata`` into the ring
  (:mod:`realtime.live.ring`'s layout); nothing else: no allocation, lock, log or wait. Frames that do not
  fit are counted (``overflows``), as are PortAudio's ``input_overflow`` flags.
* generator: :meth:`LiveFeed.read` drains the ring each block, resamples device rate -> model rate with a
  streaming soxr (the output side's conversion in reverse) into a FIFO, and hands out exactly the samples
  asked for. It keeps a small cushion (``cushion_ms``) so that the input's and the generator's bursts do
  not starve it: until the cushion has filled, and after a shortfall, it hands out silence (counted in
  ``underruns``); a FIFO grown past the cushion by more than ``max_ms`` (a drift) drops its oldest samples
  (``dropped``). What it hands out is what the session used, and what the recorder writes (``input.wav``).
* main: open (:class:`AudioInput`), start, stop.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from realtime.live.ring import Ring
from realtime.sound.resample import RESAMPLE_MODES

#: ``stats`` (int64): callbacks, frames, frames that did not fit in the ring, PortAudio input_overflow flags
IN_CALLBACKS, IN_FRAMES, IN_OVERFLOWS, IN_PA_OVERFLOWS = range(4)


@njit(cache=True)
def copy_input(buf, wpos, rpos, indata, channel, stats) -> int:
    """Copy ``indata`` (frames, channels) into the ring: column ``channel``, or the mean of all when it is
    negative; frames that do not fit are counted in ``stats``. Returns the frames written."""
    cap = buf.shape[0]
    mask = cap - 1
    w = wpos[0]
    frames, chans = indata.shape[0], indata.shape[1]
    n = min(frames, cap - (w - rpos[0]))
    for i in range(n):
        if channel >= 0:
            v = indata[i, channel]
        else:
            acc = np.float32(0.0)
            for c in range(chans):
                acc += indata[i, c]
            v = acc / np.float32(chans)
        buf[(w + i) & mask] = v
    wpos[0] = w + n
    stats[IN_CALLBACKS] += 1
    stats[IN_FRAMES] += frames
    stats[IN_OVERFLOWS] += frames - n
    return n


class AudioInput:
    """A sounddevice ``InputStream`` into a :class:`Ring` (mono: one channel, 1-based, or 0 = the mean)."""

    def __init__(self, device: int | None, samplerate: float, blocksize: int, latency: str | float,
                 channel: int = 1, ring_s: float = 2.0) -> None:
        from realtime.live import devices

        sd = devices.import_sounddevice()
        info = sd.query_devices(device, "input")
        have = int(info["max_input_channels"])
        if channel > have:
            raise devices.DeviceError(f"input device {info['name']!r}: no channel {channel} (it has {have}; "
                                      f"see --list-devices)")
        channels = have if channel == 0 else channel
        channels = max(1, min(channels, 32))
        self.channel = channel - 1 if channel > 0 else -1
        self.ring = Ring(int(ring_s * max(samplerate, info["default_samplerate"])))
        self.stats = np.zeros(4, np.int64)
        copy_input(Ring(8).buf, np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((2, 2), np.float32), -1,
                   np.zeros(4, np.int64))  # compile before the stream exists
        rates = [samplerate] + ([info["default_samplerate"]] if info["default_samplerate"] != samplerate else [])
        for k, rate in enumerate(rates):  # the output's rate, else the input's own (LiveFeed resamples either)
            try:
                self.stream = sd.InputStream(samplerate=rate, blocksize=blocksize, device=device, channels=channels,
                                             dtype="float32", latency=latency, callback=self._callback)
                break
            except sd.PortAudioError as e:
                if k == len(rates) - 1:
                    raise devices.DeviceError(f"input device {info['name']!r}: cannot open ({e}; `wavenet-live "
                                              f"--list-devices` lists every device)") from None
        devices.open_streams[0] += 1
        self._counted = True
        self.samplerate = float(self.stream.samplerate)
        self.device_name = str(info["name"])

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.stats[IN_PA_OVERFLOWS] += 1
        copy_input(self.ring.buf, self.ring.wpos, self.ring.rpos, indata, self.channel, self.stats)

    def start(self) -> None:
        self.stream.start()

    def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        from realtime.live import devices

        devices.close_stream(self)


class LiveFeed:
    """The generator thread's side of a ring of device-rate input: :meth:`read` hands out model-rate samples."""

    def __init__(self, ring: Ring, device_rate: float, model_rate: int, cushion_ms: float = 30.0,
                 max_ms: float = 120.0) -> None:
        self.ring = ring
        self.device_rate, self.model_rate = float(device_rate), int(model_rate)
        self._scratch = np.zeros(ring.capacity, np.float32)
        self._stream = None
        if self.device_rate != self.model_rate:
            import soxr

            self._stream = soxr.ResampleStream(self.device_rate, self.model_rate, 1, dtype="float32",
                                               **RESAMPLE_MODES["hq"])  # steady output, as the output side
        self.fifo = np.zeros(max(4096, int(2.0 * model_rate)), np.float32)
        self.fill = 0
        self.cushion = int(cushion_ms / 1000.0 * model_rate)
        self.max_fill = self.cushion + int(max_ms / 1000.0 * model_rate)
        self.started = False
        self.underruns = 0   # shortfalls: silence handed out while the cushion refills
        self.dropped = 0     # model-rate samples dropped after a drift

    def _drain(self) -> None:
        k = self.ring.read(self._scratch)
        if not k:
            return
        y = self._scratch[:k] if self._stream is None else self._stream.resample_chunk(self._scratch[:k])
        m = len(y)
        if m >= len(self.fifo):
            self.fifo[:] = y[m - len(self.fifo):]
            self.dropped += self.fill + m - len(self.fifo)
            self.fill = len(self.fifo)
            return
        over = self.fill + m - len(self.fifo)
        if over > 0:
            self._drop(over)
        self.fifo[self.fill:self.fill + m] = y
        self.fill += m

    def _drop(self, k: int) -> None:
        k = min(k, self.fill)
        self.fifo[:self.fill - k] = self.fifo[k:self.fill]
        self.fill -= k
        self.dropped += k

    def read(self, out: np.ndarray) -> None:
        """Fill ``out`` with the next model-rate input samples (generator thread)."""
        self._drain()
        n = len(out)
        if not self.started and self.fill >= self.cushion + n:
            self.started = True
        if self.started and self.fill > self.max_fill:
            self._drop(self.fill - self.cushion)
        if not self.started:
            out[:] = 0.0
            return
        if self.fill < n:  # a shortfall: silence, and the cushion builds up again
            out[:] = 0.0
            self.started = False
            self.underruns += 1
            return
        out[:] = self.fifo[:n]
        self.fifo[:self.fill - n] = self.fifo[n:self.fill]
        self.fill -= n
