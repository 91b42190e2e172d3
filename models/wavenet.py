"""The PyTorch WaveNet: parallel (teacher-forced) forward for training and export.

Shapes: B batch, T samples. Inputs are mu-law class indices; the input at
step t is the sample at t-1 (the caller shifts), the logits at step t predict
sample t. Every dilated convolution is causal with kernel 2 and is zero-padded
on the left, which is exactly what the incremental engines do with queues that
start at zero.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from realtime.model.config import WaveNetConfig


def interpolated_rows(table: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (128, P) at fractional MIDI ``pitch`` (B,), clipped to 0..127:
    (1 - f) * row[floor] + f * row[floor + 1]; f = 0 gives row[floor] exactly."""
    p = pitch.clamp(0.0, 127.0)
    lo = p.floor()
    f = (p - lo).unsqueeze(-1).to(table.dtype)
    lo = lo.long()
    return table[lo] * (1.0 - f) + table[(lo + 1).clamp(max=127)] * f


class WaveNet(nn.Module):
    """WaveNet with global (pitch/instrument/velocity) and local (gate, f0 phase, level) conditioning."""

    def __init__(self, cfg: WaveNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r, s, c = cfg.residual_channels, cfg.skip_channels, cfg.conditioning
        self.embed = nn.Embedding(cfg.quantization, r)
        self.pitch_embed = nn.Embedding(128, c.pitch_dim) if c.pitch_dim else None
        self.instrument_embed = nn.Embedding(c.n_instruments, c.instrument_dim) if c.instrument_dim else None
        self.dilations = cfg.dilations
        self.convs = nn.ModuleList(nn.Conv1d(r, 2 * r, 2, dilation=d) for d in self.dilations)
        g = c.global_dim
        self.global_proj = nn.ModuleList(nn.Linear(g, 2 * r, bias=False) for _ in self.dilations) if g else None
        nl = len(c.local)
        self.local_proj = nn.ModuleList(nn.Conv1d(nl, 2 * r, 1, bias=False) for _ in self.dilations) if nl else None
        self.res = nn.ModuleList(nn.Conv1d(r, r, 1) for _ in self.dilations)
        self.skip = nn.ModuleList(nn.Conv1d(r, s, 1) for _ in self.dilations)
        self.out1 = nn.Conv1d(s, s, 1)
        self.out2 = nn.Conv1d(s, cfg.quantization, 1)

    def global_vector(self, pitch: torch.Tensor, instrument: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        """(B,) MIDI pitch, (B,) instrument id, (B,) velocity 0-1 -> (B, G) global conditioning.
        A floating-point ``pitch`` reads the two nearest pitch embeddings linearly interpolated
        (:func:`interpolated_rows`; a whole pitch reads its own row exactly)."""
        parts = []
        if self.pitch_embed is not None:
            parts.append(interpolated_rows(self.pitch_embed.weight, pitch) if pitch.is_floating_point()
                         else self.pitch_embed(pitch))
        if self.instrument_embed is not None:
            parts.append(self.instrument_embed(instrument))
        if self.cfg.conditioning.velocity:
            parts.append(velocity.to(torch.float32).unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def forward(self, inputs: torch.Tensor, gvec: torch.Tensor | None = None,
                local: torch.Tensor | None = None, keep: int | None = None) -> torch.Tensor:
        """inputs (B,T) int64 mu-law, gvec (B,G), local (B,C,T) -> logits (B,256,T).

        With ``keep`` only the logits of the last ``keep`` steps are returned, (B,256,keep), the same
        values as the full forward's: each layer then computes only the steps that those logits depend
        on (training scores a window after a receptive field of context, so this skips ~1/3 of the head
        and skip products and ~1/10 of the layers').

        Inside, activations are (B,T,channels) and every convolution is a matrix product on the channel
        axis (the dilated one on [x(t-d), x(t)], as the engines do), since torch's CPU Conv1d backward
        takes a slow im2col path for kernel 1. Measured on one core, a training step of 6 x 6143 samples
        (R32/S64/L20): 1.42 s with Conv1d, 1.28 s as matrix products, 1.00 s with ``keep`` as well. The
        parameters are still the Conv1d/Linear modules (checkpoints and :func:`export_weights` unchanged).
        """
        t_len = inputs.shape[1]
        keep = t_len if keep is None else int(keep)
        if not 0 < keep <= t_len:
            raise ValueError(f"keep {keep}: must be in 1..{t_len}")
        x = self.embed(inputs)  # (B,T,R)
        loc = local.transpose(1, 2) if self.local_proj is not None and local is not None else None  # (B,T,C)
        skip = None
        r = self.cfg.residual_channels
        after = np.cumsum(self.dilations[::-1])[::-1].tolist()[1:] + [0]  # receptive field of the later layers
        for i, d in enumerate(self.dilations):
            n_in = x.shape[1]  # x holds the last n_in steps; all of them (n_in == T) until trimmed
            n = min(n_in, keep + after[i])  # the steps of this layer's output that the kept logits need
            xp = x if n + d <= n_in else F.pad(x, (0, 0, d, 0))  # zeros before the first step (only while untrimmed)
            xp = xp[:, xp.shape[1] - n - d:]
            conv = self.convs[i]  # weight (2R out, R in, 2 taps): tap 0 reads x(t-d), tap 1 x(t)
            h = F.linear(torch.cat((xp[:, :n], xp[:, d:]), dim=2),
                         torch.cat((conv.weight[:, :, 0], conv.weight[:, :, 1]), dim=1), conv.bias)
            if self.global_proj is not None and gvec is not None:
                h = h + self.global_proj[i](gvec).unsqueeze(1)
            if loc is not None:
                h = h + F.linear(loc[:, t_len - n:], self.local_proj[i].weight[:, :, 0])
            z = torch.tanh(h[..., :r]) * torch.sigmoid(h[..., r:])
            sk = F.linear(z[:, n - keep:], self.skip[i].weight[:, :, 0], self.skip[i].bias)
            skip = sk if skip is None else skip + sk
            if i + 1 < len(self.dilations):  # the last layer's residual feeds nothing
                x = x[:, n_in - n:] + F.linear(z, self.res[i].weight[:, :, 0], self.res[i].bias)
        o1 = F.relu(F.linear(F.relu(skip), self.out1.weight[:, :, 0], self.out1.bias))
        return F.linear(o1, self.out2.weight[:, :, 0], self.out2.bias).transpose(1, 2)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def export_weights(model: WaveNet) -> dict[str, np.ndarray]:
    """Flatten a WaveNet's weights into the float32 numpy arrays the engines and model files use.

    Matrices are stored (in, out) so the engines' inner loops run over
    contiguous outputs. Keys: embed (256,R); w_dil (L,2R,2R) rows [x(t-d); x(t)];
    b_dil (L,2R); w_glob (L,G,2R); w_loc (L,C,2R); w_rs (L,R,R+S) [res | skip];
    b_res (L,R); b_skip (S,) summed over layers; pitch_embed (128,P);
    instrument_embed (I,E); w_out1 (S,S); b_out1; w_out2 (S,256); b_out2.
    """
    cfg = model.cfg
    r, s, L = cfg.residual_channels, cfg.skip_channels, cfg.n_layers
    c = cfg.conditioning
    f = lambda t: t.detach().cpu().to(torch.float32).numpy()  # noqa: E731
    w_dil = np.empty((L, 2 * r, 2 * r), np.float32)
    b_dil = np.empty((L, 2 * r), np.float32)
    w_rs = np.empty((L, r, r + s), np.float32)
    b_res = np.empty((L, r), np.float32)
    b_skip = np.zeros(s, np.float32)
    w_glob = np.zeros((L, c.global_dim, 2 * r), np.float32)
    w_loc = np.zeros((L, len(c.local), 2 * r), np.float32)
    for i in range(L):
        w = f(model.convs[i].weight)  # (2R out, R in, 2 taps)
        w_dil[i, :r] = w[:, :, 0].T
        w_dil[i, r:] = w[:, :, 1].T
        b_dil[i] = f(model.convs[i].bias)
        w_rs[i, :, :r] = f(model.res[i].weight)[:, :, 0].T
        w_rs[i, :, r:] = f(model.skip[i].weight)[:, :, 0].T
        b_res[i] = f(model.res[i].bias)
        b_skip += f(model.skip[i].bias)
        if model.global_proj is not None:
            w_glob[i] = f(model.global_proj[i].weight).T
        if model.local_proj is not None:
            w_loc[i] = f(model.local_proj[i].weight)[:, :, 0].T
    out = {
        "embed": f(model.embed.weight),
        "w_dil": w_dil, "b_dil": b_dil, "w_glob": w_glob, "w_loc": w_loc,
        "w_rs": w_rs, "b_res": b_res, "b_skip": b_skip,
        "w_out1": f(model.out1.weight)[:, :, 0].T.copy(), "b_out1": f(model.out1.bias),
        "w_out2": f(model.out2.weight)[:, :, 0].T.copy(), "b_out2": f(model.out2.bias),
        "pitch_embed": f(model.pitch_embed.weight) if model.pitch_embed is not None else np.zeros((128, 0), np.float32),
        "instrument_embed": (f(model.instrument_embed.weight) if model.instrument_embed is not None
                             else np.zeros((c.n_instruments, 0), np.float32)),
    }
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def import_weights(model: WaveNet, w: dict[str, np.ndarray]) -> WaveNet:
    """Inverse of :func:`export_weights`: load engine-layout arrays into a torch WaveNet (in place)."""
    cfg = model.cfg
    r = cfg.residual_channels
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        model.embed.weight.copy_(t(w["embed"]))
        for i in range(cfg.n_layers):
            model.convs[i].weight[:, :, 0].copy_(t(w["w_dil"][i, :r].T))
            model.convs[i].weight[:, :, 1].copy_(t(w["w_dil"][i, r:].T))
            model.convs[i].bias.copy_(t(w["b_dil"][i]))
            model.res[i].weight[:, :, 0].copy_(t(w["w_rs"][i, :, :r].T))
            model.skip[i].weight[:, :, 0].copy_(t(w["w_rs"][i, :, r:].T))
            model.res[i].bias.copy_(t(w["b_res"][i]))
            model.skip[i].bias.copy_(t(w["b_skip"]) if i == 0 else torch.zeros_like(model.skip[i].bias))
            if model.global_proj is not None:
                model.global_proj[i].weight.copy_(t(w["w_glob"][i].T))
            if model.local_proj is not None:
                model.local_proj[i].weight[:, :, 0].copy_(t(w["w_loc"][i].T))
        model.out1.weight[:, :, 0].copy_(t(w["w_out1"].T))
        model.out1.bias.copy_(t(w["b_out1"]))
        model.out2.weight[:, :, 0].copy_(t(w["w_out2"].T))
        model.out2.bias.copy_(t(w["b_out2"]))
        if model.pitch_embed is not None:
            model.pitch_embed.weight.copy_(t(w["pitch_embed"]))
        if model.instrument_embed is not None:
            model.instrument_embed.weight.copy_(t(w["instrument_embed"]))
    return model
