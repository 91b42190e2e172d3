"""The instruction sets of Numba's compile target: what the kernels may emit. Thread: any (set-up, typing time).

Numba compiles for ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` when they are set, else for this
CPU; code built for a lower target runs on a higher CPU, so a lower target can be tried here
(``python -m realtime.bench --targets avx2,avxvnni``). Every probe that decides which
instructions a kernel emits reads :func:`target_features`, never the host CPU: an AVX-512
intrinsic compiled for an AVX2 target aborts the process inside LLVM ("Do not know how to split
the result of this operator!").

With ``NUMBA_CPU_FEATURES`` set, only the features it enables count (LLVM would add the CPU
name's defaults; ignoring them can only cost a faster path, never crash), so give the whole
list, as :func:`target_env` does.
"""
from __future__ import annotations

from llvmlite import binding as llvm_binding
from numba.core import codegen, config

#: a feature -> the features it needs (LLVM's implications, for the few the kernels ask about): ``+f`` turns
#: these on too, ``-f`` turns off every feature that needs ``f``
REQUIRES = {
    "avx": ("sse4.2",), "avx2": ("avx",), "fma": ("avx",), "f16c": ("avx",), "avxvnni": ("avx2",),
    "avx512f": ("avx2", "fma", "f16c"), "avx512bw": ("avx512f",), "avx512dq": ("avx512f",),
    "avx512vl": ("avx512f",), "avx512vnni": ("avx512f",), "avx512bf16": ("avx512bw",),
    "avx512fp16": ("avx512bw", "avx512dq", "avx512vl"),
}

#: lower targets to compile for (name -> LLVM CPU name, the features it has beyond baseline x86-64):
#: ``avx2`` = Haswell (Intel 2013-2020 client CPUs, AMD Zen 1-3), ``avxvnni`` = an Alder Lake-like CPU
#: (Intel client CPUs since 2021: AVX2 plus VNNI on 256-bit vectors, no AVX-512)
_HASWELL = ("avx", "avx2", "bmi", "bmi2", "cmov", "crc32", "cx16", "cx8", "f16c", "fma", "fsgsbase", "fxsr",
            "invpcid", "lzcnt", "mmx", "movbe", "pclmul", "popcnt", "rdrnd", "sahf", "sse", "sse2", "sse3",
            "sse4.1", "sse4.2", "ssse3", "xsave", "xsaveopt", "64bit")
TARGETS = {
    "avx2": ("haswell", _HASWELL),
    "avxvnni": ("alderlake", _HASWELL + ("avxvnni", "adx", "aes", "clflushopt", "clwb", "gfni", "movdir64b",
                                         "movdiri", "prfchw", "rdpid", "rdseed", "serialize", "sha", "vaes",
                                         "vpclmulqdq", "xsavec", "xsaves")),
}


def parse_features(spec: str) -> frozenset[str]:
    """The features an LLVM feature string (``+avx2,-avx512f,...``, applied left to right) leaves on."""
    on: set[str] = set()

    def enable(f: str) -> None:
        if f not in on:
            on.add(f)
            for g in REQUIRES.get(f, ()):
                enable(g)

    def disable(f: str) -> None:
        on.discard(f)
        for g, needs in REQUIRES.items():
            if f in needs and g in on:
                disable(g)

    for item in (s.strip() for s in spec.split(",")):
        if len(item) > 1 and item[0] in "+-":
            (enable if item[0] == "+" else disable)(item[1:])
    return frozenset(on)


def target_features() -> frozenset[str]:
    """The CPU features Numba compiles for: ``NUMBA_CPU_FEATURES`` when set, else this CPU's (as Numba
    reads them, so ``NUMBA_ENABLE_AVX=0`` counts)."""
    spec = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    return parse_features(spec)


def target_name() -> str:
    """The CPU name Numba compiles for (``NUMBA_CPU_NAME`` or this CPU's)."""
    return config.CPU_NAME or llvm_binding.get_host_cpu_name()


def describe() -> str:
    """The target in a few words, for messages: ``haswell (compile target)`` or this CPU's name."""
    lowered = config.CPU_NAME is not None or config.CPU_FEATURES is not None
    return f"{target_name()} (compile target)" if lowered else target_name()


def has(*features: str) -> bool:
    """Does the compile target have all of ``features``?"""
    return set(features) <= target_features()


def target_env(name: str) -> dict[str, str]:
    """Environment variables that make Numba compile for :data:`TARGETS` ``name`` (``host``: none, and any
    inherited target dropped): the CPU name and an explicit feature list, this CPU's features outside the
    target's turned off, so the CPU name's defaults add nothing."""
    if name == "host":
        return {}
    cpu, features = TARGETS[name]
    host = set(llvm_binding.get_host_cpu_features()) | set(features)
    spec = ",".join(("+" if f in features else "-") + f for f in sorted(host))
    return {"NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": spec}
