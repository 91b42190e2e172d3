"""python -m models.export: a checkpoint's raw or averaged weights -> a playable model file."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from test_train import train
from wnl_testutil import run_module

from models.wavenet import WaveNet, export_weights
from realtime.model.config import WaveNetConfig
from realtime.model.model_file import load_model


def export(*args: str) -> subprocess.CompletedProcess:
    return run_module("models.export", *args)


def weights_of(state_dict: dict, config: dict) -> dict[str, np.ndarray]:
    m = WaveNet(WaveNetConfig.from_dict(config))
    m.load_state_dict(state_dict)
    return export_weights(m)


@pytest.mark.slow
def test_raw_and_averaged_weights_export_from_a_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
              "--max-steps", "3", "--lr", "3e-3", "--weight-ema", "0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = torch.load(out / "ckpt.pt", weights_only=False)
    expect = {"raw": weights_of(ckpt["model"], ckpt["config"]),
              "averaged": weights_of(ckpt["weight_ema"]["model"], ckpt["config"])}
    assert max(float(np.abs(expect["raw"][k] - expect["averaged"][k]).max()) for k in expect["raw"]) > 1e-4
    files = {}
    for which in ("raw", "averaged"):
        r = export("--ckpt", str(out / "ckpt.pt"), "--data", str(tiny_data), "--out", str(tmp_path / f"{which}.npz"),
                   "--weights", which)
        assert r.returncode == 0, r.stderr
        files[which] = m = load_model(tmp_path / f"{which}.npz")
        for k, v in expect[which].items():
            np.testing.assert_array_equal(m.weights[k], v, err_msg=f"{which} {k}")
        assert m.seedbank is not None and len(m.seedbank) == 24 and m.metadata["training"]["steps"] == 3
    assert "weight_ema" not in files["raw"].metadata["training"]
    shipped = load_model(out / "model.npz")  # what training wrote: the average, with the same summary
    assert shipped.metadata["training"]["weight_ema"] == files["averaged"].metadata["training"]["weight_ema"] \
        == {"decay": 0.5, "steps_averaged": 3}
    for k, v in shipped.weights.items():
        np.testing.assert_array_equal(files["averaged"].weights[k], v, err_msg=k)


@pytest.mark.slow
def test_averaged_weights_of_a_run_without_them_are_refused(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
                 "--max-steps", "1").returncode == 0
    r = export("--ckpt", str(out / "ckpt.pt"), "--data", str(tiny_data), "--out", str(tmp_path / "x.npz"))
    assert r.returncode == 2 and "no averaged weights" in r.stderr and str(out / "ckpt.pt") in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.npz").exists()
    state = torch.load(out / "ckpt.pt", weights_only=False)
    state["config"]["sample_rate"] = 8000  # trained at another rate than the data's 16 kHz
    torch.save(state, tmp_path / "other_rate.pt")
    r = export("--ckpt", str(tmp_path / "other_rate.pt"), "--data", str(tiny_data), "--out", str(tmp_path / "x.npz"),
               "--weights", "raw")
    assert r.returncode == 2 and "sample rate 16000" in r.stderr and "other_rate.pt" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.npz").exists()
    r = export("--ckpt", str(tmp_path / "missing.pt"), "--data", str(tiny_data), "--out", str(tmp_path / "x.npz"))
    assert r.returncode == 2 and "missing.pt" in r.stderr and "Traceback" not in r.stderr
