"""The compile target's instruction sets: read from Numba's target (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES), with
LLVM's feature implications, and the lower targets' environments name exactly their features."""
from __future__ import annotations

from numba.core import config

from realtime.kernel import isa


def test_features_apply_left_to_right_with_their_implications():
    on = isa.parse_features("+avx512vnni")
    assert {"avx512vnni", "avx512f", "avx2", "avx", "fma", "f16c", "sse4.2"} <= on and "avxvnni" not in on
    # turning a feature off turns off what needs it, and a later + turns it back on
    assert isa.parse_features("+avx512bf16,+avxvnni,-avx2") == {"avx", "sse4.2", "fma", "f16c"}
    assert "avx512vnni" in isa.parse_features("-avx512f,+avx512vnni")
    assert "avx512vnni" not in isa.parse_features("+avx512vnni,-avx512f")
    assert isa.parse_features("") == frozenset() and isa.parse_features("+sse2, -foo,junk") == {"sse2"}


def test_the_target_is_numbas_not_the_cpus(monkeypatch):
    monkeypatch.setattr(config, "CPU_NAME", "haswell")
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert isa.has("avx2", "fma") and not isa.has("avx512f") and not isa.has("avx2", "avxvnni")
    assert isa.target_name() == "haswell" and isa.describe() == "haswell (compile target)"
    monkeypatch.setattr(config, "CPU_FEATURES", None)  # NUMBA_CPU_NAME alone keeps this CPU's features
    assert isa.target_features() == isa.parse_features(isa.codegen.get_host_cpu_features())


def test_a_lower_targets_environment_names_exactly_its_features():
    for name, has, lacks in (("avx2", {"avx2", "fma"}, {"avxvnni", "avx512f", "avx512vnni", "avx512bf16"}),
                             ("avxvnni", {"avx2", "fma", "avxvnni"}, {"avx512f", "avx512vnni", "avx512bf16"})):
        env = isa.target_env(name)
        assert env["NUMBA_CPU_NAME"] == isa.TARGETS[name][0]
        on = isa.parse_features(env["NUMBA_CPU_FEATURES"])
        assert has <= on and not (lacks & on), name
        assert all(f"+{f}" in env["NUMBA_CPU_FEATURES"].split(",") for f in isa.TARGETS[name][1])
    assert isa.target_env("host") == {}
