"""Output does not depend on how generation is split into blocks; priming equals teacher forcing."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import small_model

from realtime.engine.numba_engine import NumbaEngine
from realtime.model import mulaw

N = 4000


def generate_in_blocks(block: int) -> np.ndarray:
    e = NumbaEngine(small_model(seed=5), seed=7, max_block=1024)
    e.set_note(gate=1.0, pitch=62.0)
    e.set_conditioning(pitch=62, instrument=1, velocity=80, glide_samples=300)
    out = np.empty(N, np.float32)
    pos = 0
    while pos < N:
        m = min(block, N - pos)
        e.generate(m, out[pos:pos + m])
        pos += m
    return out


@pytest.fixture(scope="module")
def whole() -> np.ndarray:
    return generate_in_blocks(N)


@pytest.mark.parametrize("block", [1, 37, 256])
def test_block_size_does_not_change_output(block, whole):
    assert len(np.unique(whole)) > 20
    np.testing.assert_array_equal(generate_in_blocks(block), whole)


@pytest.mark.parametrize("n", [20, 40, 126, 127, 900])  # shorter than a dilation, than the RF (127), =, longer
def test_parallel_priming_equals_teacher_forcing(n):
    model = small_model(seed=6)
    assert model.config.receptive_field == 127
    prime = (0.4 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000)).astype(np.float32)
    a = NumbaEngine(model, seed=3)
    a.prime(prime)
    b = NumbaEngine(model, seed=3)
    classes = mulaw.encode(prime)
    b.teacher_force(np.concatenate(([mulaw.SILENCE], classes[:-1])))
    b.ints[0] = classes[-1]
    b.ctrl[:] = a.ctrl  # priming leaves the control state where it was
    b.rng = np.random.Generator(np.random.PCG64(3))
    np.testing.assert_array_equal(a.generate(1500), b.generate(1500))


def test_priming_changes_what_follows():
    model = small_model(seed=6)
    outs = []
    for hz in (0, 330):
        e = NumbaEngine(model, seed=3)
        if hz:
            e.prime((0.5 * np.sin(2 * np.pi * hz * np.arange(500) / 16000)).astype(np.float32))
        outs.append(e.generate(200))
    assert not np.array_equal(*outs)


def test_keyed_prime_is_cached_and_identical():
    model = small_model(seed=6)
    e = NumbaEngine(model, seed=3)
    snip = mulaw.encode((0.4 * np.sin(2 * np.pi * 330 * np.arange(300) / 16000)).astype(np.float32))
    e.reprime(snip, 40, key=("seed", 0, 64))
    first = e.queues.copy()
    assert len(e._prime_cache) == 1
    e.generate(500)
    e.set_conditioning(velocity=10)  # a later note with another velocity reuses the first state
    e.reprime(snip, 40, key=("seed", 0, 64))
    np.testing.assert_array_equal(e.queues, first)
    e.reprime(snip, 40)  # unkeyed: computed now, under the current conditioning
    assert not np.array_equal(e.queues, first)
