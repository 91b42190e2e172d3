"""Grow a trained WaveNet wider, or give it new local inputs, without changing what it computes
(Net2Net-style), to train on.

    python -m models.grow --from models/default --out models/wide --residual 64 --skip 128
    python -m models.grow --from models/default --out models/level-input --add-local level
    python -m models.grow --from models/default --out runs/lag --add-local lag

Reads ``FROM/ckpt.pt`` and writes ``OUT/ckpt.pt``, which ``models.train --out OUT --resume``
continues (with a fresh optimiser; step count, training time and history carry over, plus a
history entry that records the growth). Whether a wider model learns faster per hour of CPU than
training the small one on is the question this answers; the wider one costs more per sample to
play (see ``python -m realtime.bench``).

The new channels start silent, so the grown model's logits equal the old model's:
- new residual channels stay zero: their embedding columns and the residual rows that write them
  are zero; the layers read them through random weights (so they get gradients);
- new gated units output zero: their tanh rows (dilated, global and local projections) are zero,
  their sigmoid rows random; the residual and skip weights that read them are random;
- new skip channels hold a small positive constant (bias only; a zero would block the ReLU's
  gradient), which the first head layer reads through zero weights;
- new head units are random and the output layer reads them through zero weights.
Every new weight gets a non-zero gradient within two steps (tested).
A new local input (``--add-local level``, ``lag``) is read through zero weights: the same logits, and
gradients for the new weights at once.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from models.wavenet import WaveNet
from realtime.model.config import WaveNetConfig

#: the new skip channels' constant level, summed over layers (keeps the head's ReLU open for them)
SKIP_LEVEL = 0.05


def widen(old: WaveNet, residual: int, skip: int, seed: int = 0) -> WaveNet:
    """A WaveNet with ``residual`` / ``skip`` channels (>= the old ones) computing the same logits."""
    c = old.cfg
    r, s, R, S = c.residual_channels, c.skip_channels, int(residual), int(skip)
    if R < r or S < s:
        raise ValueError(f"can only grow: R{r}/S{s} -> R{R}/S{S}")
    torch.manual_seed(seed)
    new = WaveNet(replace(c, residual_channels=R, skip_channels=S))
    gates = torch.cat((torch.arange(r), R + torch.arange(r)))  # old tanh and sigmoid rows, in the new layout
    n_layers = c.n_layers
    with torch.no_grad():
        new.embed.weight.zero_()
        new.embed.weight[:, :r] = old.embed.weight
        for i in range(n_layers):
            conv, oconv = new.convs[i], old.convs[i]
            conv.weight[gates, :r] = oconv.weight
            conv.weight[r:R] = 0.0  # the new units' tanh rows: they output tanh(0) * sigmoid = 0
            conv.bias[gates] = oconv.bias
            conv.bias[r:R] = 0.0
            if new.global_proj is not None:
                new.global_proj[i].weight[gates] = old.global_proj[i].weight
                new.global_proj[i].weight[r:R] = 0.0
            if new.local_proj is not None:
                new.local_proj[i].weight[gates] = old.local_proj[i].weight
                new.local_proj[i].weight[r:R] = 0.0
            new.res[i].weight[:r, :r] = old.res[i].weight
            new.res[i].weight[r:] = 0.0  # nothing writes the new residual channels yet
            new.res[i].bias[:r] = old.res[i].bias
            new.res[i].bias[r:] = 0.0
            new.skip[i].weight[:s, :r] = old.skip[i].weight
            new.skip[i].weight[s:] = 0.0
            new.skip[i].bias[:s] = old.skip[i].bias
            new.skip[i].bias[s:] = SKIP_LEVEL / n_layers
        new.out1.weight[:s, :s] = old.out1.weight
        new.out1.weight[:, s:] = 0.0  # the head does not hear the new skip channels' constant yet
        new.out1.bias[:s] = old.out1.bias
        new.out2.weight[:, :s] = old.out2.weight
        new.out2.weight[:, s:] = 0.0  # nor the new head units
        new.out2.bias.copy_(old.out2.bias)
        for name in ("pitch_embed", "instrument_embed"):
            if getattr(old, name) is not None:
                getattr(new, name).weight.copy_(getattr(old, name).weight)
    return new


def add_local(old: WaveNet, names: tuple[str, ...]) -> WaveNet:
    """A WaveNet that also reads the local inputs ``names`` (e.g. ``("level",)``), through zero weights:
    the same logits until training moves them (the new weights get gradients at once)."""
    c = old.cfg.conditioning
    new_names = tuple(n for n in names if n not in c.local)
    if not new_names:
        raise ValueError(f"the model already reads {', '.join(names)}")
    if old.local_proj is None:
        raise ValueError("the model reads no local inputs; train a new one instead")
    local = c.local + new_names
    new = WaveNet(replace(old.cfg, conditioning=replace(c, local=local)))
    with torch.no_grad():
        state = {k: v for k, v in old.state_dict().items() if not k.startswith("local_proj.")}
        new.load_state_dict(state, strict=False)
        for i, proj in enumerate(new.local_proj):
            proj.weight.zero_()
            proj.weight[:, :len(c.local)] = old.local_proj[i].weight
    return new


def grow_checkpoint(src: Path, dst: Path, residual: int | None, skip: int | None,
                    local: tuple[str, ...] = ()) -> WaveNetConfig:
    """``src`` ckpt.pt -> ``dst`` ckpt.pt with the widened weights and/or the new local inputs ``local``,
    and a fresh optimiser (the weight average, if any, is dropped)."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    old = WaveNet(WaveNetConfig.from_dict(state["config"]))
    old.load_state_dict(state["model"])
    c0 = old.cfg
    new = old
    changes = []
    if residual is not None or skip is not None:
        new = widen(new, residual or c0.residual_channels, skip or c0.skip_channels)
        changes.append(f"R{c0.residual_channels}/S{c0.skip_channels} -> "
                       f"R{new.cfg.residual_channels}/S{new.cfg.skip_channels}")
    if local:
        new = add_local(new, local)
        changes.append(f"local + {', '.join(local)}")
    if not changes:
        raise ValueError("nothing to grow: give --residual/--skip and/or --add-local")
    c1 = new.cfg
    event = {"step": state["step"], "hours": state["elapsed_s"] / 3600,
             "core_hours": state.get("core_s", state["elapsed_s"]) / 3600,
             "grown": "; ".join(changes), "from": str(src)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in state.items() if k != "weight_ema"}
    torch.save({**state, "config": c1.to_dict(), "model": new.state_dict(),
                "optimizer": torch.optim.Adam(new.parameters()).state_dict(),
                "history": list(state["history"]) + [event]}, dst)
    return c1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.grow", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", required=True, help="model directory holding ckpt.pt")
    ap.add_argument("--out", required=True, help="directory for the grown ckpt.pt")
    ap.add_argument("--residual", type=int, help="residual channels (>= the old; default: the old)")
    ap.add_argument("--skip", type=int, help="skip channels (>= the old; default: the old)")
    ap.add_argument("--add-local", default="", help="comma-separated local inputs to add, e.g. level")
    a = ap.parse_args(argv)
    src, dst = Path(a.src) / "ckpt.pt", Path(a.out) / "ckpt.pt"
    try:
        if not src.is_file():
            raise FileNotFoundError(f"{src}: no checkpoint")
        if dst.exists():
            raise FileExistsError(f"{dst}: exists; grow into an empty directory")
        cfg = grow_checkpoint(src, dst, a.residual, a.skip, tuple(n for n in a.add_local.split(",") if n))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{dst}: R{cfg.residual_channels}/S{cfg.skip_channels}, local {', '.join(cfg.conditioning.local)}; "
          f"continue with python -m models.train --out {a.out} --resume")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
