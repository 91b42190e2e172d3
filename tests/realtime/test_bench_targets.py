"""The per-target benchmark: its subprocesses compile for the target asked, and its summary divides by fp32 of the same
target (pure functions on JSON records like ``python -m realtime.bench --json`` prints)."""
from __future__ import annotations

from realtime.bench import _without_option
from realtime.bench_targets import summarise, target_env


def test_a_targets_subprocess_compiles_for_it_and_drops_an_inherited_target():
    env = target_env("avx2", {"NUMBA_CPU_NAME": "skylake", "NUMBA_CPU_FEATURES": "+avx512f", "HOME": "/h"})
    assert env["NUMBA_CPU_NAME"] == "haswell" and "-avx512f" in env["NUMBA_CPU_FEATURES"].split(",")
    assert env["HOME"] == "/h" and env["PYTHONPATH"]
    host = target_env("host", {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2"})
    assert "NUMBA_CPU_NAME" not in host and "NUMBA_CPU_FEATURES" not in host


def test_the_other_options_pass_through_without_targets():
    argv = ["--targets", "avx2,host", "--runs", "3", "--targets=x", "--configs", "model"]
    assert _without_option(argv, "--targets") == ["--runs", "3", "--configs", "model"]


def test_the_summary_gives_ratios_to_fp32_on_the_same_target():
    records = [
        {"target": "haswell (compile target)", "int8dot_path": "avx2", "training": "none"},
        {"config": "model", "engine": "numba", "samples_per_s": 100000.0, "rtf_16k": 6.25},
        {"config": "model", "engine": "numba-int8dot", "samples_per_s": 130000.0, "rtf_16k": 8.125,
         "rel_logit_err": 0.0059},
        {"config": "model", "engine": "poly-int8dot", "precision": "int8dot", "voices": 8, "steps_per_s": 17000.0,
         "samples_per_s": 136000.0},  # a polyphony row: not a single-voice figure
        {"config": "model", "summary": "polyphony", "precision": "fp32", "threads": 2, "parallel": "threads",
         "voices_realtime_16k": 8, "capacity_voices_16k": 11.0},
        {"config": "model", "summary": "polyphony", "precision": "int8dot", "threads": 2, "parallel": "threads",
         "voices_realtime_16k": 12, "capacity_voices_16k": 14.3},
        {"config": "model", "summary": "polyphony", "precision": "int8dot", "threads": 1, "parallel": None,
         "voices_realtime_16k": 4, "capacity_voices_16k": 7.0},  # one thread: not in the two-core columns
        {"config": "model models/default/model.npz", "auto_engine": "numba-int8dot", "reason": "..."},
    ]
    rows = summarise("avx2", records)
    fp32, int8dot, auto = rows
    assert fp32["engine"] == "numba" and fp32["over_fp32"] == 1.0 and fp32["poly_over_fp32"] == 1.0
    assert int8dot["samples_per_s"] == 130000.0 and int8dot["over_fp32"] == 1.3
    assert int8dot["poly_voices_realtime_16k"] == 12 and int8dot["poly_over_fp32"] == 1.3
    assert int8dot["int8dot"] == "avx2" and int8dot["rel_logit_err"] == 0.0059
    assert auto == {"target": "avx2", "config": "model models/default/model.npz", "auto_engine": "numba-int8dot"}
