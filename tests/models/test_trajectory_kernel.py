"""The Numba free run and its way back (models.trajectory_kernel) against models.trajectory.free_run's
autograd graph: the same draws from the same uniforms, the same gradient on every parameter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_trajectory import PITCH, SR, notes, tiny_model

from models.trajectory.kernel import note_grads
from models.trajectory.reference import MelLoss, StatsLoss, cut_segments, free_run


def grads_of(m) -> dict[str, np.ndarray]:
    return {k: p.grad.detach().numpy().copy() for k, p in m.named_parameters() if p.grad is not None}


#: every loss and the loop low-pass at the first start; the rest in make test (the fast subset runs 3 of 10)
FAST = {("weighted", 0.0, 1500), ("mel", 0.0, 1500), ("stats", 0.3, 1500)}


@pytest.mark.parametrize("loss_kind,loop,start", [
    pytest.param(k, lp, s, marks=() if (k, lp, s) in FAST else pytest.mark.slow)
    for s in (1500, 4000) for k, lp in (("weighted", 0.0), ("mel", 0.0), ("stats", 0.0), ("weighted", 0.3), ("stats", 0.3))])
def test_kernel_matches_the_autograd_free_run(loss_kind, loop, start):
    n, temperature = 700, 0.5
    seg = cut_segments(notes(), [start, start], PITCH, n, SR, np.random.default_rng(1))
    u = np.random.default_rng(2).uniform(1e-6, 1 - 1e-6, (2, n)).astype(np.float32)
    wts = torch.from_numpy(np.random.default_rng(3).standard_normal((2, n)).astype(np.float32))
    score = {"mel": MelLoss, "stats": StatsLoss}.get(loss_kind, MelLoss)(SR)
    loss_fn = (lambda a: (a * wts).sum()) if loss_kind == "weighted" else (
        lambda a: score(a, torch.from_numpy(seg.real)))
    ref_m, m = tiny_model(), tiny_model()
    out, _ = free_run(ref_m, seg, PITCH, [0, 1], [0.7, 0.5], temperature, uniforms=u, loop_lowpass=loop)
    ref_loss = loss_fn(out)
    ref_loss.backward()
    audio, loss = note_grads(m, seg, PITCH, [0, 1], [0.7, 0.5], temperature, u, loss_fn, loop_lowpass=loop)
    np.testing.assert_array_equal(audio, out.detach().numpy())  # the same draws, so the same samples
    assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-5)
    want, got = grads_of(ref_m), grads_of(m)
    assert set(got) == set(want)
    for k in want:
        scale = np.abs(want[k]).max() + 1e-12
        np.testing.assert_allclose(got[k], want[k], atol=2e-4 * scale, rtol=0, err_msg=k)


def test_the_lag_carries_gradient_to_earlier_samples():
    """With the loss on the last samples only, the weights still get gradient from every earlier period:
    cutting the lag's feedback (its weights zero) changes the gradient on the output layer's bias."""
    n = 400
    seg = cut_segments(notes(), [2500, 2500], PITCH, n, SR, np.random.default_rng(1))
    u = np.random.default_rng(2).uniform(1e-6, 1 - 1e-6, (2, n)).astype(np.float32)
    mask = torch.zeros(2, n)
    mask[:, -20:] = 1.0
    m = tiny_model()
    note_grads(m, seg, PITCH, [0, 1], [0.7, 0.5], 0.5, u, lambda a: (a * mask).sum())
    emb_rows = np.abs(m.embed.weight.grad.numpy()).sum(axis=1)
    # the last 20 samples' inputs are 20 classes at most; the gradient reaches far more rows (earlier inputs)
    assert np.count_nonzero(emb_rows) > 20


@pytest.mark.slow
@pytest.mark.parametrize("kernel,loss,engine_like", [("numba", "mel", False), ("torch", "stats", False),
                                                     ("numba", "stats", True)])
def test_one_training_step_from_the_command_line(tiny_data, tmp_path, kernel, loss, engine_like):
    """``python -m models.trajectory.train`` takes a model file a training run wrote, runs one step with either kernel
    (and either loss) and writes a model file whose weights moved (a model without the lag input: the kernel's
    other path)."""
    import json
    import os
    import subprocess
    import sys

    from wnl_testutil import ROOT

    from realtime.model.model_file import load_model

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "models.train", "--data", str(tiny_data), "--out", str(run),
                        "--config", str(tiny_data / "config.json"), "--max-steps", "1", "--no-progress",
                        "--window", "512", "--batch", "2"], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "traj.npz"
    r = subprocess.run([sys.executable, "-m", "models.trajectory.train", str(run / "model.npz"), str(out), "--data",
                        str(tiny_data), "--minutes", "0", "--n", "600", "--notes", "1", "--ce-crops", "1",
                        "--kernel", kernel, "--loss", loss]
                       + (["--loop-lowpass", "0.15", "--period-noise", "0.5"] if engine_like else []),
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["it"] == 1 and rec["notes"] == 1 and np.isfinite(rec["traj"]) and rec["traj"] > 0
    before, after = load_model(run / "model.npz"), load_model(out)
    meta = after.metadata["trajectory"]
    assert meta["steps"] == 1 and meta["loss"] == loss
    assert (meta["loop_lowpass"], meta["period_noise"]) == ((0.15, 0.5) if engine_like else (0.0, 0.0))
    moved = [k for k in before.weights if not np.array_equal(before.weights[k], after.weights[k])]
    assert {"embed", "w_dil", "w_rs", "w_loc", "w_glob", "w_out1", "w_out2"} <= set(moved), moved
