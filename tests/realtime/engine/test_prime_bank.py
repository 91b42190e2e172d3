"""Prepared re-prime states (realtime.engine.prime_bank): a note-on copies, never computes; the states
depend on the model and the snippet only, so live takes, renders and replays land the same prime at the
same sample whoever made it; one BLAS thread while priming."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import small_model, write_preset

from realtime.control.presets import load_preset
from realtime.engine import blas, priming
from realtime.engine.prime_bank import SILENCE, PrimeBank
from realtime.model.model_file import SeedBank
from realtime.offline.render import Session, render_timeline

NOTES = (40, 52, 64, 76)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = small_model(seed=4)
    rng = np.random.default_rng(3)
    m.seedbank = SeedBank(rng.integers(0, 256, (8, 300)), np.arange(8) % 2, np.repeat(NOTES, 2), np.full(8, 90))
    m.save(tmp_path_factory.mktemp("bank") / "m.npz")
    return m


def session(model, tmp_path, extra: str = "") -> Session:
    """A re-priming session (no watchdog: its recoveries would re-prime too, unasked)."""
    if "[watchdog]" not in extra:
        extra += "\n[watchdog]\nenabled = false"
    preset = write_preset(tmp_path / "p.toml", model.path, extra)
    preset.write_text(preset.read_text().replace('reprime = "off"', 'reprime = "note_on"'))
    return Session.open(load_preset(preset), model)


def test_prepared_and_computed_on_first_use_are_the_same_bits(model, tmp_path):
    prepared = session(model, tmp_path).controller.primes
    assert len(prepared) == 9 and not prepared.ready
    prepared.prepare(threads=2)
    assert prepared.ready and prepared.computed_late == 0 and prepared.nbytes > 0
    lazy = session(model, tmp_path).controller.primes
    for k in [SILENCE, *range(8)]:
        a, b = prepared.get(k), lazy.get(k)
        np.testing.assert_array_equal(a.queues, b.queues)
        np.testing.assert_array_equal(a.lag_ring, b.lag_ring)
        assert (a.next_class, a.lag_pos) == (b.next_class, b.lag_pos)
    assert lazy.computed_late == 9 and prepared.computed_late == 0


def test_a_note_on_copies_a_prepared_state_and_runs_no_network_pass(model, tmp_path, monkeypatch):
    s = session(model, tmp_path)
    s.prepare_live()

    def no_pass(*a, **k):
        raise AssertionError("a note-on ran the network over a prime")

    monkeypatch.setattr(priming, "layer_histories", no_pass)
    out = np.zeros(256, np.float32)
    for note in NOTES:
        for velocity in (30, 120):  # the state does not depend on the velocity, bend or what played before
            s.apply_midi(bytes([0xE0, 0, 0x30 + velocity // 8]))
            s.apply_midi(bytes([0x90, note, velocity]))
            k = s.controller.primes.index(0, note, velocity)
            np.testing.assert_array_equal(s.engine.queues, s.controller.primes.get(k).queues)
            s.generate(out)
            s.apply_midi(bytes([0x80, note, 0]))
            s.generate(out)
    assert s.controller.state.reprimes == 2 * len(NOTES) and s.controller.primes.computed_late == 0


def test_watchdog_recovery_without_a_seed_bank_uses_the_silence_state(tmp_path):
    m = small_model(seed=4)
    m.save(tmp_path / "m.npz")
    s = Session.open(load_preset(write_preset(tmp_path / "p.toml", m.path)), m)
    s.controller.recover()
    np.testing.assert_array_equal(s.engine.queues, s.controller.primes.get(SILENCE).queues)


@pytest.mark.parametrize("block", [37, 1024])
def test_renders_with_reprimes_do_not_depend_on_blocks_or_on_preparing(model, tmp_path, block):
    """The prime lands at the note-on's sample: block sizes and a prepared bank change nothing."""
    tl = []
    for i, note in enumerate(NOTES * 2):
        tl += [(1000 + 3000 * i, bytes([0x90, note, 60 + 8 * i])), (2500 + 3000 * i, bytes([0x80, note, 0]))]
    tl.append((13000, bytes([0xC0, 1])))
    ref = render_timeline(session(model, tmp_path), tl, 26000, block=256)
    s = session(model, tmp_path)
    if block == 1024:
        s.prepare_live()
    out = render_timeline(s, tl, 26000, block=block)
    assert s.controller.state.reprimes == 8
    np.testing.assert_array_equal(out, ref)


def test_poly_voices_share_one_bank(model, tmp_path):
    s = session(model, tmp_path, "[sound]\nvoices = 3\n[watchdog]\nenabled = false")
    try:
        s.prepare_live()
        for note in NOTES[:3]:
            s.apply_midi(bytes([0x90, note, 100]))
        for v, note in enumerate(NOTES[:3]):
            k = s.controller.primes.index(0, note, 100)
            np.testing.assert_array_equal(s.engine.voice(v).queues, s.controller.primes.get(k).queues)
        assert s.controller.primes.computed_late == 0
    finally:
        s.engine.close()


def test_bank_states_are_read_only(model, tmp_path):
    bank = PrimeBank(session(model, tmp_path).engine)
    st = bank.get(0)
    with pytest.raises(ValueError):
        st.queues[0, 0] = 1.0


def test_one_blas_thread_is_reference_counted_and_restored():
    before = blas.blas_threads()
    with blas.one_blas_thread():
        assert blas.blas_threads() == (1 if before else 0)
        with blas.one_blas_thread():
            assert blas.blas_threads() == (1 if before else 0)
        assert blas.blas_threads() == (1 if before else 0)  # the outer caller still holds it
    assert blas.blas_threads() == before
