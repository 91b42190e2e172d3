"""A source-filter model played by the engines (issue 37, step 4): the network's sample is the excitation of the
envelope bank's all-pole filter. The Numba kernel (every precision) and TorchScript compute the same samples; the
filter, gain and emphasis are training's arithmetic (realtime.model.source_filter) bit for bit, and the kernel's
logits are the PyTorch parallel forward's over the same inputs; blocks, voices and priming change nothing."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from envelope_bank_data import make_bank
from wnl_testutil import NEEDS_BF16DOT, NEEDS_INT8DOT, SMALL

from models.wavenet import WaveNet, import_weights
from realtime.engine.numba_engine import NumbaEngine
from realtime.engine.poly_engine import PolyEngine
from realtime.engine.torch_engine import TorchScriptEngine
from realtime.model import local_cond, mulaw
from realtime.model import source_filter as sf
from realtime.model.config import LOCAL_CHANNELS, SourceFilterSpec
from realtime.model.envelope import EnvelopeBank
from realtime.model.model_file import random_model

SF_CFG = dataclasses.replace(
    SMALL, conditioning=dataclasses.replace(SMALL.conditioning, local=("gate", "f0_sin", "f0_cos", "level", "lag",
                                                                       "pred")),
    source_filter=SourceFilterSpec())
N = 2400  # > several receptive fields of the small model (127 samples), across a key-up


def formant_lsf(frames: int, shift: float) -> np.ndarray:
    """(frames, ORDER) LSFs of three formants (500, 1500, 2500 Hz at 16 kHz) whose first one moves by ``shift``."""
    out = []
    for f in range(frames):
        a = np.array([1.0])
        for hz, bw in ((500 + shift * np.sin(0.2 * f), 120), (1500, 200), (2500, 300)):
            r, th = np.exp(-np.pi * bw / 16000), 2 * np.pi * hz / 16000
            a = np.convolve(a, [1.0, -2 * r * np.cos(th), r * r])
        out.append(sf.lpc_to_lsf(np.concatenate([a, np.zeros(sf.ORDER + 1 - len(a))])))
    return np.array(out, np.float32)


def sf_model(seed: int = 0):
    """A random source-filter model with an envelope bank of resonant frames: instrument 0 at pitches 60, 62 and
    instrument 1 at 48 (tests/envelope_bank_data's notes and gains)."""
    m = random_model(SF_CFG, seed=seed, scale=2.0)
    # the excitation's classes centred on 0, about 8 classes wide, as a trained network's are (a random output head
    # draws from all 256 alike: an excitation ten times the gain, which a resonant filter then runs away with)
    m.weights["b_out2"] = (m.weights["b_out2"] - ((np.arange(256) - 127.5) / 8.0) ** 2).astype(np.float32)
    b = make_bank()
    n = int(b.n_frames[0])
    lsf = np.concatenate([formant_lsf(n, 40.0 * (k + 1)) for k in range(len(b.start))])
    m.envelopebank = EnvelopeBank(lsf, b.gain, b.start, b.n_frames, b.release, b.tonal, b.instrument, b.pitch,
                                  b.velocity, b.hop)
    return m


def drive(e, n: int = N, blocks=(N,), forced: np.ndarray | None = None) -> np.ndarray:
    """A note on instrument 0 that glides 60 -> 61.5 and is released two thirds in; generated in ``blocks``."""
    e.set_conditioning(pitch=60, instrument=0, velocity=80)
    e.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    e.set_note(pitch=61.5, glide_s=0.03)
    if forced is not None:
        return e.teacher_force(forced)
    out, done, i = [], 0, 0
    while done < n:
        m = min(blocks[i % len(blocks)], n - done)
        if done <= 2 * n // 3 < done + m:  # the key-up, at its exact sample
            k = 2 * n // 3 - done
            out.append(e.generate(k).copy())
            e.set_note(gate=0.0)
            m -= k
            done += k
        out.append(e.generate(m).copy())
        done += m
        i += 1
    return np.concatenate(out)


def test_a_source_filter_model_sounds_at_the_banks_level():
    e = NumbaEngine(sf_model(), seed=0)
    x = drive(e)
    assert np.isfinite(x).all() and e.nonfinite_count == 0
    assert len(np.unique(mulaw.encode(x))) > 30  # really sampling
    held, rest = x[800:1500], x[-300:]
    assert np.sqrt(np.mean(held ** 2)) > 1e-3
    assert np.sqrt(np.mean(rest ** 2)) < 0.5 * np.sqrt(np.mean(held ** 2))  # the release follows the bank


@pytest.mark.parametrize("blocks", [(1, 7, 256), (64,), (333, 5)])
@pytest.mark.parametrize("precision", ["fp32", "int8", "bf16",
                                       pytest.param("bf16dot", marks=NEEDS_BF16DOT),
                                       pytest.param("int8dot", marks=NEEDS_INT8DOT)])
def test_blocks_change_nothing(precision, blocks):
    m = sf_model(seed=1)
    one = drive(NumbaEngine(m, seed=4, precision=precision))
    split = drive(NumbaEngine(m, seed=4, precision=precision), blocks=blocks)
    np.testing.assert_array_equal(one, split)


def test_numba_and_torchscript_play_the_same_samples():
    m = sf_model(seed=2)
    x = drive(NumbaEngine(m, seed=11))
    y = drive(TorchScriptEngine(m, seed=11, device="cpu"))
    assert len(np.unique(mulaw.encode(x))) > 30
    np.testing.assert_array_equal(x, y)


def training_recursion(a: np.ndarray, g: np.ndarray, k: np.ndarray):
    """What training computes (realtime.model.source_filter.teacher_forced's loop, no noise) for excitation classes
    ``k`` along LPC rows ``a`` and gains ``g``: the pre-emphasised signal s, the predictions p, the output."""
    n = len(k)
    p, s = np.zeros(n), np.zeros(n)
    for t in range(n):
        acc = 0.0
        for j in range(1, sf.ORDER + 1):
            acc -= a[t, j] * (s[t - j] if t - j >= 0 else 0.0)
        p[t] = acc
        s[t] = acc + max(g[t], sf.GAIN_FLOOR) * sf.EXC_SCALE * np.float64(mulaw.DECODE_TABLE[k[t]])
    return s, p, sf.de_emphasis(s).astype(np.float32)


@pytest.mark.parametrize("engine_cls", [NumbaEngine, TorchScriptEngine])
def test_the_filter_is_trainings_and_the_logits_the_parallel_forwards(engine_cls):
    m = sf_model(seed=3)
    exc = np.random.default_rng(5).integers(96, 160, N)  # excitation classes, forced
    ref = NumbaEngine(m, seed=0)
    ref.set_conditioning(pitch=60, instrument=0, velocity=80)
    ref.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    ref.set_note(pitch=61.5, glide_s=0.03)
    ctrl = ref.ctrl.copy()
    a, g = np.empty((N, sf.ORDER + 1)), np.empty(N)
    ref.envelope_tracks(a, g)  # the bank's tracks of the same note
    assert g[200:].min() > 1e-3 and np.abs(a[:, 1:]).max() > 1.0  # a resonant envelope
    s, p, x = training_recursion(a, g, exc)

    e = engine_cls(m, seed=0)
    logits = drive(e, forced=exc)
    np.testing.assert_array_equal(e.sf_ring[e.sf_i[2]], s[-1])  # the filter holds training's s, bit for bit

    inputs = np.concatenate(([mulaw.SILENCE], mulaw.encode(s[:-1])))
    feats = np.empty((N, local_cond.N_LOCAL), np.float32)
    local_cond.fill(ctrl, float(m.config.sample_rate), feats)
    feats[:, local_cond.PRED] = np.clip(np.sign(p) * np.log1p(255 * np.minimum(np.abs(p), 1)) / np.log1p(255), -1, 1)
    local_cond.lag_from_reset(inputs, feats)
    feats = feats[:, [LOCAL_CHANNELS.index(c) for c in m.config.conditioning.local]]
    net = import_weights(WaveNet(m.config), m.weights).eval()
    with torch.no_grad():
        gv = net.global_vector(torch.tensor([60]), torch.tensor([0]), torch.tensor([80 / 127.0]))
        want = net(torch.from_numpy(inputs)[None], gv, torch.from_numpy(feats.T.copy())[None])[0].T.numpy()
    assert np.abs(want).max() > 1.0
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)


def test_the_output_is_the_de_emphasised_filter_output():
    m = sf_model(seed=3)
    exc = np.random.default_rng(6).integers(100, 156, 900)
    ref = NumbaEngine(m, seed=0)
    ref.set_conditioning(pitch=60, instrument=0, velocity=80)
    ref.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    ref.set_note(pitch=61.5, glide_s=0.03)
    a, g = np.empty((900, sf.ORDER + 1)), np.empty(900)
    ref.envelope_tracks(a, g)
    _, _, want = training_recursion(a, g, exc)
    e = NumbaEngine(m, seed=0)
    e.set_conditioning(pitch=60, instrument=0, velocity=80)
    e.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    e.set_note(pitch=61.5, glide_s=0.03)
    got = np.empty(900, np.float32)
    # the kernel's output under forcing, one block: the engine computes the same tracks as ``ref`` did
    e._run(900, np.zeros(900), exc.astype(np.int64), got, np.zeros((900, 256), np.float32))
    np.testing.assert_array_equal(got, want)


def test_each_voice_of_a_batch_plays_what_it_plays_alone():
    m = sf_model(seed=4)
    p = PolyEngine(m, voices=2, seed=20)
    for v, pitch in ((0, 60.0), (1, 48.0)):
        p.set_conditioning(v, pitch=pitch, instrument=v, velocity=80)
        p.set_note(v, gate=1.0, pitch=pitch, glide_s=0.0)
    both = p.generate_voices(1500)
    alone = NumbaEngine(m, seed=21)
    alone.set_conditioning(pitch=48.0, instrument=1, velocity=80)
    alone.set_note(gate=1.0, pitch=48.0, glide_s=0.0)
    np.testing.assert_array_equal(both[1], alone.generate(1500))
    assert np.sqrt(np.mean(both[0] ** 2)) > 1e-3


def test_a_prime_fills_the_filter_with_the_pre_emphasised_prime():
    m = sf_model(seed=5)
    e = NumbaEngine(m, seed=0)
    w = 0.3 * np.sin(2 * np.pi * 220 * np.arange(600) / 16000)
    e.prime(w)
    x = mulaw.roundtrip(w.astype(np.float32)).astype(np.float64)
    s = sf.pre_emphasis(x)
    np.testing.assert_array_equal(e.sf_ring[(e.sf_i[2] - np.arange(32)[::-1]) & 31], s[-32:])
    assert e.ints[0] == mulaw.encode(s[-1:])[0]  # the next input: the emphasised prime's last class
    assert e.sf_f[3] == x[-1]


def test_a_source_filter_model_has_no_loop_lowpass():
    """The kernel runs no loop low-pass for a source filter, so the period its lag reads is not shortened for one."""
    e = NumbaEngine(sf_model(), seed=0)
    e.set_loop_lowpass(0.3)
    assert e.ctrl[local_cond.LOOP_A] == 0.0
    plain = NumbaEngine(random_model(SMALL, seed=0), seed=0)
    plain.set_loop_lowpass(0.3)
    assert plain.ctrl[local_cond.LOOP_A] > 0.0
