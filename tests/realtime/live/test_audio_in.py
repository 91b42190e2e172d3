"""Issue 40, the live input's parts without a device: the audio callback's copy kernel (channel choice, the mean,
a full ring counted), the generator's feed (sample-locked model-rate output behind a cushion, a shortfall
and a drift), the input history, the status line's input level, and a bad --input naming the device."""
from __future__ import annotations

import numpy as np
import pytest

from realtime.control.presets import InputSection
from realtime.live.audio_in import IN_CALLBACKS, IN_FRAMES, IN_OVERFLOWS, LiveFeed, copy_input
from realtime.live.host import HostStats
from realtime.live.ring import Ring
from realtime.live.status import format_status
from realtime.sound.audio_input import FileFeed, InputChannel, estimate_f0


def test_copy_input_takes_one_channel_or_the_mean_and_counts_what_does_not_fit():
    ring, stats = Ring(8), np.zeros(4, np.int64)
    x = np.arange(12, dtype=np.float32).reshape(6, 2)  # frames 0..5: (0, 1), (2, 3), ...
    assert copy_input(ring.buf, ring.wpos, ring.rpos, x, 1, stats) == 6
    out = np.zeros(8, np.float32)
    assert ring.read(out) == 6 and list(out[:6]) == [1, 3, 5, 7, 9, 11]
    assert copy_input(ring.buf, ring.wpos, ring.rpos, x, -1, stats) == 6
    assert copy_input(ring.buf, ring.wpos, ring.rpos, x, -1, stats) == 2  # 8 - 6 fit
    assert ring.read(out) == 8 and list(out) == [0.5, 2.5, 4.5, 6.5, 8.5, 10.5, 0.5, 2.5]
    assert list(stats[[IN_CALLBACKS, IN_FRAMES, IN_OVERFLOWS]]) == [3, 18, 4]


def test_live_feed_is_sample_locked_behind_its_cushion():
    rate_in, rate = 48000, 16000
    ring = Ring(1 << 16)
    feed = LiveFeed(ring, rate_in, rate, cushion_ms=30.0)
    t = np.arange(rate_in) / rate_in
    src = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    got, pos = [], 0
    for k in range(150):  # 256-frame callbacks at 48 kHz, 85-sample blocks at 16 kHz: the same 5.3 ms
        ring.write(src[pos:pos + 256])
        pos += 256
        out = np.full(85, np.nan, np.float32)
        feed.read(out)
        got.append(out)
    y = np.concatenate(got)
    assert np.all(np.isfinite(y))
    lead = np.flatnonzero(y)[0]
    assert 0 < lead <= int(0.06 * rate)  # silence until the cushion (30 ms + a block + soxr's ~15 ms) filled
    assert feed.underruns == 0 and feed.dropped == 0
    body = y[lead + 400:]
    assert abs(estimate_f0(body[:1600], rate) - 200) < 1 and abs(np.abs(body).max() - 0.5) < 0.02
    # a shortfall: silence and a count, then the cushion fills again
    out = np.zeros(4000, np.float32)
    feed.read(out)
    assert feed.underruns == 1 and not np.any(out)
    # a drift: far more input than the session takes is dropped down to the cushion
    ring.write(np.zeros(30000, np.float32))
    feed.read(np.zeros(85, np.float32))
    assert feed.dropped > 0 and feed.fill <= feed.cushion


def test_input_channel_history_prime_and_meter():
    x = np.linspace(-0.5, 0.5, 40000, dtype=np.float32)
    ch = InputChannel(FileFeed(x), InputSection(prime_ms=10.0), 16000, max_block=64)
    for _ in range(10):
        ch.pull(100)  # blocks larger than max_block grow the buffers
    assert ch.total == 1000 and np.array_equal(ch.last(160), x[840:1000])
    assert np.array_equal(ch.last(5000), x[:1000])  # no more than was pulled
    assert np.array_equal(ch.prime_audio(), x[840:1000])
    assert ch.peak_db == pytest.approx(20 * np.log10(np.abs(x[900:1000]).max()), abs=1e-3)
    for _ in range(400):
        ch.pull(100)
    h = ch.last(40000)  # the history holds 2 s; the file's end is followed by silence
    assert len(h) == 32000 and np.array_equal(h[:31000], x[9000:40000]) and not np.any(h[31000:])
    quiet = InputChannel(FileFeed(np.full(5000, 1e-4, np.float32)), InputSection(gate_db=-60.0), 16000)
    quiet.pull(4000)
    assert quiet.prime_audio() is None  # -80 dBFS: below the gate, the seed bank primes


def test_status_line_shows_the_input_level_and_mode_within_80_columns():
    st = HostStats(instrument="piano", note=57, temperature=0.5, seconds=3.2, input="in -20 dB prime",
                   effects="fx Reverb", samplerate=48000.0, lead_ms=40.0, midi="midi_in", rtf=3.1)
    line = format_status(st, 80)
    assert len(line) <= 80 and "| in -20 dB prime |" in line
    assert format_status(HostStats(seconds=1.0)).count("in ") == 0


def test_a_bad_input_device_names_it_and_says_how_to_list_devices(monkeypatch):
    from realtime.live import devices

    monkeypatch.setattr(devices, "input_devices", lambda: [
        {"index": 3, "name": "USB Audio CODEC", "hostapi_name": "ALSA"},
        {"index": 5, "name": "USB Audio Interface", "hostapi_name": "ALSA"}])
    with pytest.raises(devices.DeviceError) as e:
        devices.choose_input_device("Scarlett")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("input device 'Scarlett': no input device matches")
    assert "[3] USB Audio CODEC (ALSA)" in msg and "--list-devices" in msg
    with pytest.raises(devices.DeviceError, match="several input devices match"):
        devices.choose_input_device("usb audio")
    with pytest.raises(devices.DeviceError, match=r"^input device 7: no such input device"):
        devices.choose_input_device("7")
    assert devices.choose_input_device("codec") == 3 and devices.choose_input_device("5") == 5
