"""Free-running trajectories with gradients (models.trajectory): the stepped network is the trained network,
and the loss reaches later samples through the lag input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.dataset import Note, midi_to_hz
from models.trajectory.reference import MelLoss, StatsLoss, cut_segments, free_run
from models.trajectory.train import main
from models.wavenet import WaveNet
from realtime.model import local_cond, mulaw
from realtime.model.config import LOCAL_CHANNELS, ConditioningSpec, WaveNetConfig

SR = 16000
PITCH = 62


def tiny_model(seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    cfg = WaveNetConfig(8, 16, 5, 2, SR, conditioning=ConditioningSpec(
        pitch_dim=4, instrument_dim=4, velocity=True, local=("gate", "f0_sin", "f0_cos", "lag"),
        instruments=("sine", "saw")))
    m = WaveNet(cfg)
    with torch.no_grad():  # lag weights large enough to matter
        for proj in m.local_proj:
            proj.weight.mul_(4.0)
    return m


def notes(n: int = 12000) -> list[Note]:
    t = np.arange(n) / SR
    ph = (midi_to_hz(PITCH) * t) % 1.0
    env = np.exp(-t / 0.4)
    a = (0.4 * np.sin(2 * np.pi * ph) * env).astype(np.float32)
    b = (0.3 * (2 * ph - 1) * env).astype(np.float32)
    return [Note(a, 0, PITCH, 90, 0, n - 1000, True, "a.wav"), Note(b, 1, PITCH, 60, 0, n - 1000, True, "b.wav")]


@pytest.mark.parametrize("start", [1500, 4000])
def test_teacher_forced_steps_give_the_parallel_forwards_logits(start):
    """Fed the real samples instead of its draws, the stepped network (queues from a parallel prefix, the lag
    from its own ring) gives the logits of WaveNet.forward over the same crop."""
    m = tiny_model()
    ns = notes()
    n = 300
    seg = cut_segments(ns, [start, start], PITCH, n, SR, np.random.default_rng(0))
    forced = mulaw.encode(seg.real)
    with torch.no_grad():
        _, got = free_run(m, seg, PITCH, [0, 1], [0.7, 0.5], 0.5, forced=forced)
    full = np.concatenate((seg.inputs, forced[:, :-1]), 1)
    feats = seg.feats.copy()
    for b in range(2):
        local_cond.lag_from_reset(full[b].copy(), feats[b])
    loc = torch.from_numpy(feats[:, :, [0, 1, 2, local_cond.LAG]]).transpose(1, 2)
    with torch.no_grad():
        ref = m(torch.from_numpy(full), m.global_vector(torch.full((2,), float(PITCH)), torch.tensor([0, 1]),
                                                         torch.tensor([0.7, 0.5])), loc)[:, :, -n:]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=2e-4)


@pytest.mark.slow  # not in make test-fast: a free run with autograd, ~10 s
def test_the_trajectory_loss_reaches_later_samples_through_the_lag():
    """The free run's spectral loss has a finite gradient, and the feedback through the lag changes it."""
    m = tiny_model(1)
    seg = cut_segments(notes(), [3000, 3000], PITCH, 1024, SR, np.random.default_rng(1))
    grads = []
    for feedback in (True, False):
        m.zero_grad()
        out, _ = free_run(m, seg, PITCH, [0, 1], [0.7, 0.5], 0.5, torch.Generator().manual_seed(3),
                          feedback_grad=feedback)
        MelLoss(SR)(out, torch.from_numpy(seg.real)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    with_fb, without = grads
    assert torch.isfinite(with_fb).all() and float(with_fb.norm()) > 0
    # the same draws (same uniforms): only the gradient path differs
    assert float((with_fb - without).norm()) > 1e-3 * float(with_fb.norm())


def test_the_mel_loss_is_level_and_brightness_aware_and_zero_on_the_real_note():
    t = np.arange(4096) / SR
    x = torch.tensor(0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 880 * t), dtype=torch.float32)[None]
    loss = MelLoss(SR)
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(0.1 * x, x)) > 2.5 * float(loss(0.5 * x, x)) > 0.05  # 20 dB quieter costs more than 6 dB
    bright = x + torch.tensor(0.05 * np.sin(2 * np.pi * 3000 * t), dtype=torch.float32)[None]
    assert float(loss(bright, x)) > 0.1


def vibrato_tone(depth_cents: float, phase: float, seconds: float = 0.5) -> torch.Tensor:
    """A 220 Hz tone with a 6 Hz vibrato of ``depth_cents``; its partials darken as the pitch rises."""
    t = np.arange(int(seconds * SR)) / SR
    cents = depth_cents * np.sin(2 * np.pi * 6.0 * t + phase)
    ph = 2 * np.pi * np.cumsum(220.0 * 2.0 ** (cents / 1200.0)) / SR
    x = sum(0.3 / k * np.sin(k * ph) for k in range(1, 12))
    return torch.tensor(x, dtype=torch.float32)[None]


def test_the_stats_loss_weighs_the_spread_over_time_not_its_phase_nor_the_level():
    stats, mel = StatsLoss(SR), MelLoss(SR)
    x = vibrato_tone(60.0, 0.0)
    later = vibrato_tone(60.0, np.pi)  # the same vibrato half a cycle later
    assert float(stats(x, x)) == pytest.approx(0.0, abs=1e-6)
    # level-free: 20 dB quieter changes little where every band sounds above the floor (a breathy tone)
    breathy = x + 0.03 * torch.from_numpy(np.random.default_rng(0).standard_normal(x.shape[1]).astype(np.float32))
    assert float(stats(0.1 * breathy, breathy)) < 0.1 * float(mel(0.1 * breathy, breathy))
    # phase-blind where the frame-by-frame loss is not
    assert float(stats(later, x)) < 0.25 * float(mel(later, x))
    # a steady tone against a vibrato: the spread half sees it
    steady = vibrato_tone(0.0, 0.0)
    gm, gs = stats.stats(steady, torch.tensor([1e-8]))
    rm, rs = stats.stats(x, torch.tensor([1e-8]))
    assert float((gs - rs).abs().mean()) > 5.0 * float((stats.stats(later, torch.tensor([1e-8]))[1] - rs).abs().mean())
    assert float(stats(steady, x)) > 2.0 * float(stats(later, x))


def test_the_stats_halves_are_the_timbre_descriptors():
    """StatsLoss.stats is audio_features.logmel_stats up to its framing (hop 128 against 256) and floor."""
    from models.audio_features import logmel_stats

    x = vibrato_tone(60.0, 0.0, seconds=1.0)
    m, s = StatsLoss(SR).stats(x, torch.tensor([1e-10]))
    ref = logmel_stats(x[0].numpy().astype(np.float64), SR)
    sounding = ref[:40] > -60.0  # the bands above the floor: the empty ones are round-off
    assert sounding.sum() >= 20
    np.testing.assert_allclose(m[0].numpy()[sounding], ref[:40][sounding], atol=0.6)
    np.testing.assert_allclose(s[0].numpy()[sounding], ref[40:][sounding], atol=0.6)


@pytest.mark.parametrize("flag,value", [("--loop-lowpass", "0.7"), ("--period-noise", "1.0")])
def test_an_out_of_range_engine_setting_is_one_line(tiny_data, tmp_path, capsys, flag, value):
    from models.wavenet import export_weights
    from realtime.model.model_file import ModelFile

    model = tmp_path / "m.npz"  # the model file is read first
    m = tiny_model(0)
    ModelFile(config=m.cfg, weights=export_weights(m)).save(model)
    assert main([str(model), str(tmp_path / "out.npz"), "--data", str(tiny_data), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and value in err and "\n" not in err


def test_a_missing_model_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "none.npz"), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "none.npz" in err and "\n" not in err


def test_the_level_channel_follows_each_notes_own_decay_when_asked():
    """levels=True: the level input over a free run follows the note's fitted envelope (the test notes' amplitude
    falls as exp(-t / 0.4 s): 5.4 dB over these 0.25 s), not the default one (which holds here)."""
    seg = cut_segments(notes(), [3000, 3000], PITCH, 4000, SR, np.random.default_rng(0), levels=True)
    plain = cut_segments(notes(), [3000, 3000], PITCH, 4000, SR, np.random.default_rng(0))
    col = LOCAL_CHANNELS.index("level")
    lv, lv0 = seg.feats[:, :, col], plain.feats[:, :, col]
    p = seg.inputs.shape[1] - 1
    fall_db = (lv[:, p] - lv[:, -1]) * 60.0  # level units are 60 dB
    assert ((fall_db > 4.4) & (fall_db < 6.4)).all(), fall_db
    assert (np.abs(lv0[:, p] - lv0[:, -1]) * 60.0 < 1.0).all()


def test_an_input_gain_keeps_the_function_and_makes_its_column_learn_that_much_faster():
    from models.trajectory.reference import apply_input_gains, parse_gains
    from models.wavenet import export_weights

    x = torch.from_numpy(mulaw.encode(notes()[0].audio[:600]))[None]
    g = torch.zeros(1, 4 + 4 + 1)
    g[0, 4] = 1.0
    loc = torch.rand(1, 4, 600, generator=torch.Generator().manual_seed(0))
    moved = {}
    for gain in (1.0, 8.0):
        m = tiny_model()
        before = m(x, m.global_vector(torch.tensor([62.0]), torch.tensor([0]), torch.tensor([0.7])), loc).detach()
        w0 = export_weights(m)["w_loc"].copy()
        apply_input_gains(m, parse_gains([f"lag={gain}"], m.cfg.conditioning.local))
        gv = m.global_vector(torch.tensor([62.0]), torch.tensor([0]), torch.tensor([0.7]))
        out = m(x, gv, loc)
        torch.testing.assert_close(out, before)  # the same function
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        out[0, :, -1].logsumexp(0).backward()
        opt.step()
        w1 = export_weights(m)["w_loc"]  # the products: what a model file gets
        moved[gain] = np.abs(w1 - w0).max(axis=(0, 2))  # per input column
    np.testing.assert_allclose(moved[8.0][3], 8 * moved[1.0][3], rtol=1e-3)  # the lag column (Adam's first step)
    np.testing.assert_allclose(moved[8.0][:3], moved[1.0][:3], rtol=1e-3)    # the others as before


@pytest.mark.parametrize("spec", ["level=4", "lag=0", "lag=x", "lag"])
def test_a_bad_input_gain_is_refused(spec):
    from models.trajectory.reference import parse_gains

    with pytest.raises(ValueError, match="--input-gain"):
        parse_gains([spec], ("gate", "f0_sin", "f0_cos", "lag"))
