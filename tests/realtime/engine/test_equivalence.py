"""The engines compute the PyTorch WaveNet exactly: logits and sampled sequences."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from wnl_testutil import SMALL, classes_of, small_model

from models.wavenet import WaveNet, import_weights
from realtime.engine.numba_engine import NumbaEngine
from realtime.engine.torch_engine import TorchScriptEngine
from realtime.model import local_cond
from realtime.model.config import LOCAL_CHANNELS

N = 2400  # > several receptive fields of SMALL (127 samples)


def reference_logits(model, inputs: np.ndarray, pitch: int, instrument: int, velocity: int,
                     ctrl: np.ndarray) -> np.ndarray:
    net = import_weights(WaveNet(model.config), model.weights).eval()
    feats = np.empty((len(inputs), local_cond.N_LOCAL), np.float32)
    local_cond.fill(ctrl.copy(), float(model.config.sample_rate), feats)
    local_cond.lag_from_reset(inputs, feats)  # the lag reads the inputs
    feats = feats[:, [LOCAL_CHANNELS.index(c) for c in model.config.conditioning.local]]
    with torch.no_grad():
        g = net.global_vector(torch.tensor([pitch]), torch.tensor([instrument]), torch.tensor([velocity / 127.0]))
        logits = net(torch.from_numpy(inputs)[None], g, torch.from_numpy(feats.T.copy())[None])
    return logits[0].T.numpy()


@pytest.mark.parametrize("engine_cls", [NumbaEngine, TorchScriptEngine])
def test_teacher_forced_logits_match_parallel_forward(engine_cls):
    model = small_model(seed=1)
    assert N > 10 * SMALL.receptive_field
    e = engine_cls(model, seed=0)
    e.set_conditioning(pitch=67, instrument=2, velocity=90)
    e.set_note(gate=1.0, pitch=67.0)
    e.set_level(np.array([0.005, 0.9, 0.2, 0.05, 0.1]))  # the level input moves: 0.9 -> 0.2 in ~0.1 s
    ctrl = e.ctrl.copy()
    inputs = np.random.default_rng(3).integers(0, 256, N)
    got = e.teacher_force(inputs)
    want = reference_logits(model, inputs, 67, 2, 90, ctrl)
    assert np.abs(want).max() > 1.0  # the check is not trivially small numbers
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch,t_len", [(1, 700), (3, 400)])
def test_forward_keep_gives_the_last_logits_and_their_gradients(batch, t_len):
    """``keep`` computes only what the last logits depend on (training's scored window): the same logits
    and loss gradients as the full forward, for windows shorter and longer than T - receptive field."""
    model = small_model(seed=4)
    net = import_weights(WaveNet(model.config), model.weights)
    g = torch.Generator().manual_seed(batch)
    inputs = torch.randint(0, 256, (batch, t_len), generator=g)
    local = torch.randn(batch, len(model.config.conditioning.local), t_len, generator=g)
    targets = torch.randint(0, 256, (batch, t_len), generator=g)

    def loss_and_grads(keep: int, full: bool):
        """The last ``keep`` logits, their loss and its gradients: from forward(keep=...) or the whole forward."""
        net.zero_grad()
        gv = net.global_vector(torch.arange(batch) + 60, torch.arange(batch) % 3, torch.full((batch,), 0.7))
        logits = net(inputs, gv, local)[:, :, -keep:] if full else net(inputs, gv, local, keep=keep)
        loss = torch.nn.functional.cross_entropy(logits, targets[:, -keep:])
        loss.backward()
        return logits.detach().numpy(), loss.item(), [p.grad.numpy().copy() for p in net.parameters()
                                                       if p.grad is not None]

    rf = model.config.receptive_field
    for keep in (1, 37, t_len - rf, t_len - rf + 1, t_len - rf + 2, t_len - 1, t_len):
        want_logits, want_loss, want_grads = loss_and_grads(keep, full=True)
        logits, loss, grads = loss_and_grads(keep, full=False)
        assert logits.shape == (batch, 256, keep) and np.abs(want_logits).max() > 1.0
        np.testing.assert_allclose(logits, want_logits, atol=1e-5, rtol=0)
        assert loss == pytest.approx(want_loss, rel=1e-6)  # float32 sums in another order: ~1e-7 of the loss
        assert len(grads) == len(want_grads) == len(list(net.parameters())) - 2  # the last residual's feed nothing
        for a, b in zip(grads, want_grads):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="keep"):
        net(inputs, None, local, keep=t_len + 1)


def drive(e, forced: np.ndarray | None = None) -> np.ndarray:
    """The same control script on any engine: generated samples, or logits along ``forced`` inputs."""
    e.set_temperature(0.9)
    e.set_note(gate=1.0, pitch=64.0)
    e.set_conditioning(pitch=64, instrument=1, velocity=100, glide_samples=500)
    parts = []
    for lo, hi in ((0, 1000), (1000, 2200)):
        if lo == 1000:
            e.set_conditioning(instrument=2, glide_samples=0)
            e.set_note(pitch=66.0, glide_s=0.01)
        parts.append(e.generate(hi - lo) if forced is None else e.teacher_force(forced[lo:hi]))
    return np.concatenate(parts)


def test_numba_and_torchscript_generate_identical_samples():
    model = small_model(seed=2)
    x = drive(NumbaEngine(model, seed=11))
    y = drive(TorchScriptEngine(model, seed=11, device="cpu"))
    assert x.size == 2200 and len(np.unique(x)) > 20  # really sampling, not stuck
    diff = np.flatnonzero(x != y)
    if diff.size:  # a float rounding tie flipped one draw: the logits must have agreed up to there
        k = int(diff[0])
        inputs = np.concatenate(([128], classes_of(x[:-1])))
        la = drive(NumbaEngine(model, seed=11), inputs)
        lb = drive(TorchScriptEngine(model, seed=11, device="cpu"), inputs)
        np.testing.assert_allclose(la[:k + 1], lb[:k + 1], atol=1e-4)
