"""The envelope bank's play-time lookup: a played note walks its recorded frames (interpolated between frames, between
the two recorded pitches and velocities around it), holds past its recording by looping its last frames with its
decay continued, and after key-up walks the release frames from where it was."""
from __future__ import annotations

import math

import numpy as np
import pytest
from envelope_bank_data import RELEASE, frames_of, make_bank, seconds

from realtime.model import envelope
from realtime.model.envelope import END_FADE_PER_FRAME, LOOP_FRAMES, flat_lsf, log_gains, tail_slope

BANK = make_bank()


def entry_at(k: int, q: float) -> tuple[np.ndarray, float]:
    """Entry k's frames interpolated at position q: LSFs and log gain."""
    lsf, gain = frames_of(k)
    lsf, lg = lsf.astype(np.float64), log_gains(gain)
    i = int(np.floor(q))
    f = q - i
    j = min(i + 1, len(lg) - 1)
    return (1 - f) * lsf[i] + f * lsf[j], (1 - f) * lg[i] + f * lg[j]


@pytest.mark.parametrize("q", [0.0, 3.0, 7.25, 20.5, 39.0])
def test_a_recorded_note_walks_its_frames(q):
    lsf, gain = BANK.lookup(0, 60, 64, seconds(q))
    want_lsf, want_lg = entry_at(0, q)
    np.testing.assert_allclose(lsf, want_lsf, atol=1e-9)
    assert math.log(gain) == pytest.approx(want_lg, abs=1e-9)


@pytest.mark.parametrize("pitch,velocity,weights", [
    (61.0, 64, {0: 0.5, 2: 0.5}),            # halfway between the recorded pitches 60 and 62
    (60.5, 64, {0: 0.75, 2: 0.25}),
    (60.0, 82, {0: 0.5, 1: 0.5}),            # halfway between the recorded velocities 64 and 100
    (61.0, 91, {0: 0.125, 1: 0.375, 2: 0.125, 3: 0.375}),
    (58.0, 30, {0: 1.0}),                    # below the lowest pitch and velocity: clamped
    (70.0, 127, {3: 1.0}),                   # above the highest
])
@pytest.mark.parametrize("q", [2.5, 12.0])
def test_neighbours_mix_lsfs_linearly_and_gains_geometrically(pitch, velocity, weights, q):
    lsf, gain = BANK.lookup(0, pitch, velocity, seconds(q))
    want_lsf = sum(w * entry_at(k, q)[0] for k, w in weights.items())
    want_lg = sum(w * entry_at(k, q)[1] for k, w in weights.items())
    np.testing.assert_allclose(lsf, want_lsf, atol=1e-9)
    assert math.log(gain) == pytest.approx(want_lg, abs=1e-9)


def test_an_instrument_without_notes_is_silent_and_flat():
    lsf, gain = BANK.lookup(5, 60, 64, 0.1)
    assert gain == 0.0
    np.testing.assert_allclose(lsf, flat_lsf())


@pytest.mark.parametrize("past", [0.5, 4.0, 10.0, 13.0, 27.5, 100.0])
def test_held_past_the_recording_loops_back_and_forth_and_keeps_decaying(past):
    lsf, gain = BANK.lookup(0, 60, 100, seconds(RELEASE + past))
    m = past % (2 * LOOP_FRAMES)
    q = RELEASE - (m if m <= LOOP_FRAMES else 2 * LOOP_FRAMES - m)  # the ping-pong's position
    want_lsf, lg = entry_at(1, q)
    slope = tail_slope(log_gains(frames_of(1)[1]), RELEASE)
    assert slope < 0
    np.testing.assert_allclose(lsf, want_lsf, atol=1e-9)
    assert math.log(gain) == pytest.approx(lg + slope * (past + RELEASE - q), abs=1e-9)
    # continuous: the loop's detrended log gain plus the continued decay meets the recording at its key-up
    assert math.log(BANK.lookup(0, 60, 100, seconds(RELEASE + 1e-6))[1]) == pytest.approx(entry_at(1, RELEASE)[1],
                                                                                         abs=1e-5)


@pytest.mark.parametrize("after", [3.0, 5.5, 12.0])
def test_released_at_its_recorded_key_up_the_note_walks_its_release_frames(after):
    lsf, gain = BANK.lookup(0, 62, 64, seconds(RELEASE + after), seconds(after))
    want_lsf, want_lg = entry_at(2, RELEASE + after)
    np.testing.assert_allclose(lsf, want_lsf, atol=1e-9)  # past the cross-fade: the release frames
    assert math.log(gain) == pytest.approx(want_lg, abs=1e-9)


@pytest.mark.parametrize("held,after", [(10.0, 4.0), (20.0, 8.5), (55.0, 6.0)])
def test_released_elsewhere_the_note_falls_from_where_it_was_as_the_recording_fell(held, after):
    _, gain = BANK.lookup(0, 60, 64, seconds(held + after), seconds(after))
    _, at_key_up = BANK.lookup(0, 60, 64, seconds(held))
    fall = entry_at(0, RELEASE + after)[1] - entry_at(0, RELEASE)[1]
    assert math.log(gain) == pytest.approx(math.log(at_key_up) + fall, abs=1e-9)


def test_the_lsfs_cross_fade_from_the_held_frame_to_the_release_frames():
    held = 10.0
    c = 1.0 / envelope.RELEASE_XFADE_FRAMES
    lsf, _ = BANK.lookup(0, 60, 64, seconds(held + 1.0), seconds(1.0))
    np.testing.assert_allclose(lsf, (1 - c) * entry_at(0, held)[0] + c * entry_at(0, RELEASE + 1.0)[0], atol=1e-9)


@pytest.mark.parametrize("beyond", [1.0, 7.0])
def test_past_the_last_frame_the_released_note_fades_out(beyond):
    after = (59 - RELEASE) + beyond  # frame 59 is the last
    _, gain = BANK.lookup(0, 60, 64, seconds(RELEASE + after), seconds(after))
    assert math.log(gain) == pytest.approx(entry_at(0, 59)[1] - END_FADE_PER_FRAME * beyond, abs=1e-9)


def test_the_numba_lookup_allocates_nothing_per_call():
    """The engines' per-ms path: neighbours + envelope_at into preallocated arrays (compiled, no Python objects)."""
    idx, w, out = np.zeros(4, np.int64), np.zeros(4), np.zeros(BANK.lsf.shape[1])
    n = envelope.neighbours(BANK.tables, 0, 61.0, 90.0, idx, w)
    lg = envelope.envelope_at(BANK.tables, idx, w, n, 12.0, -1.0, out)
    assert n == 4 and np.isfinite(lg) and w[:n].sum() == pytest.approx(1.0)
