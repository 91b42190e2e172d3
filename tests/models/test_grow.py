"""Growing a trained model wider: the same logits at first, every new weight then learns, training resumes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_train import train
from tiny_data import TINY

from models.grow import grow_checkpoint, widen
from models.wavenet import WaveNet
from realtime.model.config import WaveNetConfig
from realtime.model.model_file import load_model

B, T = 3, 300


def trained_like(seed: int = 0) -> WaveNet:
    """A small model whose every weight, bias included, is non-zero (as a trained one's are)."""
    torch.manual_seed(seed)
    m = WaveNet(WaveNetConfig.from_dict(TINY))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def batch(model: WaveNet, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 256, (B, T), generator=g)
    gvec = model.global_vector(torch.tensor([55, 60, 66]), torch.tensor([0, 1, 0]), torch.tensor([0.2, 0.8, 1.0]))
    local = torch.randn(B, len(model.cfg.conditioning.local), T, generator=g)
    return inputs, gvec, local


@pytest.mark.parametrize("residual,skip", [(8, 16), (12, 16), (8, 40), (16, 32)])
def test_grown_model_computes_the_same_logits(residual, skip):
    old = trained_like()
    new = widen(old, residual, skip)
    assert (new.cfg.residual_channels, new.cfg.skip_channels) == (residual, skip)
    inputs, _, local = batch(old)
    with torch.no_grad():
        a = old(inputs, batch(old)[1], local)
        b = new(inputs, batch(new)[1], local)
    assert a.abs().max() > 1.0  # a model that says something
    torch.testing.assert_close(b, a, rtol=0, atol=2e-5)


def test_every_new_weight_learns_within_two_steps():
    old = trained_like()
    new = widen(old, 16, 32)
    before = {k: v.clone() for k, v in new.state_dict().items()}
    opt = torch.optim.SGD(new.parameters(), lr=1e-2)
    inputs, _, local = batch(new)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(new(inputs, batch(new)[1], local)[:, :, :-1], inputs[:, 1:]).backward()
        opt.step()
    after = new.state_dict()
    r, s, R, S = old.cfg.residual_channels, old.cfg.skip_channels, new.cfg.residual_channels, new.cfg.skip_channels
    layers = range(new.cfg.n_layers)
    new_blocks = {  # the blocks that started at zero (or, for skip biases, at a constant)
        "embed.weight": (slice(None), slice(r, R)), "out1.weight": (slice(None), slice(s, S)),
        "out2.weight": (slice(None), slice(s, S)),
        **{f"convs.{i}.weight": (slice(r, R),) for i in layers},
        **{f"res.{i}.weight": (slice(r, R),) for i in layers[:-1]},  # the last layer's residual feeds nothing
        **{f"skip.{i}.weight": (slice(s, S),) for i in layers},
        **{f"global_proj.{i}.weight": (slice(r, R),) for i in layers},
        **{f"local_proj.{i}.weight": (slice(r, R),) for i in layers},
    }
    assert all((before[n][idx] == 0).all() for n, idx in new_blocks.items())
    stuck = [n for n, idx in new_blocks.items() if (after[n][idx] == before[n][idx]).all()]
    assert not stuck


def test_shrinking_is_refused():
    with pytest.raises(ValueError, match="can only grow: R8/S16 -> R4/S16"):
        widen(trained_like(), 4, 16)


@pytest.mark.slow
def test_a_grown_checkpoint_resumes_training(tiny_data, tmp_path):
    small, wide = tmp_path / "small", tmp_path / "wide"
    r = train("--data", str(tiny_data), "--out", str(small), "--config", str(tiny_data / "config.json"),
              "--max-steps", "20", "--lr", "3e-3")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = grow_checkpoint(small / "ckpt.pt", wide / "ckpt.pt", 12, 24)
    assert (cfg.residual_channels, cfg.skip_channels) == (12, 24)
    r = train("--data", str(tiny_data), "--out", str(wide), "--resume", "--max-steps", "30", "--lr", "3e-3",
              "--eval-every", "100")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming at step 20" in r.stdout and "config R12/S24" in r.stdout
    m = load_model(wide / "model.npz")
    assert (m.config.residual_channels, m.config.skip_channels, m.metadata["training"]["steps"]) == (12, 24, 30)
    hist = torch.load(wide / "ckpt.pt", weights_only=False)["history"]
    grown = [h for h in hist if "grown" in h]
    assert [g["grown"] for g in grown] == ["R8/S16 -> R12/S24"] and grown[0]["step"] == 20


@pytest.mark.slow
def test_a_checkpoint_given_the_level_input_resumes_training_and_ships_a_level_bank(tiny_data, tmp_path):
    small, lvl = tmp_path / "small", tmp_path / "level"
    r = train("--data", str(tiny_data), "--out", str(small), "--config", str(tiny_data / "config.json"),
              "--max-steps", "10", "--lr", "3e-3", "--weight-ema", "0.9")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = grow_checkpoint(small / "ckpt.pt", lvl / "ckpt.pt", None, None, ("level",))
    assert cfg.conditioning.local == ("gate", "f0_sin", "f0_cos", "level")
    ckpt = torch.load(lvl / "ckpt.pt", weights_only=False)
    assert "weight_ema" not in ckpt  # the old average has no level weights
    assert ckpt["history"][-1]["grown"] == "local + level"
    r = train("--data", str(tiny_data), "--out", str(lvl), "--resume", "--max-steps", "14", "--eval-every", "100")
    assert r.returncode == 0, r.stderr[-2000:]
    m = load_model(lvl / "model.npz")
    assert m.config.conditioning.local[-1] == "level" and len(m.levelbank) == 24
    assert m.metadata["training"]["steps"] == 14
    with pytest.raises(ValueError, match="nothing to grow"):
        grow_checkpoint(small / "ckpt.pt", tmp_path / "x" / "ckpt.pt", None, None)
