"""Conditioning and temperature changes land at the requested sample; temperature -> 0 is argmax."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import classes_of, small_model

from realtime.engine.numba_engine import NumbaEngine

K = 777  # the change happens before sample K


def forced_logits(change) -> np.ndarray:
    """Logits over a fixed input sequence with ``change(engine)`` applied after K samples."""
    e = NumbaEngine(small_model(seed=8), seed=0)
    inputs = np.random.default_rng(0).integers(0, 256, 1500)
    a = e.teacher_force(inputs[:K])
    change(e)
    b = e.teacher_force(inputs[K:])
    return np.concatenate([a, b])


@pytest.mark.parametrize("change", [
    lambda e: e.set_conditioning(pitch=72),
    lambda e: e.set_conditioning(instrument=2),
    lambda e: e.set_conditioning(velocity=20),
    lambda e: e.set_conditioning(morph=(1, 0.5)),
    lambda e: e.set_note(gate=1.0),
    lambda e: e.set_note(pitch=75.0),
], ids=["pitch", "instrument", "velocity", "morph", "gate", "f0"])
def test_change_lands_at_the_requested_sample(change):
    base = forced_logits(lambda e: None)
    changed = forced_logits(change)
    np.testing.assert_array_equal(changed[:K], base[:K])
    assert np.abs(changed[K] - base[K]).max() > 1e-4  # differs from the very next sample on


def test_glide_reaches_target_linearly():
    e = NumbaEngine(small_model(seed=8), seed=0)
    start = e.bias.copy()
    e.set_conditioning(pitch=80, glide_samples=100)
    target = e.bias_target.copy()
    e.generate(50)
    np.testing.assert_allclose(e.bias, start + 0.5 * (target - start), atol=1e-5)
    e.generate(50)
    np.testing.assert_array_equal(e.bias, target)


def test_temperature_change_lands_at_sample_and_zero_is_argmax():
    model = small_model(seed=9, scale=1.0)
    e = NumbaEngine(model, seed=4)
    e.set_temperature(1.0)
    a = e.generate(K)
    e.set_temperature(0.0)
    b = e.generate(600)
    out = np.concatenate([a, b])
    cls = classes_of(out)
    f = NumbaEngine(model, seed=4)
    logits = f.teacher_force(np.concatenate(([128], cls[:-1])))
    is_arg = cls == logits.argmax(axis=1)
    assert is_arg[K:].all()
    assert is_arg[:K].mean() < 0.5  # sampled at T=1 before the change


def test_low_temperature_approaches_argmax():
    model = small_model(seed=9, scale=1.0)
    agreement = []
    for t in (1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-6):
        e = NumbaEngine(model, seed=1)
        e.set_temperature(t)
        cls = classes_of(e.generate(1500))
        logits = NumbaEngine(model, seed=1).teacher_force(np.concatenate(([128], cls[:-1])))
        agreement.append(float((cls == logits.argmax(axis=1)).mean()))
    assert agreement == sorted(agreement), agreement
    assert agreement[0] < 0.5 and agreement[-1] > 0.99, agreement


def test_bad_temperature_is_refused():
    e = NumbaEngine(small_model(), seed=0)
    with pytest.raises(ValueError):
        e.set_temperature(-1.0)
    with pytest.raises(ValueError):
        e.set_temperature(float("nan"))
