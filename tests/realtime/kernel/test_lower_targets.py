"""Compiled for a lower CPU: the equivalence and precision tests pass, and int8dot plays the same samples.

Code built for a lower target runs on a higher CPU, so an AVX2 machine (realtime.kernel.isa.TARGETS
``avx2``: Haswell, no AVX-512, no VNNI) is emulated here by a subprocess whose Numba compiles for it:
every CPU-feature probe must follow that target, or LLVM aborts on an AVX-512 intrinsic ("Do not know
how to split the result of this operator!"). Numba caches the kernels per target, so after the first
run (which compiles the fp32 and the reduced-precision kernels for AVX2: a few minutes) this takes
well under a minute.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from wnl_testutil import NEEDS_INT8DOT, ROOT

from realtime.bench_targets import target_env

#: the equivalence and precision tests (the dot-product routines' own tests included)
TESTS = ("tests/realtime/engine/test_equivalence.py", "tests/realtime/kernel/test_precision.py",
         "tests/realtime/kernel/test_int8dot.py", "tests/realtime/kernel/test_dot_precisions.py")

#: int8dot and fp32 samples of a small model, printed as mu-law classes
PLAY = """
import sys
sys.path.insert(0, "tests")
from wnl_testutil import classes_of, small_model
from realtime.engine.numba_engine import NumbaEngine
from realtime.kernel import int8dot, isa
print(int8dot.path(), isa.has("avx512f"))
for p in ("fp32", "int8dot"):
    e = NumbaEngine(small_model(seed=6), seed=4, precision=p)
    e.set_note(gate=1.0, pitch=60.0)
    print(p, " ".join(map(str, classes_of(e.generate(1500)))))
"""


def _python(target: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=target_env(target), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_the_equivalence_and_precision_tests_pass_compiled_for_avx2():
    r = _python("avx2", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", *TESTS, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1]


@pytest.mark.slow
@NEEDS_INT8DOT
def test_int8dot_plays_the_same_samples_compiled_for_avx2():
    """The AVX2 routine sums the same integers as the VNNI ones and rounds them once: sample for sample the same
    audio as this CPU's build (fp32 too: the rest of the kernel does not depend on the vector width)."""
    r = _python("avx2", "-c", PLAY, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "avx2 False"  # the subprocess really compiled for AVX2, without AVX-512
    from wnl_testutil import classes_of, small_model

    from realtime.engine.numba_engine import NumbaEngine

    for line in lines[1:]:
        precision, classes = line.split(" ", 1)
        e = NumbaEngine(small_model(seed=6), seed=4, precision=precision)
        e.set_note(gate=1.0, pitch=60.0)
        here = classes_of(e.generate(1500))
        assert len(np.unique(here)) > 20
        np.testing.assert_array_equal(np.array(classes.split(), np.int64), here, err_msg=precision)
