"""The benchmark lists polyphony precisions the compile target cannot run as skipped instead of failing."""
from __future__ import annotations

from realtime.bench import poly_precisions
from realtime.kernel import bf16dot, int8dot


def test_poly_precisions_keep_what_runs_and_say_why_not_the_rest():
    runnable, why_not = poly_precisions("fp32,bf16,bf16dot,int8,int8dot,fp64", 32, 64)
    expected = ["fp32", "bf16"] + (["bf16dot"] if bf16dot.available()[0] else []) + ["int8"] \
        + (["int8dot"] if int8dot.available()[0] else [])
    assert runnable == expected
    assert "fp64" in why_not and "unknown precision" in why_not["fp64"]
    for p, isa in (("bf16dot", "AVX-512 BF16"), ("int8dot", "AVX2")):
        assert (p in why_not) == (p not in runnable)
        if p in why_not:
            assert isa in why_not[p]


def test_a_cpu_without_the_dot_instructions_skips_them(monkeypatch):
    monkeypatch.setattr(bf16dot, "available", lambda: (False, "no AVX-512 BF16 here"))
    monkeypatch.setattr(int8dot, "available", lambda: (False, "no AVX2 here"))
    runnable, why_not = poly_precisions("fp32,bf16dot,int8dot", 32, 64)
    assert runnable == ["fp32"]
    assert why_not == {"bf16dot": "bf16dot needs AVX-512 BF16: no AVX-512 BF16 here",
                       "int8dot": "int8dot needs AVX2: no AVX2 here"}
