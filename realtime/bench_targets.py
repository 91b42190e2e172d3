"""The benchmark per compile target: ``python -m realtime.bench --targets avx2,avxvnni,host [bench options]``.

Runs ``python -m realtime.bench --json [bench options]`` once per target (realtime.kernel.isa.TARGETS:
``avx2`` = a Haswell-class CPU, ``avxvnni`` = an Alder Lake-class one; ``host`` = this CPU), each in a
subprocess whose Numba compiles for that target (code built for a lower target runs here for real),
one after the other, and prints per target the single-voice and polyphony figures as ratios to fp32
on the same target. The first run per target compiles every kernel for it (minutes); Numba caches
them per target. Thread: main.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: precision engines in the order the table lists them
ORDER = ("numba", "numba-bf16", "numba-int8", "numba-bf16dot", "numba-int8dot")


def target_env(target: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) compiling for ``target``: any inherited NUMBA_CPU_* dropped,
    then realtime.kernel.isa.target_env's."""
    from realtime.kernel import isa

    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("NUMBA_CPU_")}
    env.update(isa.target_env(target))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_target(target: str, argv: list[str]) -> list[dict]:
    """The JSON records of ``python -m realtime.bench --json ARGV`` compiled for ``target`` (stderr passes through)."""
    out = subprocess.run([sys.executable, "-m", "realtime.bench", "--json", *argv], env=target_env(target),
                         cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def summarise(target: str, records: list[dict]) -> list[dict]:
    """One row per (config, precision): single-voice samples/s and polyphony (two threads: voices in real time
    at 16 kHz, capacity), each with its ratio to fp32 on the same target."""
    meta = records[0]
    single = {(r["config"], r["engine"]): r for r in records if "samples_per_s" in r and "voices" not in r}
    poly = {(r["config"], "numba" if r["precision"] == "fp32" else f"numba-{r['precision']}"): r
            for r in records if r.get("summary") == "polyphony" and r["threads"] == 2 and r["parallel"] == "threads"}
    rows = []
    for config in dict.fromkeys(c for c, _ in list(single) + list(poly)):
        for engine in ORDER:
            s, p = single.get((config, engine)), poly.get((config, engine))
            if s is None and p is None:
                continue
            s0, p0 = single.get((config, "numba")), poly.get((config, "numba"))
            row = {"target": target, "cpu": meta.get("target", ""), "int8dot": meta.get("int8dot_path"),
                   "training": meta.get("training"), "config": config, "engine": engine}
            if s:
                row["samples_per_s"] = s["samples_per_s"]
                row["rtf_16k"] = s["rtf_16k"]
                row["over_fp32"] = round(s["samples_per_s"] / s0["samples_per_s"], 2) if s0 else None
                if "rel_logit_err" in s:
                    row["rel_logit_err"] = s["rel_logit_err"]
            if p:
                row["poly_voices_realtime_16k"] = p["voices_realtime_16k"]
                row["poly_capacity_16k"] = p["capacity_voices_16k"]
                row["poly_over_fp32"] = round(p["capacity_voices_16k"] / p0["capacity_voices_16k"], 2) if p0 else None
            rows.append(row)
    for r in records:
        if "auto_engine" in r:
            rows.append({"target": target, "config": r["config"], "auto_engine": r["auto_engine"]})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'target':<9} {'config':<12} {'engine':<14} {'samples/s':>10} {'RTF@16k':>8} {'/fp32':>6}  "
          f"{'poly (2 threads): voices RT@16k':>31} {'capacity':>8} {'/fp32':>6}")
    for r in rows:
        if "auto_engine" in r:
            continue
        sv = (f"{r['samples_per_s']:>10,.0f} {r['rtf_16k']:>8.2f} {r['over_fp32'] or 0:>6.2f}x"
              if "samples_per_s" in r else f"{'':>10} {'':>8} {'':>7}")
        pv = (f"{r['poly_voices_realtime_16k']:>31} {r['poly_capacity_16k']:>8.1f} {r['poly_over_fp32'] or 0:>6.2f}x"
              if "poly_capacity_16k" in r else "")
        print(f"{r['target']:<9} {r['config']:<12} {r['engine']:<14} {sv} {pv}")
    seen = {}
    for r in rows:
        seen.setdefault(r["target"], (r.get("cpu"), r.get("int8dot"), r.get("training")))
    for t, (cpu, path, training) in seen.items():
        print(f"{t}: compiled for {cpu}; int8dot routine {path}; training run {training}")
    for r in rows:
        if "auto_engine" in r:
            print(f"{r['target']}: --engine auto on {r['config']} picks {r['auto_engine']}")


def main(targets: list[str], argv: list[str], as_json: bool = False) -> int:
    """Run the benchmark per target (``argv``: the other bench options) and print the comparison."""
    rows = []
    for t in targets:
        print(f"# {t}: python -m realtime.bench --json {' '.join(argv)}", file=sys.stderr, flush=True)
        rows += summarise(t, run_target(t, argv))
    if as_json:
        for r in rows:
            print(json.dumps(r))
    else:
        print_table(rows)
    return 0
