"""This core's peaks, measured (for the benchmark's roofline): arithmetic and read bandwidth.

Each loop keeps ``CHAINS`` independent accumulators in vector registers and
updates each of them once per iteration with one instruction: a float32 FMA
(256- or 512-bit), a bfloat16 dot product (``vdpbf16ps``, AVX-512 BF16), a
float16 FMA (AVX-512 FP16), an int8 dot product (``vpdpbusd``: AVX-512 VNNI at 512
bits, AVX-VNNI at 256) or, for AVX2's int8dot routine, an int16 multiply-add
(``vpmaddwd`` and the ``vpaddd`` that accumulates it); integer "FLOPs" are
multiply-adds counted as two operations each, like an FMA. Every accumulator feeds the
returned value, so LLVM cannot drop any. No memory traffic: this is what the execution
units can do, the ceiling for any kernel. Emitted as LLVM IR from Numba intrinsics
(Numba's auto-vectoriser alone uses 256-bit vectors here; see ``realtime.bench``).
Which instructions exist is the compile target's say (realtime.kernel.isa), not the CPU's.
"""
from __future__ import annotations

import time

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from realtime.kernel import aligned, isa
from realtime.kernel.bf16dot import _BFloat

#: independent accumulators: enough to hide the latency of any of the instructions measured here
CHAINS = 16
#: kind -> (LLVM function, lanes, element type, FLOPs per instruction, CPU feature needed)
KINDS = {
    "fp32_fma_256": ("llvm.fma.v8f32", 8, ir.FloatType(), 16, None),
    "fp32_fma_512": ("llvm.fma.v16f32", 16, ir.FloatType(), 32, "avx512f"),
    "bf16_dot_512": ("llvm.x86.avx512bf16.dpbf16ps.512", 16, ir.FloatType(), 64, "avx512bf16"),
    "fp16_fma_512": ("llvm.fma.v32f16", 32, ir.HalfType(), 64, "avx512fp16"),
    "int8_dot_512": ("llvm.x86.avx512.vpdpbusd.512", 16, ir.IntType(32), 128, "avx512vnni"),
    "int8_dot_256": ("llvm.x86.avx512.vpdpbusd.256", 8, ir.IntType(32), 64, "avxvnni"),
    "int16_madd_256": ("llvm.x86.avx2.pmadd.wd", 8, ir.IntType(32), 32, "avx2"),
}


def _loop(kind: str):
    fname, lanes, elem, _, _ = KINDS[kind]
    vt = ir.VectorType(elem, lanes)
    integer = isinstance(elem, ir.IntType)

    @intrinsic
    def run(typingctx, n):
        def codegen(context, builder, signature, args):
            n64 = context.cast(builder, args[0], signature.args[0], types.int64)
            if kind == "int16_madd_256":  # acc += pmaddwd(acc, a): acc feeds it, so it stays in the loop
                w16 = ir.VectorType(ir.IntType(16), 2 * lanes)
                madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [w16, w16]), fname)
                a = builder.load(cgutils.alloca_once_value(builder, ir.Constant(w16, [1] * (2 * lanes))))

                def step(acc):
                    return builder.add(acc, builder.call(madd, [builder.bitcast(acc, w16), a]))
            else:
                if kind.startswith("bf16"):
                    bv = ir.VectorType(_BFloat(), 2 * lanes)
                    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, bv, bv]), fname)
                    one = builder.bitcast(ir.Constant(ir.VectorType(ir.IntType(16), 2 * lanes), [0x3F7F] * (2 * lanes)),
                                          bv)
                else:
                    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), fname)
                    one = ir.Constant(vt, [0x01010101 if integer else 0.999] * lanes)
                a = builder.load(cgutils.alloca_once_value(builder, one))

                def step(acc):
                    return builder.call(fn, [acc, a, a])
            slots = [cgutils.alloca_once_value(builder, ir.Constant(vt, [(i + 1) if integer else 1e-3 * (i + 1)] * lanes))
                     for i in range(CHAINS)]
            with cgutils.for_range(builder, n64):
                for s in slots:
                    builder.store(step(builder.load(s)), s)
            total = ir.Constant(ir.DoubleType(), 0.0)
            for s in slots:  # every chain feeds the result
                lane0 = builder.extract_element(builder.load(s), ir.Constant(ir.IntType(32), 0))
                wide = builder.sitofp(lane0, ir.DoubleType()) if integer else builder.fpext(lane0, ir.DoubleType())
                total = builder.fadd(total, wide)
            return total

        return types.float64(n), codegen

    @njit(nogil=True)
    def loop(n):
        return run(n)

    return loop


def available(kind: str) -> bool:
    """Can the compile target (and LLVM) run ``kind``?"""
    feature = KINDS[kind][4]
    if kind.startswith(("bf16", "fp16")) and llvm_binding.llvm_version_info < (17,):
        return False
    return feature is None or isa.has(feature)


def best_rate(run, work: float, n: int, seconds: float) -> float:
    """Best of 3 timed ``run(n)`` calls, in units of ``work`` per repetition per ns (i.e. G/s).

    ``run(n)`` repeats the measured loop n times; after a warm-up call, ``n`` is scaled so the
    three calls take ~``seconds`` together.
    """
    run(1)  # compile / warm up
    t0 = time.perf_counter()
    run(n)
    n = max(n, int(n * seconds / 3 / max(time.perf_counter() - t0, 1e-9)))
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        run(n)
        best = max(best, n * work / (time.perf_counter() - t0) / 1e9)
    return best


def peak_gflops(kind: str, seconds: float = 0.2) -> float:
    """GFLOP/s of ``kind`` on this core (best of 3 timed loops), or 0 when the compile target lacks it."""
    if not available(kind):
        return 0.0
    return best_rate(_loop(kind), KINDS[kind][3] * CHAINS, 100_000, seconds)


@njit(nogil=True, fastmath=True, cache=True)
def _read(a, reps):
    s = np.float32(0.0)
    for _ in range(reps):
        for i in range(a.shape[0]):
            s += a[i]
    return s


def read_gbs(nbytes: int, seconds: float = 0.2) -> float:
    """Read bandwidth (GB/s, best of 3) of one core sweeping a buffer of ``nbytes`` over and over: the
    bandwidth ceiling of a kernel that streams that many bytes of weights per step (L1, L2 or L3
    speed, depending on the size). A vectorised float32 sum."""
    a = aligned.zeros(max(16, int(nbytes) // 4), np.float32)  # as the engines' weights are
    a[:] = 1.0
    return best_rate(lambda reps: _read(a, reps), a.nbytes, max(1, int(2e8 / a.nbytes)), seconds)


def all_peaks(seconds: float = 0.2) -> dict[str, float]:
    """{kind: GFLOP/s} for every kind in :data:`KINDS` (0 for those the compile target lacks)."""
    return {k: round(peak_gflops(k, seconds), 1) for k in KINDS}
