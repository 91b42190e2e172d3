"""Benchmark the engines: samples/s, real-time factor, ratios.

    python -m realtime.bench [--json] [--runs 3] [--configs r32s64l20,r64s128l20]

Same random weights for every engine; single thread (torch.set_num_threads(1),
Numba kernels are single-threaded); medians of ``--runs`` timed runs after a
warm-up. The eager baseline is the textbook incremental PyTorch loop: per-layer
input buffers and one forward per sample. The output notes whether a training
run was active on the other core (the machine has two).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from dataclasses import dataclass

import numpy as np

CONFIGS = {
    "r32s64l20": (32, 64, 10, 2),
    "r64s128l20": (64, 128, 10, 2),
    "r16s32l16": (16, 32, 8, 2),
}


@dataclass
class Result:
    config: str
    engine: str
    samples_per_s: float
    runs: list[float]

    def row(self) -> dict:
        return {"config": self.config, "engine": self.engine, "samples_per_s": round(self.samples_per_s, 1),
                "rtf_16k": round(self.samples_per_s / 16000.0, 4), "runs": [round(r, 1) for r in self.runs]}


def training_running() -> bool:
    """True when a ``models.train`` process is running (it would share the machine)."""
    try:
        out = subprocess.run(["pgrep", "-f", "models.train"], capture_output=True, text=True, timeout=5)
        return bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def _median_rate(fn, n: int, runs: int) -> tuple[float, list[float]]:
    fn(min(n, 64))  # warm-up (compilation, caches)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(n)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


class EagerIncremental:
    """Naive eager PyTorch generation: per-layer input buffers (d+1 samples), one forward per sample."""

    def __init__(self, net, seed: int = 0) -> None:
        import torch

        self.torch = torch
        self.net = net.eval()
        cfg = net.cfg
        self.buffers = [torch.zeros(1, cfg.residual_channels, d + 1) for d in cfg.dilations]
        self.g = net.global_vector(torch.tensor([60]), torch.tensor([0]), torch.tensor([0.8]))
        self.local = torch.zeros(1, len(cfg.conditioning.local), 1)
        self.x = torch.tensor([[128]])
        self.gen = torch.Generator().manual_seed(seed)

    def generate(self, n: int) -> None:
        torch, net = self.torch, self.net
        r = net.cfg.residual_channels
        with torch.no_grad():
            for _ in range(n):
                x = net.embed(self.x).transpose(1, 2)
                skip = 0
                for i, buf in enumerate(self.buffers):
                    buf[:, :, :-1] = buf[:, :, 1:].clone()
                    buf[:, :, -1:] = x
                    h = torch.nn.functional.conv1d(buf, net.convs[i].weight, net.convs[i].bias,
                                                   dilation=net.dilations[i])
                    h = h + net.global_proj[i](self.g).unsqueeze(-1) + net.local_proj[i](self.local)
                    z = torch.tanh(h[:, :r]) * torch.sigmoid(h[:, r:])
                    skip = skip + net.skip[i](z)
                    x = x + net.res[i](z)
                logits = net.out2(torch.relu(net.out1(torch.relu(skip))))
                p = torch.softmax(logits[0, :, 0], 0)
                self.x = torch.multinomial(p, 1, generator=self.gen).view(1, 1)


def bench_config(name: str, runs: int, engines: list[str], seconds: float) -> list[Result]:
    import torch

    from models.config import WaveNetConfig
    from models.model_file import random_model
    from models.wavenet import WaveNet, import_weights

    from .numba_engine import NumbaEngine
    from .torch_engine import TorchScriptEngine

    torch.set_num_threads(1)
    r, s, lps, st = CONFIGS[name]
    cfg = WaveNetConfig(r, s, lps, st)
    model = random_model(cfg, seed=0)
    results = []
    for engine in engines:
        if engine == "numba":
            e = NumbaEngine(model, seed=0)
            e.set_note(gate=1.0, pitch=60)
            n = int(16000 * seconds)
            fn = e.generate
        elif engine == "torchscript":
            e = TorchScriptEngine(model, seed=0, device="cpu")
            n = 400
            fn = e.generate
        elif engine == "eager":
            net = import_weights(WaveNet(cfg), model.weights)
            eager = EagerIncremental(net)
            n = 150
            fn = eager.generate
        else:
            raise ValueError(engine)
        rate, all_rates = _median_rate(fn, n, runs)
        results.append(Result(name, engine, rate, all_rates))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--configs", default="r32s64l20,r64s128l20")
    ap.add_argument("--engines", default="numba,torchscript,eager")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio seconds per Numba run")
    a = ap.parse_args(argv)
    busy = training_running()
    engines = a.engines.split(",")
    rows, ratios = [], []
    for name in a.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"unknown config {name!r} (known: {', '.join(CONFIGS)})")
        res = {x.engine: x for x in bench_config(name, a.runs, engines, a.seconds)}
        rows += [x.row() for x in res.values()]
        if "numba" in res:
            ratio = {"config": name, "training_running": busy}
            for other in ("eager", "torchscript"):
                if other in res:
                    ratio[f"numba_over_{other}"] = round(res["numba"].samples_per_s / res[other].samples_per_s, 1)
            ratios.append(ratio)
    if a.json:
        for row in rows:
            print(json.dumps({**row, "training_running": busy}))
        for r in ratios:
            print(json.dumps(r))
    else:
        print(f"single thread, median of {a.runs} runs" + (" (a training run was using the other core)" if busy else ""))
        print(f"{'config':<12} {'engine':<12} {'samples/s':>11} {'x real time @16k':>17}")
        for row in rows:
            print(f"{row['config']:<12} {row['engine']:<12} {row['samples_per_s']:>11,.0f} {row['rtf_16k']:>17.3f}")
        for r in ratios:
            print(f"{r['config']}: " + ", ".join(f"{k.replace('_over_', '/')} {v}x" for k, v in r.items()
                                                if k.startswith("numba_")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
