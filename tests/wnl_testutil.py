"""Shared test helpers: small random models and ways to run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from realtime.kernel import bf16dot, int8dot
from realtime.model.config import LOCAL_CHANNELS, ConditioningSpec, WaveNetConfig
from realtime.model.model_file import ModelFile, random_model

ROOT = Path(__file__).resolve().parent.parent

#: small but complete: 2 stacks, every conditioning input the engines play (level and lag included; not a
#: source-filter model's ``pred``), 3 instruments
SMALL = WaveNetConfig(16, 32, 6, 2, 16000,
                      conditioning=ConditioningSpec(8, 8, True, tuple(c for c in LOCAL_CHANNELS if c != "pred"),
                                                    ("a", "b", "c")))


NEEDS_BF16DOT = pytest.mark.skipif(not bf16dot.available()[0], reason=bf16dot.available()[1])
NEEDS_INT8DOT = pytest.mark.skipif(not int8dot.available()[0], reason=int8dot.available()[1])


def small_model(seed: int = 0, scale: float = 2.0, cfg: WaveNetConfig = SMALL) -> ModelFile:
    """A random model whose logits are spread enough that sampling is not trivial."""
    return random_model(cfg, seed=seed, scale=scale)


def classes_of(audio: np.ndarray) -> np.ndarray:
    """Mu-law classes of engine output (the decode table inverts exactly)."""
    from realtime.model import mulaw

    return mulaw.encode(audio)


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python run_live.py ARGS`` and capture its output."""
    return _run_python([str(ROOT / "run_live.py"), *args], timeout, cwd)


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m MODULE ARGS`` (e.g. ``models.export``) from the project root and capture its output."""
    return _run_python(["-m", module, *args], timeout, None)


def _run_python(argv: list[str], timeout: float, cwd: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=env)


def write_preset(path: Path, model_path: Path, extra: str = "") -> Path:
    """A minimal preset pointing at ``model_path``."""
    path.write_text(f'[model]\npath = "{model_path}"\nreprime = "off"\n{extra}\n')
    return path
