"""Training a source-filter model: it learns the excitation of a tiny set, checkpoints and resumes, and its model
file carries the envelope bank of its training notes; options that do not apply are refused in one line."""
from __future__ import annotations

import json

import pytest
from test_train import json_lines, train
from tiny_data import TINY

from realtime.model.config import WaveNetConfig
from realtime.model.model_file import load_model

SF = {**TINY, "conditioning": {**TINY["conditioning"], "local": ["gate", "f0_sin", "f0_cos", "lag", "pred"]},
      "source_filter": {"order": 16, "emphasis": 0.85, "exc_scale": 32.0}}


@pytest.fixture
def sf_config(tmp_path):
    p = tmp_path / "sf.json"
    p.write_text(json.dumps(SF))
    return p


@pytest.mark.slow
def test_a_source_filter_model_trains_resumes_and_ships_its_envelope_bank(tiny_data, tmp_path, sf_config):
    out = tmp_path / "sf"
    r1 = train("--data", str(tiny_data), "--out", str(out), "--config", str(sf_config), "--max-steps", "40",
               "--lr", "3e-3", "--eval-every", "100")
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = train("--data", str(tiny_data), "--out", str(out), "--resume", "--max-steps", "120", "--lr", "3e-3",
               "--eval-every", "100")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "resuming at step 40" in r2.stdout
    assert [x for x in json_lines(r2.stdout) if "loss" in x][-1]["steps"] == 120
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    # it learned the excitation: from uniform (ln 256 = 5.55 nats) down; a sine's excitation is the predictor's
    # white residual, which no network predicts, so the tiny set's floor is high
    assert hist[0]["eval_loss"] > 5.4 and hist[-1]["eval_loss"] < hist[0]["eval_loss"] - 0.25, hist
    m = load_model(out / "model.npz")
    assert m.config == WaveNetConfig.from_dict(SF)
    bank = m.envelopebank
    assert bank is not None and len(bank) == 23  # the training split: 24 notes less the one held out
    assert m.metadata["training"]["steps"] == 120


@pytest.mark.parametrize("flag,value", [("--self-feed", "0.25"),  # the others: the same check, in make test
                                        pytest.param("--input-tilt", "1", marks=pytest.mark.slow),
                                        pytest.param("--level-gain-db", "6", marks=pytest.mark.slow)])
def test_options_that_do_not_apply_are_refused(tiny_data, tmp_path, sf_config, flag, value):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--config", str(sf_config), flag, value,
              "--max-steps", "1")
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "source-filter" in err[0], r.stderr
