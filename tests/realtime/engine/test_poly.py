"""Polyphony: batched voices are independent and equal to single-voice engines; the voice allocator."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import NEEDS_BF16DOT, NEEDS_INT8DOT, small_model

from realtime.control.voices import FREE, HELD, RELEASED, VoiceAllocator
from realtime.engine.numba_engine import NumbaEngine
from realtime.engine.poly_engine import PolyEngine
from realtime.model import mulaw

N = 1200
SEED = 20


@pytest.fixture(scope="module")
def model():
    return small_model(seed=4)


def controls(v: int) -> dict:
    """A different note, instrument, velocity, glide and temperature per voice."""
    return dict(note=50.0 + 3 * v, instrument=v % 3, velocity=70 + 5 * v, glide=37 * v, temperature=0.75 + 0.05 * v)


def setup_voice(set_note, set_conditioning, set_temperature, v: int) -> None:
    c = controls(v)
    set_note(gate=1.0, pitch=c["note"])
    set_conditioning(pitch=c["note"], instrument=c["instrument"], velocity=c["velocity"], glide_samples=c["glide"])
    set_temperature(c["temperature"])


def single(model, v: int, precision: str = "fp32") -> np.ndarray:
    """Voice v's controls on a single-voice NumbaEngine seeded like the poly engine's voice v."""
    e = NumbaEngine(model, seed=SEED + v, precision=precision)
    setup_voice(e.set_note, e.set_conditioning, e.set_temperature, v)
    first = e.generate(500).copy()
    e.set_note(pitch=controls(v)["note"] + 2, glide_s=0.01)  # a mid-run change
    return np.concatenate([first, e.generate(N - 500)])


def poly(model, voices: int, precision: str = "fp32", threads: int = 1, parallel: str = "threads",
         only: int | None = None, max_block: int = 256) -> np.ndarray:
    """(voices, N) outputs of a PolyEngine running the same per-voice script (only voice ``only`` if given)."""
    p = PolyEngine(model, voices=voices, seed=SEED, precision=precision, threads=threads, parallel=parallel,
                   max_block=max_block)
    try:
        if only is not None:
            p.active[:] = False
            p.active[only] = True
        for v in range(voices):
            setup_voice(lambda **k: p.set_note(v, **k), lambda **k: p.set_conditioning(v, **k),
                        lambda t: p.set_temperature(v, t), v)
        first = p.generate_voices(500).copy()
        for v in range(voices):
            p.set_note(v, pitch=controls(v)["note"] + 2, glide_s=0.01)
        return np.concatenate([first, p.generate_voices(N - 500)], axis=1)
    finally:
        p.close()


@pytest.fixture(scope="module")
def singles(model):
    return {v: single(model, v) for v in range(8)}


@pytest.mark.parametrize("voices", [1, 4, 8])
def test_batched_voice_equals_single_voice_engine(model, singles, voices):
    out = poly(model, voices)
    for v in range(voices):
        assert len(np.unique(out[v])) > 20  # really sampling
        np.testing.assert_array_equal(out[v], singles[v])


@pytest.mark.parametrize("k", [0, 3, 7])
def test_voice_alone_equals_voice_among_others(model, k):
    alone = poly(model, 8, only=k)
    among = poly(model, 8)
    np.testing.assert_array_equal(alone[k], among[k])
    assert not alone[np.arange(8) != k].any()  # inactive voices are silent
    one = poly(model, 1) if k == 0 else None
    if one is not None:
        np.testing.assert_array_equal(one[0], among[0])


@pytest.mark.parametrize("parallel", ["threads", "prange"])
@pytest.mark.parametrize("voices", [2, 5, 8])
def test_two_threads_equal_one_thread(model, voices, parallel):
    np.testing.assert_array_equal(poly(model, voices, threads=2, parallel=parallel), poly(model, voices))


def test_uneven_thread_split_gives_the_same_samples(model):
    p1 = PolyEngine(model, voices=6, seed=SEED, threads=2)
    p2 = PolyEngine(model, voices=6, seed=SEED)
    try:
        for p in (p1, p2):
            for v in range(6):
                p.set_note(v, gate=1.0, pitch=55 + v)
        outs1, outs2 = [], []
        for share in (0.5, 0.2, 0.9, 0.6):
            p1.share = share
            outs1.append(p1.generate_voices(300))
            outs2.append(p2.generate_voices(300))
        np.testing.assert_array_equal(np.concatenate(outs1, 1), np.concatenate(outs2, 1))
    finally:
        p1.close()


@pytest.mark.parametrize("precision", ["int8", "bf16", pytest.param("bf16dot", marks=NEEDS_BF16DOT),
                                       pytest.param("int8dot", marks=NEEDS_INT8DOT)])
def test_reduced_precision_batch_equals_single(model, precision):
    out = poly(model, 5, precision=precision)  # 5 voices: pairs + an odd one, staged int8/bf16 rows
    for v in (0, 3, 4):
        np.testing.assert_array_equal(out[v], single(model, v, precision))


def test_mix_is_the_sum_and_levels_follow_voices(model):
    p = PolyEngine(model, voices=3, seed=SEED)
    for v in range(3):
        p.set_note(v, gate=1.0, pitch=60 + v)
    p.active[1] = False
    mix = p.generate(400)
    np.testing.assert_allclose(mix, p.voice_out.sum(axis=0), rtol=0, atol=1e-6)
    assert p.levels[1] == 0 and p.levels[0] > 0 and p.levels[2] > 0
    np.testing.assert_array_equal(p.levels, np.abs(p.voice_out).max(axis=1))


def test_inactive_voice_state_is_frozen(model):
    p = PolyEngine(model, voices=2, seed=SEED)
    for v in range(2):
        p.set_note(v, gate=1.0, pitch=60)
    p.generate(100)
    q = p.state["queues"][1].copy()
    p.active[1] = False
    p.generate(300)
    np.testing.assert_array_equal(p.state["queues"][1], q)
    p.active[1] = True
    ref = PolyEngine(model, voices=2, seed=SEED)
    for v in range(2):
        ref.set_note(v, gate=1.0, pitch=60)
    ref.generate(100)
    np.testing.assert_array_equal(p.generate_voices(200)[1], ref.generate_voices(200)[1])


def test_reprime_in_a_batch_equals_single_voice_reprime(model):
    snippet = mulaw.encode((0.4 * np.sin(2 * np.pi * 330 * np.arange(600) / 16000)).astype(np.float32))
    e = NumbaEngine(model, seed=SEED + 1)
    e.set_note(gate=1.0, pitch=64)
    a = [e.generate(300).copy()]
    e.reprime(snippet, crossfade=200)
    a.append(e.generate(500))
    p = PolyEngine(model, voices=3, seed=SEED)
    for v in range(3):
        p.set_note(v, gate=1.0, pitch=64 if v == 1 else 50)
    b = [p.generate_voices(300)[1].copy()]
    p.reprime(1, snippet, crossfade=200)
    b.append(p.generate_voices(500)[1])
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


# ---------------------------------------------------------------- allocator
def test_allocator_uses_free_voices_then_steals_the_oldest():
    a = VoiceAllocator(3)
    got = [a.note_on(n) for n in (60, 62, 64)]
    assert [g.voice for g in got] == [0, 1, 2] and all(g.was_free for g in got)
    s = a.note_on(65)  # all held: steal the oldest (60 on voice 0)
    assert (s.voice, s.stolen, s.was_free) == (0, 60, False)
    s2 = a.note_on(67)  # next oldest: 62 on voice 1
    assert (s2.voice, s2.stolen) == (1, 62)
    assert a.voice_of(65) == 0 and a.voice_of(60) is None


def test_allocator_steals_released_voices_before_held_ones():
    a = VoiceAllocator(3)
    for n in (60, 62, 64):
        a.note_on(n)
    assert a.note_off(64) == 2  # the newest note, released
    s = a.note_on(70)
    assert (s.voice, s.stolen) == (2, 64)  # released beats older held voices


def test_allocator_release_silence_and_reuse():
    a = VoiceAllocator(2, silence_level=1e-3, silence_hold=100, max_release=10_000)
    v = a.note_on(60).voice
    assert a.state(v) == HELD
    assert a.note_off(61) is None  # not playing
    assert a.note_off(60) == v and a.state(v) == RELEASED
    levels = np.zeros(2)
    levels[v] = 0.2
    assert a.update(levels, 64) == [] and a.state(v) == RELEASED  # still sounding
    levels[v] = 1e-5
    assert a.update(levels, 64) == []  # quiet for 64 < 100 samples
    assert a.update(levels, 64) == [v] and a.state(v) == FREE  # quiet for 128
    again = a.note_on(72)
    assert again.voice == v and again.was_free  # the lowest free voice is reused


def test_allocator_frees_after_max_release_and_retriggers():
    a = VoiceAllocator(2, silence_hold=100, max_release=300)
    v = a.note_on(60).voice
    r = a.note_on(60)
    assert r.retrigger and r.voice == v and a.busy() == [v]  # same note: same voice
    a.note_off(60)
    loud = np.ones(2)
    assert a.update(loud, 200) == []
    assert a.update(loud, 200) == [v]  # never silent, freed after max_release
    a.note_on(61)
    a.note_on(62)
    assert a.release_all() == [0, 1] and all(a.state(i) == RELEASED for i in range(2))
    with pytest.raises(ValueError):
        VoiceAllocator(0)
