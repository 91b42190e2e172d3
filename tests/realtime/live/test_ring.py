"""The SPSC ring and the audio-callback kernel (no audio device needed)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from realtime.live.audio_out import GAIN, MISSING, N_STATE, N_STATS, SHORT, STEP, UNDERRUNS, fill_output
from realtime.live.ring import Ring


def test_capacity_is_power_of_two_and_counters_start_at_zero():
    r = Ring(1000)
    assert r.capacity == 1024
    assert r.fill() == 0 and r.space() == 1024


def test_wraparound_many_times_keeps_order():
    r = Ring(8)
    out = np.empty(5, np.float32)
    nxt = 0.0
    expect = 0.0
    for _ in range(100):  # positions go far past the capacity
        x = np.arange(nxt, nxt + 5, dtype=np.float32)
        assert r.write(x) == 5
        nxt += 5
        assert r.read(out) == 5
        np.testing.assert_array_equal(out, np.arange(expect, expect + 5, dtype=np.float32))
        expect += 5
    assert int(r.wpos[0]) == int(r.rpos[0]) == 500


def test_write_stops_when_full_and_read_when_empty():
    r = Ring(8)
    assert r.write(np.ones(20, np.float32)) == 8
    assert r.write(np.ones(1, np.float32)) == 0
    out = np.zeros(20, np.float32)
    assert r.read(out) == 8
    assert r.read(out) == 0
    assert r.fill() == 0


def test_block_by_block_equals_whole_signal():
    rng = np.random.default_rng(0)
    sig = rng.standard_normal(10_000).astype(np.float32)
    r = Ring(512)
    got = np.empty_like(sig)
    wi = ri = 0
    sizes = rng.integers(1, 300, 1000)
    k = 0
    while ri < len(sig):
        n = int(sizes[k % len(sizes)])
        k += 1
        wi += r.write(sig[wi:wi + n])
        m = int(sizes[(k * 7) % len(sizes)])
        ri += r.read(got[ri:ri + m])
    np.testing.assert_array_equal(got, sig)


@pytest.mark.slow  # not in make test-fast: two threads spinning on one core take ~10 s
def test_threaded_producer_consumer_every_sample_in_order():
    """A producer and a consumer thread hammer a small ring; the consumer sees 0, 1, 2, ... exactly."""
    total = 400_000
    r = Ring(256)
    seen = np.empty(total, np.float32)
    errors = []

    def produce():
        i = 0
        rng = np.random.default_rng(1)
        src = np.arange(total, dtype=np.float32)  # exact integers up to 2**24
        while i < total:
            n = int(rng.integers(1, 200))
            i += r.write(src[i:i + n])
            if rng.random() < 0.05:
                time.sleep(0)

    def consume():
        j = 0
        rng = np.random.default_rng(2)
        t_end = time.monotonic() + 60
        while j < total and time.monotonic() < t_end:
            n = int(rng.integers(1, 200))
            j += r.read(seen[j:j + n])
        if j < total:
            errors.append(f"consumer got only {j} samples")

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors
    np.testing.assert_array_equal(seen, np.arange(total, dtype=np.float32))
    assert r.fill() == 0


def _callback_state(ramp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = np.zeros(N_STATE, np.float64)
    state[STEP] = 1.0 / ramp
    state[GAIN] = 1.0  # as if playing already (a fresh stream fades in from 0)
    return state, np.zeros(N_STATS, np.int64), np.zeros(4096, np.float32)


def test_callback_kernel_copies_mono_to_all_channels():
    r = Ring(1024)
    x = np.linspace(-0.5, 0.5, 256, dtype=np.float32)
    r.write(x)
    state, stats, scratch = _callback_state(96)
    out = np.full((256, 2), 9.0, np.float32)
    assert fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats) == 256
    np.testing.assert_array_equal(out[:, 0], x)
    np.testing.assert_array_equal(out[:, 1], x)
    assert stats[UNDERRUNS] == 0


def test_callback_kernel_underflow_ramps_without_click_and_fades_back_in():
    """A sine stops mid-block: the output holds and ramps to 0 (small steps), counts it, then fades in."""
    rate, f, ramp = 48000, 200.0, 96
    t = np.arange(4096)
    sine = (0.8 * np.sin(2 * np.pi * f * t / rate)).astype(np.float32)
    r = Ring(8192)
    r.write(sine[:300])  # 300 samples for 2 blocks of 256: the second one underflows
    state, stats, scratch = _callback_state(ramp)
    outs = []
    for _ in range(4):
        out = np.zeros((256, 1), np.float32)
        fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats)
        outs.append(out[:, 0].copy())
    r.write(sine[300:1324])  # audio comes back
    for _ in range(4):
        out = np.zeros((256, 1), np.float32)
        fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats)
        outs.append(out[:, 0].copy())
    y = np.concatenate(outs)
    natural = 0.8 * 2 * np.pi * f / rate
    assert stats[UNDERRUNS] == 1 and stats[SHORT] == 3 and stats[MISSING] == 212 + 2 * 256
    assert np.abs(np.diff(y)).max() < natural + 1.0 / ramp + 1e-6
    assert np.all(y[300 + ramp:1024] == 0.0)  # silent once faded
    assert np.abs(y[1024 + ramp:]).max() > 0.7  # back at full level after the fade-in


def test_callback_kernel_closing_fades_out_without_counting():
    from realtime.live.audio_out import CLOSING

    r = Ring(8192)
    r.write(np.full(4096, 0.5, np.float32))
    state, stats, scratch = _callback_state(96)
    out = np.zeros((256, 2), np.float32)
    fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats)
    state[CLOSING] = 1.0
    fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats)
    assert out[0, 0] < 0.5 and np.all(out[96:] == 0.0)
    assert np.abs(np.diff(out[:, 0])).max() <= 0.5 / 96 + 1e-6
    assert stats[UNDERRUNS] == 0 and stats[SHORT] == 0


def test_callback_kernel_short_gap_crossfades_without_click():
    """The ring runs dry for 20 samples and resumes at the opposite peak: still no step beyond ~2/ramp."""
    ramp = 96
    r = Ring(4096)
    state, stats, scratch = _callback_state(ramp)
    out = np.zeros((256, 1), np.float32)
    r.write(np.full(236, 0.9, np.float32))
    fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats)  # 236 at +0.9, then 20 starved
    first = out[:, 0].copy()
    r.write(np.full(512, -0.9, np.float32))
    fill_output(r.buf, r.wpos, r.rpos, out, scratch, state, stats)
    y = np.concatenate([first, out[:, 0]])
    assert stats[UNDERRUNS] == 1
    assert np.abs(np.diff(y[10:])).max() <= 2 * 0.9 / ramp + 1e-6
    assert abs(y[-1] + 0.9) < 1e-6
