"""The effect chain processed block by block equals the whole signal processed at once (state carries
across blocks: reset=False, prepared once for the largest block), for every deterministic built-in, with
blocks of any size, and with a parameter change at a block boundary."""
from __future__ import annotations

import numpy as np
import pytest

from realtime.sound.effects import BUILTINS, MAX_BLOCK, EffectChain

SR = 16000
#: settings that make each effect audible (a default Compressor, ratio 1, does nothing)
AUDIBLE = {
    "Reverb": {"room_size": 0.8, "wet_level": 0.5},
    "Delay": {"delay_seconds": 0.05, "feedback": 0.5, "mix": 0.5},
    "Chorus": {"depth": 0.5, "mix": 0.5},
    "Phaser": {"depth": 0.8, "feedback": 0.5},
    "Distortion": {"drive_db": 30.0},
    "LadderFilter": {"cutoff_hz": 500.0, "resonance": 0.5},
    "Compressor": {"threshold_db": -30.0, "ratio": 8.0},
    "Gain": {"gain_db": -6.0},
    "Limiter": {"threshold_db": -20.0},
    "NoiseGate": {"threshold_db": -20.0},
    "HighpassFilter": {"cutoff_frequency_hz": 1000.0},
    "LowpassFilter": {"cutoff_frequency_hz": 500.0},
    "PeakFilter": {"cutoff_frequency_hz": 800.0, "gain_db": 12.0},
    "HighShelfFilter": {"cutoff_frequency_hz": 2000.0, "gain_db": -12.0},
    "LowShelfFilter": {"cutoff_frequency_hz": 300.0, "gain_db": 12.0},
    "Bitcrush": {"bit_depth": 4.0},
    "Clipping": {"threshold_db": -20.0},
    "Invert": {},
}
#: block sizes that change from block to block: one sample, odd sizes, one larger than any before, a live block
SIZES = [1, 5, 300, 256, 4000, 7, 1024]


def signal(n: int = 3 * SR) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.25) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def chain(kind: str) -> EffectChain:
    return EffectChain([{"type": kind, **AUDIBLE[kind]}], SR)


def blockwise(c: EffectChain, x: np.ndarray, sizes: list[int], change: tuple[int, str, float] | None = None):
    out, pos, i = [], 0, 0
    while pos < len(x):
        n = sizes[i % len(sizes)]
        if change is not None and pos < change[0] < pos + n:
            n = change[0] - pos  # a control change takes effect at a block boundary
        if change is not None and pos == change[0]:
            c.set_param(change[1], change[2])
        out.append(c.process(x[pos:pos + n].copy()))
        pos, i = pos + n, i + 1
    return np.concatenate(out)


def test_every_builtin_is_covered():
    assert set(AUDIBLE) == set(BUILTINS)


@pytest.mark.parametrize("kind", sorted(AUDIBLE))
def test_block_by_block_equals_whole_signal(kind):
    x = signal()
    whole = chain(kind).process(x.copy())
    if kind != "Invert":
        assert np.abs(whole - x).max() > 1e-3  # the effect does something to this signal
    np.testing.assert_array_equal(blockwise(chain(kind), x, SIZES), whole)
    np.testing.assert_array_equal(blockwise(chain(kind), x, [256]), whole)


@pytest.mark.parametrize("kind", sorted(k for k in AUDIBLE if BUILTINS[k]))
def test_a_parameter_change_at_a_block_boundary_does_not_depend_on_the_blocks(kind):
    x = signal()
    param = next(iter(BUILTINS[kind]))
    change = (SR + 123, f"fx1.{param}", 0.9)
    a = blockwise(chain(kind), x, [256], change)
    b = blockwise(chain(kind), x, SIZES, change)
    np.testing.assert_array_equal(a, b)
    unchanged = chain(kind).process(x.copy())
    np.testing.assert_array_equal(a[:change[0]], unchanged[:change[0]])


def test_blocks_longer_than_the_prepared_size_are_split():
    x = signal(3 * MAX_BLOCK + 17)
    whole = chain("Reverb").process(x.copy())
    np.testing.assert_array_equal(blockwise(chain("Reverb"), x, [100, 2 * MAX_BLOCK + 3]), whole)
    # a fresh pedalboard given the whole signal at once (its own 8192-sample buffers) agrees
    import pedalboard

    ref = pedalboard.Pedalboard([pedalboard.Reverb(**AUDIBLE["Reverb"])]).process(x, SR)
    np.testing.assert_array_equal(whole, ref)
