"""The TorchScript engine: the same incremental step, compiled with TorchScript.

Thread: generator. Runs on CUDA when present (state mirrored to the device
each block), else on the CPU, where it shares the engine's numpy state
zero-copy; it exists for GPUs and for equivalence tests against the Numba
kernel (same weights + same uniforms -> same samples).
"""
from __future__ import annotations

import math
from typing import List

import numpy as np
import torch

from realtime.engine import sf_tracks
from realtime.engine.base import Engine
from realtime.kernel import loop_lowpass
from realtime.kernel.generate import EXP2_POLY, LOG2E, POW2_NEG
from realtime.model import local_cond, mulaw, source_filter
from realtime.model.model_file import ModelFile
from realtime.model.source_filter import ORDER


class IncrementalStep(torch.nn.Module):
    """Fast WaveNet step over a block; weights in engine layout (in, out)."""

    def __init__(self, w: dict[str, np.ndarray], dilations: List[int], q_off: List[int], loc_idx: List[int]) -> None:
        super().__init__()
        t = lambda k: torch.from_numpy(np.ascontiguousarray(w[k]))  # noqa: E731
        self.register_buffer("embed", t("embed"))
        self.register_buffer("w_dil", t("w_dil"))
        self.register_buffer("w_loc", t("w_loc"))
        self.register_buffer("w_rs", t("w_rs"))
        self.register_buffer("b_res", t("b_res"))
        self.register_buffer("b_skip", t("b_skip"))
        self.register_buffer("w_out1", t("w_out1"))
        self.register_buffer("b_out1", t("b_out1"))
        self.register_buffer("w_out2", t("w_out2"))
        self.register_buffer("b_out2", t("b_out2"))
        self.register_buffer("decode", torch.from_numpy(mulaw.DECODE_TABLE.copy()))
        self.register_buffer("loop_thr", torch.from_numpy(loop_lowpass.THRESHOLDS.copy()))
        self.fade_lo: float = loop_lowpass.FADE_LO
        self.fade_span: float = loop_lowpass.FADE_HI - loop_lowpass.FADE_LO
        self.register_buffer("loc_idx", torch.tensor(loc_idx, dtype=torch.long))
        self.register_buffer("pow2", torch.from_numpy(POW2_NEG.copy()))
        self.register_buffer("poly", torch.tensor(EXP2_POLY, dtype=torch.float32))
        # the lag channel: each class's companded value, computed by the kernel's own function
        self.register_buffer("class_values", torch.tensor([local_cond.class_value(k) for k in range(256)],
                                                          dtype=torch.float32))
        self.lag_slot: int = loc_idx.index(local_cond.LAG) if local_cond.LAG in loc_idx else -1
        self.lag2_slot: int = loc_idx.index(local_cond.LAG2) if local_cond.LAG2 in loc_idx else -1
        self.lagavg_slot: int = loc_idx.index(local_cond.LAGAVG) if local_cond.LAGAVG in loc_idx else -1
        self.lagavg_periods: int = local_cond.LAGAVG_PERIODS
        # how many taps (1, 2, .. periods back) the model's lag inputs read: each computed once per step
        self.n_taps: int = (self.lagavg_periods if self.lagavg_slot >= 0 else 2 if self.lag2_slot >= 0
                            else 1 if self.lag_slot >= 0 else 0)
        self.hist_mask: int = local_cond.HIST - 1
        self.max_period: float = float(local_cond.HIST - 3)
        self.lag_gain: float = local_cond.LAG_GAIN
        self.dilations: List[int] = list(dilations)
        self.q_off: List[int] = list(q_off)
        self.r: int = int(w["embed"].shape[1])
        self.log2e: float = LOG2E
        # a source-filter model (realtime.model.source_filter), as the kernel's sf_predict / sf_emit
        self.pred_slot: int = loc_idx.index(local_cond.PRED) if local_cond.PRED in loc_idx else -1
        self.emphasis: float = source_filter.EMPHASIS
        self.exc_scale: float = source_filter.EXC_SCALE
        self.gain_floor: float = source_filter.GAIN_FLOOR
        self.log1p_mu: float = math.log1p(255.0)
        self.sf_mask: int = sf_tracks.RING - 1

    def encode1(self, x: float) -> int:
        """realtime.model.source_filter.encode1: one float's mu-law class (round half to even, as np.rint)."""
        x = min(max(x, -1.0), 1.0)
        y = math.copysign(math.log1p(255.0 * abs(x)) / self.log1p_mu, x) if x != 0.0 else 0.0
        k = float(torch.round(torch.tensor((y + 1.0) * 0.5 * 255.0, dtype=torch.float64)))
        return int(min(max(k, 0.0), 255.0))

    def compand(self, x: float) -> float:
        """realtime.model.source_filter.compand (the float32 rounding happens where it is stored)."""
        x = min(max(x, -1.0), 1.0)
        return math.copysign(math.log1p(255.0 * abs(x)) / self.log1p_mu, x)

    def cdf(self, logits: torch.Tensor, m: torch.Tensor, temperature: float, floor: float) -> torch.Tensor:
        """The kernel's softmax CDF, operation for operation in float32 (see kernel.sample_from_logits)."""
        scale = torch.tensor(self.log2e / temperature, dtype=torch.float32)
        y = torch.clamp_min((logits - m) * scale, -126.0)
        ki = torch.clamp((-y).to(torch.int32), 0, 127)
        f = y + ki.to(torch.float32)
        c = self.poly
        p = c[0] * f + c[1]
        for j in range(2, 7):
            p = p * f + c[j]
        e = p * self.pow2[ki.to(torch.long)]
        if floor > 0.0:  # the probability floor (kernel.sample_row): a sequential float64 sum, as the kernel's
            total = float(torch.cumsum(e.to(torch.float64), 0)[-1])
            thr = torch.tensor(floor * total, dtype=torch.float64).to(torch.float32)
            e = torch.clamp_min(e - thr, 0.0)
        return torch.cumsum(e.to(torch.float64), 0).to(torch.float32)

    def tap(self, hist: torch.Tensor, hpos: int, period: torch.Tensor) -> torch.Tensor:
        """realtime.model.local_cond._tap: the ring's input ``period`` (clipped already) steps back, interpolated."""
        lag_n = int(period)
        f = period - float(lag_n)
        a = hist[(hpos - lag_n + 1) & self.hist_mask]
        b = hist[(hpos - lag_n) & self.hist_mask]
        return (a + f * (b - a)) * self.lag_gain

    def forward(self, n: int, queues: torch.Tensor, q_pos: torch.Tensor, bias: torch.Tensor,
                bias_target: torch.Tensor, bias_step: torch.Tensor, ints: torch.Tensor, temperature: float, floor: float,
                feats: torch.Tensor, uniforms: torch.Tensor, forced: torch.Tensor, out: torch.Tensor,
                logits_out: torch.Tensor, hist: torch.Tensor, loop: torch.Tensor, sf_a: torch.Tensor,
                sf_g: torch.Tensor, sf_ring: torch.Tensor, sf_f: torch.Tensor, sf_i: torch.Tensor) -> int:
        r = self.r
        source_filter = sf_a.shape[0] > 0
        sf_pos = int(sf_i[2])
        sf_x = float(sf_f[3])
        sf_p = 0.0
        # the loop low-pass (realtime.kernel.loop_lowpass.step, operation for operation in float64)
        loop_a, loop_y, loop_env, loop_rel = float(loop[0]), float(loop[1]), float(loop[2]), float(loop[3])
        forcing = forced.shape[0] > 0 and not source_filter  # a source filter's forced classes: its excitation's
        forcing_exc = forced.shape[0] > 0 and source_filter
        keep = logits_out.shape[0] > 0
        loc = feats.index_select(1, self.loc_idx) if self.loc_idx.shape[0] > 0 else feats[:, :0]
        inp = int(ints[0])
        glide = int(ints[1])
        hpos = int(ints[3])
        mask = self.hist_mask
        # the taps' periods 1, 2, .. n_taps times the f0 period (float32 products), as _tap clips them
        periods = [(feats[:, local_cond.PERIOD] * float(m)).clamp(1.0, self.max_period)
                   for m in range(1, self.n_taps + 1)]
        pos: List[int] = q_pos.tolist()
        bad = 0
        for t in range(n):
            if forcing:
                inp = int(forced[t])
            if glide > 0:
                glide -= 1
                if glide == 0:
                    bias.copy_(bias_target)
                else:
                    bias.add_(bias_step)
            # the lag ring (realtime.model.local_cond.push_lag, operation for operation in float32)
            hpos = (hpos + 1) & mask
            hist[hpos] = self.class_values[inp]
            taps = [self.tap(hist, hpos, periods[m][t]) for m in range(self.n_taps)]
            if self.lag_slot >= 0:
                loc[t, self.lag_slot] = taps[0]
            if self.lag2_slot >= 0:
                loc[t, self.lag2_slot] = taps[1]
            if self.lagavg_slot >= 0:
                total = taps[0]
                for m in range(1, self.lagavg_periods):
                    total = total + taps[m]
                loc[t, self.lagavg_slot] = total * (1.0 / self.lagavg_periods)
            if source_filter:  # the short-term prediction (source_filter.predict, operation for operation)
                acc = 0.0
                for k in range(1, sf_a.shape[1]):
                    acc -= float(sf_a[t, k]) * float(sf_ring[(sf_pos - k + 1) & self.sf_mask])
                sf_p = acc
                if self.pred_slot >= 0:
                    loc[t, self.pred_slot] = self.compand(sf_p)
            x = self.embed[inp]
            skip = self.b_skip
            lt = loc[t]
            for l in range(len(self.dilations)):
                row = self.q_off[l] + pos[l]
                wl = self.w_dil[l]
                h = bias[l] + lt @ self.w_loc[l] + queues[row] @ wl[:r] + x @ wl[r:]
                queues[row] = x
                p = pos[l] + 1
                pos[l] = 0 if p >= self.dilations[l] else p
                z = torch.tanh(h[:r]) * torch.sigmoid(h[r:])
                rs = z @ self.w_rs[l]
                x = x + self.b_res[l] + rs[:r]
                skip = skip + rs[r:]
            o1 = torch.relu(torch.relu(skip) @ self.w_out1 + self.b_out1)
            logits = o1 @ self.w_out2 + self.b_out2
            if keep:
                logits_out[t] = logits
            m = logits.max()
            held = False
            if forcing_exc:
                k = int(forced[t])
            elif not bool(torch.isfinite(m)):
                held = True
                k = inp
            elif temperature <= 0.0:
                k = int(torch.argmax(logits))
            else:
                cdf = self.cdf(logits, m, temperature, floor)
                if not bool(torch.isfinite(cdf[-1])):
                    held = True
                    k = inp
                else:
                    target = uniforms[t] * cdf[-1].to(torch.float64)
                    k = min(int(torch.searchsorted(cdf.to(torch.float64), target.reshape(1), right=True)[0]), 255)
            if source_filter:  # the excitation through the filter (the kernel's sf_emit)
                s = sf_p
                if held:
                    bad += 1
                else:
                    s += max(float(sf_g[t]), self.gain_floor) * self.exc_scale * float(self.decode[k])
                sf_pos = (sf_pos + 1) & self.sf_mask
                sf_ring[sf_pos].fill_(s)  # (TorchScript's ``t[i] = float`` rounds through a float32 tensor)
                sf_x = s + self.emphasis * sf_x
                out[t] = sf_x
                k = self.encode1(s)
            elif held:
                bad += 1
                out[t] = self.decode[k]
            elif loop_a > 0.0:
                y = float(self.decode[k])
                fade = (loop_env - self.fade_lo) / self.fade_span
                fade = 0.0 if fade < 0.0 else (1.0 if fade > 1.0 else fade)
                ae = loop_a * fade
                f = (1.0 - ae) * y + ae * loop_y
                loop_y = f
                af = abs(f)
                rel = loop_env * loop_rel
                loop_env = af if af > rel else rel
                k = int(torch.searchsorted(self.loop_thr, torch.tensor([f], dtype=torch.float64), right=True)[0])
                out[t] = f
            else:
                out[t] = self.decode[k]
            inp = k
        sf_i[2] = sf_pos
        sf_f[2].fill_(sf_p)
        sf_f[3].fill_(sf_x)
        loop[1] = loop_y
        loop[2] = loop_env
        ints[0] = inp
        ints[1] = glide
        ints[2] += bad
        ints[3] = hpos
        q_pos.copy_(torch.tensor(pos, dtype=torch.long))
        return bad


class TorchScriptEngine(Engine):
    """The incremental step under TorchScript; ``device`` 'auto' picks CUDA when present."""

    name = "torchscript"

    def __init__(self, model: ModelFile, seed: int = 0, max_block: int = 4096, device: str = "auto", **kw) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        super().__init__(model, seed=seed, max_block=max_block, **kw)
        step = IncrementalStep(self.w, [int(d) for d in self.dilations], [int(o) for o in self.q_off],
                               [int(i) for i in self.loc_idx]).to(self.device)
        self.step = torch.jit.script(step)
        self._feats = np.empty((self.max_block, local_cond.N_LOCAL), np.float32)
        self._names = ("queues", "q_pos", "bias", "bias_target", "bias_step", "ints", "hist", "sf_ring", "sf_f", "sf_i")
        m = self.max_block if self.source_filter else 0
        self._sf_a, self._sf_g = np.zeros((m, ORDER + 1)), np.zeros(m)
        self._state_changed()

    def _state_changed(self) -> None:
        if not hasattr(self, "_names"):
            return
        self._dev = {k: torch.from_numpy(getattr(self, k)).to(self.device) for k in self._names}

    def _run(self, n, uniforms, forced, out, logits):
        sf_a, sf_g = self._sf_a[:n], self._sf_g[:n]
        if self.source_filter:  # before the control state moves on
            self.envelope_tracks(sf_a, sf_g)
        feats = self._feats[:n]
        local_cond.fill(self.ctrl, float(self.sample_rate), feats)
        d, dev = self._dev, self.device
        out_t = torch.from_numpy(out).to(dev)
        logits_t = torch.from_numpy(logits).to(dev)
        loop_np = self.ctrl[local_cond.LOOP_A:local_cond.LOOP_A + 4]
        loop_t = torch.from_numpy(loop_np).to(dev)  # on the CPU: the control state itself
        with torch.no_grad():
            self.step(n, d["queues"], d["q_pos"], d["bias"], d["bias_target"], d["bias_step"], d["ints"],
                      float(self.temperature[0]), float(self.temperature[1]), torch.from_numpy(feats).to(dev),
                      torch.from_numpy(uniforms).to(dev), torch.from_numpy(forced).to(dev), out_t, logits_t,
                      d["hist"], loop_t, torch.from_numpy(sf_a).to(dev), torch.from_numpy(sf_g).to(dev),
                      d["sf_ring"], d["sf_f"], d["sf_i"])
        if dev.type != "cpu":
            loop_np[:] = loop_t.cpu().numpy()
            out[:] = out_t.cpu().numpy()
            if logits.shape[0]:
                logits[:] = logits_t.cpu().numpy()
            for k in self._names:
                getattr(self, k)[:] = d[k].cpu().numpy()
