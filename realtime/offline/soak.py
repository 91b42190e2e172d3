"""Offline soak: render a long random performance and watch memory, NaNs and recoveries.

    python -m realtime.offline.soak [--minutes 30] [--model PATH] [--preset PATH] [--seed N] [--json]

Random MIDI (notes of random length, program changes, CC sweeps on every mapped
CC, pitch bends) is applied at exact sample positions; audio is streamed
through the real Session (engine, watchdog, output stage) and discarded. Peak
RSS is sampled every simulated minute.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np


def random_performance(sample_rate: int, seconds: float, programs: list[int], ccs: list[int],
                       seed: int = 0) -> list[tuple[int, bytes]]:
    """A seeded random timeline of (sample, MIDI bytes)."""
    rng = np.random.default_rng(seed)
    tl: list[tuple[int, bytes]] = []
    t = 0.0
    while t < seconds:
        note = int(rng.integers(36, 85))
        dur = float(rng.uniform(0.05, 2.0))
        tl.append((int(t * sample_rate), bytes([0x90, note, int(rng.integers(1, 128))])))
        tl.append((int(min(t + dur, seconds) * sample_rate), bytes([0x80, note, 0])))
        r = rng.random()
        if r < 0.15 and programs:
            tl.append((int(t * sample_rate), bytes([0xC0, int(rng.choice(programs))])))
        elif r < 0.5 and ccs:  # a sweep of 16 steps over the note
            cc = int(rng.choice(ccs))
            for k in range(16):
                tl.append((int((t + dur * k / 16) * sample_rate), bytes([0xB0, cc, int(127 * k / 15)])))
        elif r < 0.6:
            tl.append((int((t + dur / 2) * sample_rate), bytes([0xE0, 0, int(rng.integers(0, 128))])))
        t += float(rng.uniform(0.05, 1.5))
    return sorted((e for e in tl if e[0] < seconds * sample_rate), key=lambda e: e[0])


def rss_mib() -> float:
    """Current resident set size in MiB (from /proc; falls back to the peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def soak(minutes: float, preset_path: str | None = None, model_path: str | None = None, seed: int = 0,
         block: int = 256) -> dict:
    from realtime.control.presets import load_preset, override
    from realtime.offline.demo import demo_programs
    from realtime.offline.render import Session, run_stream

    preset = load_preset(preset_path)
    if model_path:
        preset = override(preset, "model", path=model_path)
    session = Session.open(preset)
    session.keep_log = False
    sr = session.engine.sample_rate
    progs = demo_programs(session.controller.programs, session.controller.instruments)
    tl = random_performance(sr, minutes * 60.0, progs, sorted(preset.midi.cc), seed)

    class Meter:
        """Sink: counts non-finite output samples and events (keeps nothing)."""

        nan = 0
        events = 0

        def write(self, y: np.ndarray) -> None:
            if not np.isfinite(y).all():
                Meter.nan += int(np.count_nonzero(~np.isfinite(y)))

        def event(self, ev: dict) -> None:
            Meter.events += 1

    rss, marks = [], iter(range(1, 10 ** 6))
    next_mark = [next(marks)]

    def progress(pos: int) -> None:
        while pos >= next_mark[0] * 60 * sr:
            rss.append(round(rss_mib(), 2))
            next_mark[0] = next(marks)

    rss.append(round(rss_mib(), 2))  # minute 0
    t0 = time.perf_counter()
    run_stream(session, tl, int(minutes * 60 * sr), block, sink=Meter(), progress=progress, keep=False)
    wall = time.perf_counter() - t0
    ref = rss[min(5, len(rss) - 1)] if minutes >= 10 else rss[1 if len(rss) > 1 else 0]
    return {"minutes": minutes, "events": len(tl), "applied_events": Meter.events, "rtf": round(minutes * 60 / wall, 3),
            "rss_mib_per_minute": rss, "rss_growth_fraction": round((rss[-1] - ref) / ref, 4),
            "rss_reference_minute": 5 if minutes >= 10 else 1, "nan_samples": Meter.nan,
            "nonfinite_logits": session.engine.nonfinite_count, "recoveries": session.watchdog.recoveries,
            "output_nonfinite_replaced": session.stage.nonfinite}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.offline.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--preset")
    ap.add_argument("--model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = soak(a.minutes, a.preset, a.model, a.seed)
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
