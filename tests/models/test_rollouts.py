"""Rollout crops (models.rollouts, train --rollouts): the network's own free-running notes as inputs, the
real note time-warped onto their phase as targets."""
from __future__ import annotations

import numpy as np
import pytest

from models.crops import make_batch, make_crop
from models.dataset import Note
from models.rollouts import RolloutBank, align_real, lag_track
from realtime.model import mulaw

SR = 16000


def tone(hz: float, n: int, phase0: float = 0.0) -> np.ndarray:
    ph = 2 * np.pi * hz * np.arange(n) / SR + phase0
    return (0.3 * np.sin(ph) + 0.1 * np.sin(2 * ph + 0.4)).astype(np.float32)


def corr(a, b) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


@pytest.mark.parametrize("cents", [-30.0, 8.0, 25.0])
@pytest.mark.parametrize("hz", [110.0, 261.6, 659.3])
def test_the_real_note_is_warped_onto_a_detuned_rollouts_phase(hz, cents):
    """A rollout a few cents off drifts a period or more from the real note within 0.75 s; aligned, the
    real note is in phase with it throughout (and the raw one is not)."""
    real = tone(hz, 30000)
    offset = 5000
    r = 2 ** (cents / 1200)
    x = tone(hz * r, 12000, phase0=2 * np.pi * hz * offset / SR)  # starts in phase with the real note at offset
    y = align_real(x, real, offset, SR / hz)
    tail = slice(6000, 12000)
    assert corr(x[tail], y[tail]) > 0.99
    assert corr(x[tail], real[offset:offset + 12000][tail]) < 0.9
    centres, lags = lag_track(x, real, offset, SR / hz)
    assert centres[-1] > 11000
    assert lags[-1] == pytest.approx((r - 1) * centres[-1], rel=0.05, abs=1.0)  # followed, not wrapped


def test_an_in_phase_rollout_gets_the_real_note_itself():
    real = tone(220.0, 20000)
    y = align_real(real[4000:12000].copy(), real, 4000, SR / 220.0)
    np.testing.assert_allclose(y, real[4000:12000], atol=1e-6)


def test_a_rollout_crop_reads_its_inputs_from_the_rollout_and_scores_the_real_note():
    real = tone(220.0, 20000)
    roll = real.copy()
    roll[8000:14000] = tone(233.1, 6000)  # the rollout: another tone from 8000 on
    kw = dict(onset=0, release=20000, pitch=57, sample_rate=SR, context=2000, window=4000, start=9000)
    ins, tgt, loc = make_crop(real, rng=np.random.default_rng(1), input_audio=roll, **kw)
    ins0, tgt0, loc0 = make_crop(real, rng=np.random.default_rng(1), **kw)
    np.testing.assert_array_equal(tgt, tgt0)  # targets: the real note
    begin = 9000 - 2000
    np.testing.assert_array_equal(ins, mulaw.encode(roll[begin - 1:begin - 1 + 6000]))  # inputs: the rollout
    assert not np.array_equal(loc, loc0)  # the lag reads the inputs, as an engine reads what it generated
    assert np.array_equal(loc[:3], loc0[:3])  # gate, f0 sin/cos: the note's


def test_a_batch_mixes_rollout_crops_and_plain_ones():
    real = tone(220.0, 20000)
    roll = real[::-1].copy()
    notes = [Note(real, 0, 57, 100, 0, 20000, True, "a.wav")]
    kw = dict(sample_rate=SR, context=1000, window=2000, local=("gate",))
    b = make_batch(notes, [0, 0], rng=np.random.default_rng(0), overlays=[(real, roll, 10000), None], **kw)
    np.testing.assert_array_equal(b.inputs[0], mulaw.encode(roll[10000 - 1001:10000 - 1001 + 3000]))
    np.testing.assert_array_equal(b.targets[0], mulaw.encode(real[10000 - 1000:10000 + 2000]))
    assert b.pitch[0] == 57 and b.velocity[0] == pytest.approx(100 / 127)


def small_bank(files, length=3000) -> RolloutBank:
    k = len(files)
    rng = np.random.default_rng(0)
    return RolloutBank(np.array(["d"] * k), np.array(files), np.full(k, 2500, np.int64),
                       rng.uniform(-0.1, 0.1, (k, length)).astype(np.float32),
                       rng.uniform(-0.1, 0.1, (k, length)).astype(np.float32))


def test_bank_round_trips_and_training_takes_only_training_notes(tmp_path):
    from models.train import RolloutSource, rollout_source

    bank = small_bank(["a.wav", "held.wav", "b.wav"])
    bank.save(tmp_path / "bank.npz")
    back = RolloutBank.load(tmp_path / "bank.npz")
    np.testing.assert_array_equal(back.rollout, bank.rollout)
    assert list(back.file) == ["a.wav", "held.wav", "b.wav"] and len(back) == 3
    notes = [Note(tone(220.0, 12000), 0, 57, 100, 500, 11000, True, f) for f in ("b.wav", "a.wav")]
    src = RolloutSource(back, notes)
    assert sorted(i for _, i in src.rows) == [0, 1]  # held.wav is no training note
    rng = np.random.default_rng(1)
    for _ in range(20):
        i, (tgt, inp, start) = src.crop(rng, 2000)
        j = [j for j, ii in src.rows if ii == i][0]
        t0 = 500 + 2500
        assert t0 <= start <= t0 + 3000 - 2000  # the scored window lies within the rollout
        np.testing.assert_array_equal(inp[t0:t0 + 3000], back.rollout[j])
        np.testing.assert_array_equal(tgt[t0:t0 + 3000], back.aligned[j])
        np.testing.assert_array_equal(tgt[:t0], notes[i].audio[:t0])
    with pytest.raises(ValueError, match="none of its 1 rollouts"):
        rollout_source(str(tmp_path / "none.npz") if False else _save(tmp_path, small_bank(["x.wav"])), notes)


def _save(tmp_path, bank) -> str:
    p = str(tmp_path / "x.npz")
    bank.save(p)
    return p


@pytest.mark.slow
def test_rollouts_of_the_shipped_model_continue_the_note_they_were_forced_with():
    """A rollout of the shipped model from a real snippet (its seed bank's strings at MIDI 60, forced up
    to 100 ms) carries on at the snippet's level and pitch; the same seed gives the same samples, another
    seed others."""
    from models.rollouts import rollout
    from realtime.engine.numba_engine import NumbaEngine
    from realtime.model.model_file import load_model

    m = load_model("models/default/model.npz")
    inst = list(m.config.conditioning.instruments).index("strings")
    snippet = mulaw.decode(m.seedbank.lookup(inst, 60, 80)).astype(np.float32)  # stored as mu-law classes
    note = Note(np.asarray(snippet, np.float32), inst, 60, 80, 0, len(snippet), True, "s.wav")
    e = NumbaEngine(m, seed=0, max_block=4096)
    r1 = rollout(e, note, 1600, 4800, 0.5, 0.5, 0.15, seed=7)
    np.testing.assert_array_equal(r1, rollout(e, note, 1600, 4800, 0.5, 0.5, 0.15, seed=7))
    assert not np.array_equal(r1, rollout(e, note, 1600, 4800, 0.5, 0.5, 0.15, seed=8))
    db = lambda x: 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))  # noqa: E731
    assert abs(db(r1[:320]) - db(snippet[1280:1600])) < 6.0
    from models.dataset import estimate_f0

    f0 = estimate_f0(r1[:1600], SR)
    assert f0 is not None and abs(1200 * np.log2(f0 / 261.63)) < 50


def one_hot_logits(classes: np.ndarray, sharp: float = 50.0):
    import torch

    lg = torch.full((1, 256, len(classes)), -sharp)
    lg[0, torch.from_numpy(classes), torch.arange(len(classes))] = sharp
    return lg


def test_spectral_loss_is_phase_blind_and_hears_level_and_brightness():
    """The expected samples of logits peaked on a tone: ~0 against that tone, about as small against the
    tone half a period later (where the cross-entropy is huge), up to ln(100) against it 20 dB quieter,
    and more against a brighter tone of the same level (ln(100) ~ 4.6 where the quiet target sounds)."""
    import torch
    import torch.nn.functional as F

    from models.train import mel_matrix, spectral_loss

    fb = mel_matrix(SR, torch.device("cpu"))
    x = tone(220.0, 4096)
    k = mulaw.encode(x)
    lg = one_hot_logits(k)
    t = lambda a: torch.from_numpy(mulaw.encode(a))[None]  # noqa: E731
    same = float(spectral_loss(lg, t(x), fb))
    shifted = tone(220.0, 4096, phase0=np.pi)
    assert same < 0.01
    assert float(spectral_loss(lg, t(shifted), fb)) < 0.1
    assert float(F.cross_entropy(lg, t(shifted))) > 20.0
    quiet = float(spectral_loss(lg, t(x * 0.1), fb))
    assert 2.0 < quiet < np.log(100.0) + 0.1  # ln(100) where the target sounds; bands both leave empty: 0
    ph = 2 * np.pi * 220.0 * np.arange(4096) / SR
    bright = (0.3 * np.sin(ph) + 0.1 * np.sin(9 * ph)).astype(np.float32)
    assert float(spectral_loss(lg, t(bright), fb)) > 0.5 > 50 * same


def test_rollout_batch_loss_is_cross_entropy_on_plain_crops_plus_the_spectral_term_on_rollout_crops():
    import torch
    import torch.nn.functional as F

    from models.train import batch_logits, mel_matrix, rollout_batch_loss, spectral_loss
    from models.wavenet import WaveNet
    from realtime.model.config import ConditioningSpec, WaveNetConfig

    torch.manual_seed(0)
    cfg = WaveNetConfig(8, 8, 3, 1, SR, conditioning=ConditioningSpec(instruments=("a",), local=("gate",)))
    model = WaveNet(cfg)
    real = tone(220.0, 20000)
    notes = [Note(real, 0, 57, 100, 0, 20000, True, "a.wav")]
    b = make_batch(notes, [0, 0, 0], SR, cfg.receptive_field - 1, 1024, np.random.default_rng(0),
                   local=("gate",), overlays=[None, (real, real[::-1].copy(), 9000), None])
    assert list(b.rollout) == [False, True, False]
    fb = mel_matrix(SR, torch.device("cpu"))
    loss, spec = rollout_batch_loss(model, b, torch.device("cpu"), None, fb, 0.3)
    lg, tg = batch_logits(model, b, torch.device("cpu"))
    ce = F.cross_entropy(lg[[0, 2]], tg[[0, 2]])
    sl = spectral_loss(lg[[1]], tg[[1]], fb)
    assert spec == pytest.approx(sl.item(), rel=1e-5)
    assert loss.item() == pytest.approx((ce + 0.3 * sl).item(), rel=1e-5)
    grads = torch.autograd.grad(spectral_loss(*[a[[1]] for a in batch_logits(model, b, torch.device("cpu"))], fb),
                                list(model.parameters()), allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0  # the spectral term trains the network


def test_a_file_that_is_no_bank_is_refused_by_name(tmp_path):
    p = tmp_path / "other.npz"
    np.savez(p, x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a rollout bank"):
        RolloutBank.load(p)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz: not a rollout bank"):
        RolloutBank.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        RolloutBank.load(tmp_path / "missing.npz")


def test_the_bank_builder_names_a_missing_model_in_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "models.rollouts", str(tmp_path / "none.npz"), str(tmp_path / "b.npz"),
                        "--data", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "none.npz" in r.stderr and "Traceback" not in r.stderr
