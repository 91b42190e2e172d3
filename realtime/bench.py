"""Benchmark the engines: samples/s, real-time factors, GFLOP/s, GB/s, fraction of FMA peak, polyphony.

    python -m realtime.bench [--json] [--runs 3] [--configs r32s64l20,r64s128l20,model]
                             [--engines numba,numba-int8,numba-bf16,numba-bf16dot,numba-int8dot,torchscript,eager]
                             [--voices 1,2,4,8,16] [--threads 1,2] [--poly-precisions fp32,bf16dot]
    python -m realtime.bench --targets avx2,avxvnni,host   # the same per compile target (realtime.bench_targets)

The config ``model`` is the ``--model`` file (the shipped model by default) with its trained weights;
the others are random models of that size.

Same random weights for every engine; medians of ``--runs`` timed runs after a
warm-up. Single-voice rows run on one thread (torch.set_num_threads(1), the
Numba kernels are single-threaded), pinned to one CPU of the process's
affinity; the two-thread polyphony rows use two CPUs when the affinity allows
(``cpus`` in the output says how many there were). The eager baseline is the
textbook incremental PyTorch loop: per-layer input buffers and one forward per
sample.

Derived figures: GFLOP/s = 2 x the config's multiply-accumulates per sample
(``WaveNetConfig.macs_per_sample``, relu-skipped head rows counted) x samples/s;
GB/s = weight bytes read per sample (at the engine's precision; once per step
for all voices of a batch) x steps/s, and for Numba rows ``bandwidth_fraction`` =
that over ``read_peak_gbs``, the rate one core reads a buffer of the same size
(realtime.peaks.read_gbs: L1, L2 or L3 speed depending on the size); ``peak_fraction`` = GFLOP/s over this
core's float32 FMA peak — times the thread count for the two-thread rows. The
peaks are measured here by realtime.peaks (register-only loops of one
instruction): float32 FMA at 256 bits (the width Numba's auto-vectoriser emits
on this CPU) and 512 bits (the hardware's peak, the one fractions use), bf16 dot
products, float16 FMA and int8 dot products where the compile target has them
(realtime.kernel.isa: ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` compile for a lower
CPU, and every figure is then that target's). bf16dot
and int8dot rows also give ``dot_peak_fraction`` against their instruction's
peak (int8dot's routine depends on the target: 512- or 256-bit ``vpdpbusd``, at most
0.5 of its peak since each weight vector takes two, for the high and the low bytes of
the 16-bit activation codes; AVX2's ``vpmaddwd``), and ``dot_matvec_gflops`` is each one's
matrix-vector routine on a matrix
held in L1 (how close its inner loop comes to that peak). ``best_over_eager`` / ``best_over_torchscript``
compare the fastest Numba precision with the float32 framework engines.
Engines a config or CPU cannot run are listed as skipped. The output notes
whether a training run was active (it shares the machine).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

CONFIGS = {
    "r32s64l20": (32, 64, 10, 2),
    "r64s128l20": (64, 128, 10, 2),
    "r16s32l16": (16, 32, 8, 2),
}
#: the config name of the ``--model`` file (trained weights, its own size)
MODEL_CONFIG = "model"
RATES = (16000, 22050, 24000, 44100)
PRECISION_ENGINES = {"numba": "fp32", "numba-int8": "int8", "numba-bf16": "bf16", "numba-bf16dot": "bf16dot",
                     "numba-int8dot": "int8dot"}


@dataclass
class Result:
    config: str
    engine: str
    samples_per_s: float
    runs: list[float]
    extra: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"config": self.config, "engine": self.engine, "samples_per_s": round(self.samples_per_s, 1),
                "rtf_16k": round(self.samples_per_s / 16000.0, 4), "runs": [round(r, 1) for r in self.runs],
                **self.extra}


def training_state(pattern: str = "models.train") -> str:
    """``running`` when a process whose command line matches ``pattern`` (a training run) is running
    (it shares the machine), ``paused`` when all such processes are stopped (SIGSTOP), else ``none``.
    A torchrun launcher (it only waits) is not counted: its workers are."""
    launchers = ("torchrun", "torch.distributed.run", "distributed/run.py")
    try:
        out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, timeout=5)
        pids = [line.split(maxsplit=1)[0] for line in out.stdout.splitlines()
                if line.strip() and not any(x in line for x in launchers)]
        if not pids:
            return "none"
        st = subprocess.run(["ps", "-o", "stat=", "-p", ",".join(pids)], capture_output=True, text=True, timeout=5)
        states = [s.strip() for s in st.stdout.splitlines() if s.strip()]
    except (OSError, subprocess.SubprocessError):
        return "none"
    if not states:
        return "none"
    return "paused" if all(s.startswith("T") for s in states) else "running"


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x == option:
            skip = True
        elif not x.startswith(option + "="):
            out.append(x)
    return out


def _median_rate(fn, n: int, runs: int) -> tuple[float, list[float]]:
    fn(min(n, 64))  # warm-up (compilation, caches)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(n)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def _calibrated_n(fn, seconds: float, lo: int = 64) -> int:
    """How many steps of ``fn`` take about ``seconds`` (after a warm-up call)."""
    fn(lo)
    t0 = time.perf_counter()
    fn(lo)
    rate = lo / max(time.perf_counter() - t0, 1e-9)
    return max(lo, int(rate * seconds))


# ------------------------------------------------------------------ peaks (see realtime.peaks)
#: the peak (realtime.peaks kind) of bf16dot's instruction and of each int8dot routine's (realtime.kernel.int8dot.path)
DOT_PEAKS = {"numba-bf16dot": "bf16_dot_512"}
INT8_PEAKS = {"avx512vnni": "int8_dot_512", "avxvnni": "int8_dot_256", "avx2": "int16_madd_256"}


def dot_peak_kind(engine: str) -> str:
    """The realtime.peaks kind ``engine``'s dot-product instruction has on the compile target ('' if none)."""
    if engine == "numba-int8dot":
        from realtime.kernel import int8dot

        return INT8_PEAKS.get(int8dot.path() or "", "")
    return DOT_PEAKS.get(engine, "")


def load_bench_model(name: str, model_path: str = ""):
    """``(model, cfg)`` for config ``name``: a random model of a :data:`CONFIGS` size (seed 0), or the
    ``model_path`` file for :data:`MODEL_CONFIG`."""
    from realtime.model.config import WaveNetConfig
    from realtime.model.model_file import load_model, random_model

    if name == MODEL_CONFIG:
        if not (model_path and os.path.isfile(model_path)):
            raise SystemExit(f"config {MODEL_CONFIG!r} needs --model FILE (got {model_path!r})")
        model = load_model(model_path)
        return model, model.config
    if name not in CONFIGS:
        raise SystemExit(f"unknown config {name!r} (known: {', '.join(CONFIGS)}, {MODEL_CONFIG})")
    cfg = WaveNetConfig(*CONFIGS[name])
    return random_model(cfg, seed=0), cfg


def dot_matvec_gflops(precision: str, seconds: float = 0.3) -> float:
    """GFLOP/s (int8: GOP/s, a multiply-add counted as 2) of the ``bf16dot`` or ``int8dot``
    matrix-vector routine (int8dot: the compile target's) on a 128 x 128 matrix held in L1 (best of 3), or 0
    when the compile target cannot run it: how close the inner loop comes to the instruction's peak."""
    from numba import njit

    from realtime.kernel import aligned, bf16dot, int8dot
    from realtime.peaks import best_rate

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.01, (128, 128))
    h = np.zeros(128, np.float32)
    if precision == "bf16dot":
        if not bf16dot.available()[0]:
            return 0.0

        @njit(nogil=True, cache=True)
        def loop16(n, h, w, xp):
            for _ in range(n):
                bf16dot.dot_acc(h, 0, w, 0, xp, 64, 8)
            return h[0]

        w16, xp = aligned.copy(bf16dot.pack_matrix(w)), aligned.zeros(64, np.float32)  # as the engines' are
        return best_rate(lambda n: loop16(n, h, w16, xp), 128 * 128 * 2, 20_000, seconds)
    if not int8dot.available()[0]:
        return 0.0

    @njit(nogil=True, cache=True)
    def loop8(n, h, w, xq):
        for _ in range(n):
            int8dot.dot_acc(h, 0, w, 0, xq, 32, 8, np.float32(1e-9))  # the compile target's routine
        return h[0]

    # 128 inputs as 16-bit codes: the high-byte plane (at the zero point), then the low-byte plane (AVX2 reads
    # the same bytes as int16 codes)
    w8 = aligned.copy(int8dot.pack_matrix(w, int8dot.ZP_SIGNED))
    xq = aligned.copy(np.r_[np.full(128, 128), np.zeros(128)].astype(np.uint8))
    return best_rate(lambda n: loop8(n, h, w8, xq), 128 * 128 * 2, 20_000, seconds)


# ------------------------------------------------------------------ CPU placement
def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _pin(cpus: list[int]) -> None:
    try:
        os.sched_setaffinity(0, set(cpus))
    except (AttributeError, OSError):
        pass


class EagerIncremental:
    """Naive eager PyTorch generation from a model file's weights: per-layer input buffers (d+1 samples), one
    forward per sample, every product a separate torch call (the baseline the compiled engines are measured
    against; the same arithmetic as models.wavenet's layers, read from the engine layout)."""

    def __init__(self, model, seed: int = 0) -> None:
        import torch

        self.torch = torch
        cfg = model.config
        self.r, self.dil = cfg.residual_channels, cfg.dilations
        self.w = {k: torch.from_numpy(v) for k, v in model.weights.items()}
        w = self.w
        g_parts = [w["pitch_embed"][60], w["instrument_embed"][0]]
        if cfg.conditioning.velocity:
            g_parts.append(torch.tensor([0.8]))
        self.g = torch.cat(g_parts)
        self.local = torch.zeros(len(cfg.conditioning.local))
        self.buffers = [torch.zeros(d + 1, self.r) for d in self.dil]
        self.x = 128
        self.gen = torch.Generator().manual_seed(seed)

    def generate(self, n: int) -> None:
        torch, w, r = self.torch, self.w, self.r
        with torch.no_grad():
            for _ in range(n):
                x = w["embed"][self.x]
                skip = w["b_skip"].clone()
                for i, buf in enumerate(self.buffers):
                    buf[:-1] = buf[1:].clone()
                    buf[-1] = x
                    h = torch.cat((buf[0], buf[-1])) @ w["w_dil"][i] + w["b_dil"][i]
                    h = h + self.g @ w["w_glob"][i] + self.local @ w["w_loc"][i]
                    z = torch.tanh(h[:r]) * torch.sigmoid(h[r:])
                    rs = z @ w["w_rs"][i]
                    skip = skip + rs[r:]
                    x = x + rs[:r] + w["b_res"][i]
                o1 = torch.relu(torch.relu(skip) @ w["w_out1"] + w["b_out1"])
                p = torch.softmax(o1 @ w["w_out2"] + w["b_out2"], 0)
                self.x = int(torch.multinomial(p, 1, generator=self.gen))


def _derived(cfg, samples_per_s: float, steps_per_s: float, weight_bytes: int, peak: float, threads: int = 1) -> dict:
    flops = 2 * cfg.macs_per_sample()
    gflops = flops * samples_per_s / 1e9
    return {"rtf": {str(r): round(steps_per_s / r, 4) for r in RATES},
            "flops_per_sample": flops, "gflops": round(gflops, 2),
            "weight_bytes_per_step": int(weight_bytes), "gbytes_per_s": round(weight_bytes * steps_per_s / 1e9, 2),
            "peak_fraction": round(gflops / (peak * threads), 3) if peak > 0 else None}


def bench_config(name: str, runs: int, engines: list[str], seconds: float, peak: float = 0.0,
                 dot_peaks: dict[str, float] | None = None,
                 loop_lowpass: float = 0.0, model_path: str = "") -> tuple[list[Result], dict[str, str]]:
    """Single-voice rows of config ``name`` (:func:`load_bench_model`) for each engine (the Numba and TorchScript
    engines with the loop low-pass ``loop_lowpass``); also ``{engine: why}`` for those skipped."""
    import torch

    from realtime.engine.numba_engine import NumbaEngine, logit_error, precision_error
    from realtime.engine.torch_engine import TorchScriptEngine

    torch.set_num_threads(1)
    model, cfg = load_bench_model(name, model_path)
    r, s = cfg.residual_channels, cfg.skip_channels
    fp32_bytes = None
    results, skipped = [], {}
    for engine in engines:
        extra: dict = {}
        why = precision_error(PRECISION_ENGINES[engine], r, s) if engine in PRECISION_ENGINES else None
        if why:
            skipped[engine] = why
            continue
        if engine in PRECISION_ENGINES:
            e = NumbaEngine(model, seed=0, precision=PRECISION_ENGINES[engine])
            e.set_note(gate=1.0, pitch=60)
            e.set_loop_lowpass(loop_lowpass)
            n = int(16000 * seconds)
            fn = e.generate
            wbytes = e.weight_bytes_per_sample
            if engine != "numba":
                err = logit_error(model, PRECISION_ENGINES[engine], n=1000)
                extra["max_logit_err"], extra["rel_logit_err"] = round(err.max_abs, 4), round(err.relative, 5)
        elif engine == "torchscript":
            e = TorchScriptEngine(model, seed=0, device="cpu")
            e.set_loop_lowpass(loop_lowpass)
            n = 400
            fn = e.generate
            wbytes = None
        elif engine == "eager":
            eager = EagerIncremental(model)
            n = 150
            fn = eager.generate
            wbytes = None
        else:
            raise ValueError(engine)
        rate, all_rates = _median_rate(fn, n, runs)
        if wbytes is None:  # the float32 engines read the float32 weights
            if fp32_bytes is None:
                fp32_bytes = NumbaEngine(model, seed=0).weight_bytes_per_sample
            wbytes = fp32_bytes
        extra.update(_derived(cfg, rate, rate, wbytes, peak))
        if engine in PRECISION_ENGINES:  # the bandwidth roofline: reading this many bytes over and over
            from realtime.peaks import read_gbs

            extra["read_peak_gbs"] = round(read_gbs(wbytes), 1)
            extra["bandwidth_fraction"] = round(extra["gbytes_per_s"] / extra["read_peak_gbs"], 3)
        dot_peak = (dot_peaks or {}).get(dot_peak_kind(engine), 0.0)
        if dot_peak > 0:
            extra["dot_peak_fraction"] = round(extra["gflops"] / dot_peak, 3)
        results.append(Result(name, engine, rate, all_rates, extra))
    return results, skipped


def poly_precisions(spec: str, r: int, s: int) -> tuple[list[str], dict[str, str]]:
    """The comma-separated precisions of ``--poly-precisions`` this CPU runs for R/S channels, and why not the rest."""
    from realtime.engine.numba_engine import precision_error

    runnable, why_not = [], {}
    for p in (x for x in spec.split(",") if x):
        why = precision_error(p, r, s)
        if why:
            why_not[p] = why
        else:
            runnable.append(p)
    return runnable, why_not


def bench_poly(name: str, runs: int, precisions: list[str], voices: list[int], threads: list[int],
               seconds: float, peak: float, cpus: list[int], parallel: list[str], model_path: str = "") -> list[dict]:
    """Polyphony scaling: voices vs steps/s (= samples/s of each voice), per precision and thread count.

    threads=1 runs pinned to the first CPU; threads=2 ("threads") pins the calling thread to the first
    and the worker to the second CPU; "prange" lets Numba's two threads use both.
    """
    from realtime.engine.poly_engine import PolyEngine

    model, cfg = load_bench_model(name, model_path)
    rows = []
    for prec in precisions:
        for th in threads:
            for mode in (parallel if th > 1 and prec == precisions[0] else ["threads"]):
                _pin(cpus[:2] if th > 1 and mode == "prange" else cpus[:1])
                worker_cpu = cpus[1] if th > 1 and mode == "threads" and len(cpus) > 1 else None
                for v in voices:
                    if th > v:
                        continue
                    p = PolyEngine(model, voices=v, seed=0, precision=prec, threads=th, parallel=mode,
                                   max_block=512, worker_cpu=worker_cpu)
                    for k in range(v):
                        p.set_note(k, gate=1.0, pitch=48 + 3 * k)
                        p.set_conditioning(k, pitch=48 + 3 * k)
                    n = _calibrated_n(p.generate, seconds)
                    p.group_seconds[:] = [0.0, 0.0]
                    t0 = time.perf_counter()
                    rate, all_rates = _median_rate(p.generate, n, runs)
                    wall = time.perf_counter() - t0
                    p.close()
                    row = {"config": name, "engine": f"poly-{prec}", "precision": prec, "voices": v, "threads": th,
                           "parallel": mode if th > 1 else None, "cpus": min(th, len(cpus)),
                           "steps_per_s": round(rate, 1), "samples_per_s": round(rate * v, 1),
                           "rtf_16k": round(rate / 16000.0, 4), "runs": [round(x, 1) for x in all_rates]}
                    if th > 1 and mode == "threads":  # how busy each thread was, and the balanced split
                        row["thread_busy"] = [round(x / wall, 2) for x in p.group_seconds]
                        row["share_thread0"] = round(p.share, 2)
                    row.update(_derived(cfg, rate * v, rate, p.weight_bytes_per_sample, peak, th))
                    rows.append(row)
    _pin(cpus[:1])
    return rows


def trained_model_check(path: str) -> dict:
    """Reduced-precision logit errors (2000 samples, teacher-forced; nats and relative to the logit scale)
    and choose_engine() on a trained model file."""
    from realtime.engine.numba_engine import choose_engine, logit_error, usable_precisions
    from realtime.model.model_file import load_model

    model = load_model(path)
    chosen, why = choose_engine(model)
    cfg = model.config
    precisions = [p for p in usable_precisions(cfg.residual_channels, cfg.skip_channels) if p != "fp32"]
    errs = {p: logit_error(model, p, n=2000) for p in precisions}
    return {"config": f"model {path}", "auto_engine": chosen, "reason": why,
            "max_logit_err": {p: round(e.max_abs, 4) for p, e in errs.items()},
            "rel_logit_err": {p: round(e.relative, 5) for p, e in errs.items()}}


def poly_summary(rows: list[dict]) -> list[dict]:
    """Per config/precision/threads: most voices measured in real time at 16 kHz, and the capacity estimate."""
    out = {}
    for r in rows:
        key = (r["config"], r["precision"], r["threads"], r["parallel"])
        s = out.setdefault(key, {"config": r["config"], "summary": "polyphony", "precision": r["precision"],
                                 "threads": r["threads"], "parallel": r["parallel"], "cpus": r["cpus"],
                                 "voices_realtime_16k": 0, "capacity_voices_16k": 0.0})
        if r["steps_per_s"] >= 16000:
            s["voices_realtime_16k"] = max(s["voices_realtime_16k"], r["voices"])
        s["capacity_voices_16k"] = round(max(s["capacity_voices_16k"], r["samples_per_s"] / 16000.0), 2)
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--configs", default="r32s64l20,r64s128l20")
    ap.add_argument("--engines", default="numba,numba-int8,numba-bf16,numba-bf16dot,numba-int8dot,torchscript,eager")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio seconds per single-voice Numba run")
    ap.add_argument("--voices", default="1,2,4,8,16", help="polyphony: voice counts ('' to skip)")
    ap.add_argument("--threads", default="1,2", help="polyphony: thread counts")
    ap.add_argument("--poly-precisions", default="fp32,bf16,bf16dot,int8,int8dot",
                    help="polyphony precisions (the 'prange' comparison runs for the first only)")
    ap.add_argument("--poly-seconds", type=float, default=0.25, help="wall seconds per polyphony run")
    ap.add_argument("--parallel", default="threads,prange",
                    help="how threads=2 runs the two voice groups: threads (a worker thread), prange (Numba)")
    ap.add_argument("--no-auto", action="store_true", help="skip choose_engine() per config")
    ap.add_argument("--loop-lowpass", type=float, default=0.0, metavar="A",
                    help="single-voice engines with this loop low-pass (realtime/kernel/loop_lowpass.py; 0 = off)")
    ap.add_argument("--model", default="models/default/model.npz",
                    help="a trained model to check int8/bf16 logit errors and choose_engine() on ('' to skip), and "
                         f"the config {MODEL_CONFIG!r}")
    ap.add_argument("--cpus", default="", metavar="C,C",
                    help="the CPUs to use, in order: single-voice rows on the first, two-thread rows on the first two "
                         "(default: the process's affinity, in ascending order)")
    ap.add_argument("--targets", default="", metavar="T,T",
                    help="run the benchmark once per compile target (avx2, avxvnni, host: realtime.bench_targets) "
                         "with the other options, and compare them")
    a = ap.parse_args(argv)
    if a.targets:
        from realtime.bench_targets import main as per_target

        rest = _without_option(list(sys.argv[1:] if argv is None else argv), "--targets")
        return per_target([t for t in a.targets.split(",") if t], [x for x in rest if x != "--json"], a.json)
    training = training_state()
    busy = training == "running"
    cpus = [int(c) for c in a.cpus.split(",") if c] or _affinity()
    _pin(cpus[:1])
    from realtime.kernel import int8dot, isa
    from realtime.peaks import all_peaks

    target = isa.describe()
    peaks = all_peaks()
    peak = max(peaks["fp32_fma_256"], peaks["fp32_fma_512"])
    dot_peak = peaks["bf16_dot_512"]
    matvec = {p: round(dot_matvec_gflops(p), 1) for p in ("bf16dot", "int8dot")}
    engines = [e for e in a.engines.split(",") if e]
    voices = [int(v) for v in a.voices.split(",") if v]
    threads = [int(t) for t in a.threads.split(",") if t]
    rows, ratios, poly, autos, skips = [], [], [], [], []
    for name in a.configs.split(","):
        model, cfg = load_bench_model(name, a.model)
        results, skipped = bench_config(name, a.runs, engines, a.seconds, peak, peaks, a.loop_lowpass, a.model)
        res = {x.engine: x for x in results}
        rows += [x.row() for x in res.values()]
        skips += [{"config": name, "engine": e, "skipped": why} for e, why in skipped.items()]
        if "numba" in res:
            ratio = {"config": name, "training_running": busy, "loop_lowpass": a.loop_lowpass}
            best = max((e for e in res if e in PRECISION_ENGINES), key=lambda e: res[e].samples_per_s)
            for other in ("eager", "torchscript"):
                if other in res:
                    ratio[f"numba_over_{other}"] = round(res["numba"].samples_per_s / res[other].samples_per_s, 1)
                    ratio[f"best_over_{other}"] = round(res[best].samples_per_s / res[other].samples_per_s, 1)
            ratio["best_numba"] = best
            for e, p in PRECISION_ENGINES.items():
                if e != "numba" and e in res:
                    ratio[f"{p}_over_fp32"] = round(res[e].samples_per_s / res["numba"].samples_per_s, 2)
            ratios.append(ratio)
        if voices:
            runnable, why_not = poly_precisions(a.poly_precisions, cfg.residual_channels, cfg.skip_channels)
            skips += [{"config": name, "engine": f"poly-{p}", "skipped": why} for p, why in why_not.items()]
            poly += bench_poly(name, a.runs, runnable, voices, threads, a.poly_seconds, peak,
                               cpus, a.parallel.split(","), a.model)
        if not a.no_auto and name != MODEL_CONFIG:  # the model file's pick: trained_model_check below
            from realtime.engine.numba_engine import choose_engine

            chosen, why = choose_engine(model)
            autos.append({"config": name, "auto_engine": chosen, "reason": why})
    if a.model and os.path.isfile(a.model) and not a.no_auto:
        autos.append(trained_model_check(a.model))
    summary = poly_summary(poly)
    meta = {"fma_peak_gflops": round(peak, 1), "peaks_gflops": peaks, "dot_matvec_gflops": matvec,
            "cpus": len(cpus), "target": target, "int8dot_path": int8dot.path(),
            "training_running": busy, "training": training}
    if a.json:
        print(json.dumps(meta))
        for row in rows + poly:
            print(json.dumps({**row, "training_running": busy}))
        for r in skips + ratios + summary + autos:
            print(json.dumps(r))
        return 0
    int8_kind = dot_peak_kind("numba-int8dot")
    print(f"compiled for {target}; int8dot routine: {int8dot.INSTRUCTIONS.get(int8dot.path() or '', 'none')}")
    print(f"median of {a.runs} runs; peaks per core (GFLOP/s, measured): float32 FMA {peaks['fp32_fma_256']:.1f} "
          f"(256-bit) / {peaks['fp32_fma_512']:.1f} (512-bit)"
          + (f", bf16 dot products {dot_peak:.1f} (the bf16dot matrix-vector routine, L1-resident: "
             f"{matvec['bf16dot']:.1f})" if dot_peak else "")
          + (f", int8dot's instruction ({int8_kind}) {peaks[int8_kind]:.1f} GOP/s (its matrix-vector routine, "
             f"L1-resident: {matvec['int8dot']:.1f})" if int8_kind and peaks[int8_kind] else "")
          + (f", float16 FMA {peaks['fp16_fma_512']:.1f}" if peaks["fp16_fma_512"] else "")
          + f"; 'peak' = of the float32 FMA peak {peak:.1f}"
          + f"; {len(cpus)} CPU(s) available" + ("; a training run was using the machine" if busy else "")
          + ("; a training run was paused (SIGSTOP)" if training == "paused" else ""))
    rtf_heads = " ".join(f"{'RTF@' + str(r / 1000):>9}" for r in RATES)
    print(f"\n{'config':<12} {'engine':<14} {'samples/s':>10} {rtf_heads} {'GFLOP/s':>8} {'GB/s':>6} {'peak':>6} "
          f"{'logit err':>9}")
    for row in rows:
        err = row.get("max_logit_err")
        print(f"{row['config']:<12} {row['engine']:<14} {row['samples_per_s']:>10,.0f} "
              + " ".join(f"{row['rtf'][str(r)]:>9.3f}" for r in RATES)
              + f" {row['gflops']:>8.1f} {row['gbytes_per_s']:>6.1f} {row['peak_fraction']:>6.1%}"
              + (f" {err:>9.3g}" if err is not None else f" {'':>9}")
              + (f"  {row['bandwidth_fraction']:.0%} of {row['read_peak_gbs']:.0f} GB/s read"
                 if "bandwidth_fraction" in row else "")
              + (f"  ({row['dot_peak_fraction']:.1%} of its dot-product peak)" if "dot_peak_fraction" in row else ""))
    for r in skips:
        print(f"{r['config']} {r['engine']}: skipped ({r['skipped']})")
    for r in ratios:
        print(f"{r['config']}: " + ", ".join(f"{k.replace('_over_', '/')} {v}x" for k, v in r.items()
                                            if "_over_" in k) + f" (best = {r['best_numba']})")
    if poly:
        print("\npolyphony (samples/s per voice = steps/s; peak = of threads x one core's FMA peak)"
              f"\n{'config':<12} {'engine':<13} {'threads':<9} {'voices':>6} {'steps/s':>9} {'voice-samples/s':>16} "
              f"{'RTF/voice@16k':>13} {'GFLOP/s':>8} {'GB/s':>6} {'peak':>6}  thread busy")
        for row in poly:
            thr = f"{row['threads']}" + (f" {row['parallel']}" if row["parallel"] else "")
            busy_s = (" " + "/".join(f"{x:.0%}" for x in row["thread_busy"]) + f" share {row['share_thread0']:.2f}"
                      if "thread_busy" in row else "")
            print(f"{row['config']:<12} {row['engine']:<13} {thr:<9} {row['voices']:>6} "
                  f"{row['steps_per_s']:>9,.0f} {row['samples_per_s']:>16,.0f} {row['rtf_16k']:>13.2f} "
                  f"{row['gflops']:>8.1f} {row['gbytes_per_s']:>6.1f} {row['peak_fraction']:>6.1%} {busy_s}")
        for s in summary:
            par = f" {s['parallel']}" if s["parallel"] else ""
            print(f"{s['config']} {s['precision']} threads={s['threads']}{par} (cpus {s['cpus']}): "
                  f"{s['voices_realtime_16k']} voices measured in real time at 16 kHz; capacity "
                  f"~{s['capacity_voices_16k']} voices (best voice-samples/s / 16000)")
    for x in autos:
        errs = "".join(f"; logit error {p} {x['rel_logit_err'][p]:.3g} of the scale ({e:.3g} nats)"
                       for p, e in x.get("max_logit_err", {}).items())
        print(f"auto ({x['config']}): {x['reason']}{errs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
