"""What the two dot-product precisions (bf16dot, int8dot) share: they play like fp32, and where a
model's shape or the CPU cannot run them they are refused with a clear one-line error and
``--engine auto`` skips them."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import NEEDS_BF16DOT, NEEDS_INT8DOT, small_model

from realtime.engine import numba_engine
from realtime.engine.numba_engine import choose_engine, engine_from_name, usable_precisions
from realtime.model.config import WaveNetConfig
from realtime.model.model_file import random_model

#: precision, the instruction set it needs at least
DOT = [pytest.param("bf16dot", "AVX-512 BF16", marks=NEEDS_BF16DOT, id="bf16dot"),
       pytest.param("int8dot", "AVX2", marks=NEEDS_INT8DOT, id="int8dot")]


@pytest.mark.parametrize("precision,isa", DOT)
def test_generates_audio_like_fp32(precision, isa):
    model = small_model(seed=6)
    outs = {}
    for name in ("numba", f"numba-{precision}"):
        e = engine_from_name(name, model, seed=4)
        e.set_note(gate=1.0, pitch=60.0)
        outs[name] = e.generate(2000)
    out = outs[f"numba-{precision}"]
    assert np.all(np.isfinite(out)) and len(np.unique(out)) > 20
    # the same uniforms; a rounding difference soon flips a draw, after which the two wander apart,
    # but they stay the same kind of signal
    rms = {k: float(np.sqrt(np.mean(o ** 2))) for k, o in outs.items()}
    assert 0.5 < rms[f"numba-{precision}"] / rms["numba"] < 2.0


@pytest.mark.parametrize("precision,isa", DOT)
def test_shapes_it_cannot_pack_get_a_clear_error(precision, isa):
    model = random_model(WaveNetConfig(24, 48, 2, 1), seed=0)
    assert precision not in usable_precisions(24, 48)
    with pytest.raises(ValueError, match=rf"numba-{precision}: .*multiples of 16 \(R24/S48\)"):
        engine_from_name(f"numba-{precision}", model)


@pytest.mark.parametrize("precision,isa", [("bf16dot", "AVX-512 BF16"), ("int8dot", "AVX2")])
def test_a_cpu_without_the_instruction_is_refused_and_auto_skips_it(monkeypatch, precision, isa):  # any CPU
    monkeypatch.setattr(getattr(numba_engine, precision), "available",
                        lambda: (False, f"this CPU (testcpu) has no {isa}"))
    model = small_model(seed=1)
    assert precision not in usable_precisions(16, 32)
    with pytest.raises(ValueError, match=rf"needs {isa}: this CPU \(testcpu\)"):
        engine_from_name(f"numba-{precision}", model)
    name, reason = choose_engine(model, seconds=0.02)
    assert name != f"numba-{precision}" and f"{precision} unusable" in reason
