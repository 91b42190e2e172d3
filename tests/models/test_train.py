"""Training: learns a tiny set, checkpoints and resumes, DDP ranks stay identical, probes react."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_data import SR, TINY, tone
from wnl_testutil import ROOT

from models.dataset import Dataset, Note, write_dataset
from models.wavenet import WaveNet, export_weights
from realtime.model.config import WaveNetConfig
from realtime.model.model_file import load_model


def train(*args: str, world: int = 1, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "models.train", *args, "--no-progress", "--window", "512", "--batch", "4"]
    if world > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
               "--master_port", "29517", "-m", "models.train", *cmd[3:]]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


@pytest.mark.slow
def test_train_checkpoint_resume_and_learning(tiny_data, tmp_path):
    out = tmp_path / "run"
    r1 = train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
               "--max-steps", "60", "--lr", "3e-3")
    assert r1.returncode == 0, r1.stderr[-2000:]
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    first = hist[0]["eval_loss"]
    assert (out / "ckpt.pt").is_file() and (out / "loss.png").stat().st_size > 1000
    m = load_model(out / "model.npz")
    assert m.metadata["training"]["steps"] == 60
    assert m.metadata["training"]["core_hours"] == m.metadata["training"]["hours"] > 0  # one process
    assert m.seedbank is not None and len(m.seedbank) == 24
    r2 = train("--data", str(tiny_data), "--out", str(out), "--resume", "--max-steps", "150", "--lr", "3e-3",
               "--eval-every", "100", "--self-feed", "0.25")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "resuming at step 60" in r2.stdout
    final = [x for x in json_lines(r2.stdout) if "loss" in x][-1]
    assert final["steps"] == 150
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["eval_loss"] < first - 1.0, hist  # it learned the tones (nats)
    assert hist[-1]["train_notes_loss"] < hist[0]["train_notes_loss"] - 1.0, hist  # the fit, on the training notes
    # and it predicts more sharply: the sampler's own noise (temperature 0.5, fed the real crops) fell
    assert hist[-1]["eval_spread_db"] > hist[0]["eval_spread_db"] + 3.0, hist
    assert hist[-1]["train_notes_spread_db"] > hist[0]["train_notes_spread_db"] + 3.0, hist
    assert hist[-1]["options"] == {"lr": 3e-3, "input_noise": 1.5, "self_feed": 0.25, "input_tilt": 0.0,
                                   "weight_ema": 0.0,
                                   "level_gain_db": 0.0, "detune": 0.0, "pitch_interp": False, "train_notes": 23,
                                   "eval_notes": 1}
    ckpt = torch.load(out / "ckpt.pt", weights_only=False)
    assert "weight_ema" not in ckpt  # off by default: the model file holds the raw weights
    exported = load_model(out / "model.npz").weights
    raw = WaveNet(WaveNetConfig.from_dict(ckpt["config"]))
    raw.load_state_dict(ckpt["model"])
    for k, v in export_weights(raw).items():
        np.testing.assert_array_equal(exported[k], v, err_msg=k)


@pytest.mark.slow
def test_ddp_two_ranks_end_with_identical_weights(tiny_data, tmp_path):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "ddp"), "--config", str(tiny_data / "config.json"),
              "--max-steps", "8", "--weight-ema", "0.9", world=2)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = {x["rank"]: x for x in json_lines(r.stdout) if "weights_sha256" in x}
    assert set(ranks) == {0, 1}
    assert ranks[0]["step"] == ranks[1]["step"] == 8
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    tr = load_model(tmp_path / "ddp" / "model.npz").metadata["training"]
    assert tr["max_world"] == 2 and tr["core_hours"] == pytest.approx(2 * tr["hours"], rel=1e-6)  # two processes
    assert tr["weight_ema"] == {"decay": 0.9, "steps_averaged": 8}  # rank 0 averaged every step
    assert "up to 2 data-parallel processes" in (tmp_path / "ddp" / "MODEL.md").read_text()


@pytest.mark.slow
def test_compiled_ddp_training_matches_eager(tiny_data, tmp_path):
    """--compile (torch.compile of the training step) under DDP: the ranks stay identical, and the weights
    after 6 steps match an eager run's up to float rounding (compiled kernels add in another order)."""
    runs = {}
    for flag in ("", "--compile"):
        out = tmp_path / (flag or "eager")
        r = train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
                  "--max-steps", "6", "--lr", "3e-3", *([flag] if flag else []), world=2)
        assert r.returncode == 0, r.stderr[-3000:]
        ranks = {x["rank"]: x["weights_sha256"] for x in json_lines(r.stdout) if "weights_sha256" in x}
        assert len(ranks) == 2 and ranks[0] == ranks[1]
        runs[flag] = load_model(out / "model.npz").weights
    eager, compiled = runs[""], runs["--compile"]
    torch.manual_seed(0)  # what models.train starts from (--seed 0)
    init = export_weights(WaveNet(WaveNetConfig.from_dict(TINY)))
    assert max(float(np.abs(eager[k] - init[k]).max()) for k in eager) > 2e-3  # training moved the weights
    for k in eager:
        np.testing.assert_allclose(compiled[k], eager[k], atol=2e-5, rtol=0, err_msg=k)


def test_mismatched_dataset_is_refused(tiny_data, tmp_path):
    cfg = dict(TINY, conditioning=dict(TINY["conditioning"], instruments=["x", "y"]))
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "c.json"),
              "--max-steps", "1")
    assert r.returncode == 2 and "instruments" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_weight_ema_is_the_moving_average_across_a_resume_and_is_what_ships(tiny_data, tmp_path):
    """--weight-ema D: after one step the average is that step's weights; a resumed second step makes it
    D * w1 + (1 - D) * w2 (the state survives the checkpoint), and model.npz holds the average, not w2."""
    out, d = tmp_path / "ema", 0.75
    common = ("--data", str(tiny_data), "--out", str(out), "--lr", "3e-3", "--weight-ema", str(d))
    r = train(*common, "--config", str(tiny_data / "config.json"), "--max-steps", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    c1 = torch.load(out / "ckpt.pt", weights_only=False)
    assert c1["weight_ema"]["n_averaged"] == 1
    for k, w in c1["model"].items():
        torch.testing.assert_close(c1["weight_ema"]["model"][k], w, rtol=0, atol=0)
    r = train(*common[:-2], "--resume", "--max-steps", "2")  # without --weight-ema: it goes on averaging
    assert r.returncode == 0, r.stderr[-2000:]
    c2 = torch.load(out / "ckpt.pt", weights_only=False)
    assert c2["step"] == 2 and c2["weight_ema"]["n_averaged"] == 2
    moved = max(float((c2["model"][k] - c1["model"][k]).abs().max()) for k in c1["model"])
    assert moved > 1e-3  # the second step changed the weights, so the average is not either of them
    avg = WaveNet(WaveNetConfig.from_dict(c2["config"]))
    avg.load_state_dict({k: d * c1["model"][k] + (1 - d) * c2["model"][k] for k in c1["model"]})
    exported = load_model(out / "model.npz")
    for k, v in export_weights(avg).items():
        np.testing.assert_allclose(exported.weights[k], v, rtol=0, atol=1e-6, err_msg=k)
    assert exported.metadata["training"]["weight_ema"] == {"decay": d, "steps_averaged": 2}
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert all(np.isfinite(h["ema_eval_loss"]) for h in hist) and hist[-1]["options"]["weight_ema"] == d
    r = train(*common[:-2], "--resume", "--max-steps", "3", "--weight-ema", "0")  # 0 turns it off
    assert r.returncode == 0, r.stderr[-2000:]
    c3 = torch.load(out / "ckpt.pt", weights_only=False)
    assert "weight_ema" not in c3 and "weight_ema" not in load_model(out / "model.npz").metadata["training"]


@pytest.mark.parametrize("bad", ["1", pytest.param("-0.1", marks=pytest.mark.slow),  # one in the fast subset
                                 pytest.param("nan", marks=pytest.mark.slow)])
def test_weight_ema_out_of_range_is_refused(tiny_data, tmp_path, bad):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--weight-ema", bad, "--max-steps", "1")
    assert r.returncode == 2 and f"--weight-ema {float(bad)}" in r.stderr and "Traceback" not in r.stderr


def test_input_tilt_out_of_range_is_refused(tiny_data, tmp_path):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--input-tilt", "3.5", "--max-steps", "1")
    assert r.returncode == 2 and "--input-tilt 3.5" in r.stderr and "Traceback" not in r.stderr


def test_self_feed_out_of_range_is_refused(tiny_data, tmp_path):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--self-feed", "1.5", "--max-steps", "1")
    assert r.returncode == 2 and "--self-feed 1.5" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_that_resumes(tiny_data, tmp_path):
    """SIGTERM (or Ctrl-C) mid-run: the current step ends, then a final eval and checkpoint; resume goes on."""
    import signal
    import time

    out = tmp_path / "stopped"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "models.train", "--data", str(tiny_data), "--out", str(out), "--config",
           str(tiny_data / "config.json"), "--no-progress", "--window", "512", "--batch", "4", "--max-steps", "100000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "history.jsonl").is_file() and time.monotonic() < deadline:  # the step-1 eval
            time.sleep(0.2)
        time.sleep(2.0)
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, stderr[-2000:]
    assert "interrupted: stopping at step" in stdout
    steps = [x for x in json_lines(stdout) if "loss" in x][-1]["steps"]
    assert 1 < steps < 100000
    assert load_model(out / "model.npz").metadata["training"]["steps"] == steps
    r = train("--data", str(tiny_data), "--out", str(out), "--resume", "--max-steps", str(steps + 5))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming at step {steps}" in r.stdout


def _next_class_net(inputs, pitch, instrument, velocity, local):
    """A stand-in network that is certain the next sample is one class above the current input."""
    logits = torch.full((inputs.shape[0], 256, inputs.shape[1]), -1e4)
    logits.scatter_(1, ((inputs + 1) % 256).unsqueeze(1), 1e4)
    return logits


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_self_feed_replaces_that_share_of_inputs_with_the_networks_own_next_sample(share):
    from models.train import self_fed_inputs

    rng = np.random.default_rng(0)
    inputs = torch.from_numpy(rng.integers(0, 255, size=(4, 3000)))
    t = {"inputs": inputs, "pitch": None, "instrument": None, "velocity": None, "local": None}
    got = self_fed_inputs(_next_class_net, t, share, torch.Generator().manual_seed(1))
    own = (inputs[:, :-1] + 1) % 256            # what the network predicts for slot t+1 from input t
    replaced = got[:, 1:] == own
    assert torch.equal(got[:, 0], inputs[:, 0])  # nothing predicts the first slot
    assert torch.all(replaced | (got[:, 1:] == inputs[:, 1:]))  # every slot is teacher or own sample
    assert float(replaced.float().mean()) == pytest.approx(share, abs=0.02)


def test_extra_notes_train_unless_they_share_an_eval_notes_instrument_and_pitch():
    from models.train import extra_train_notes, split_notes

    main = [Note(np.zeros(8), i, p, 80, 0, 4, True, "") for i in (0, 1) for p in range(55, 67)]
    train_notes, held = split_notes(main)
    extra = [Note(np.zeros(8), i, p, v, 0, 4, True, "") for i in (0, 1) for p in range(55, 67) for v in (40, 120)]
    kept = extra_train_notes(extra, held)
    held_keys = {(n.instrument_id, n.pitch) for n in held}
    assert held_keys == {(0, 65)} and len(train_notes) == 23
    assert len(kept) == len(extra) - 2 and not any((n.instrument_id, n.pitch) in held_keys for n in kept)


@pytest.fixture(scope="module")
def extra_velocity_data(tmp_path_factory):
    """The tiny tones again at velocity 60 (a second dataset folder, as models.dataset build writes one)."""
    notes = [Note(tone(k, p), i, p, 60, 800, 6400, True, "") for i, k in enumerate(("sine", "saw"))
             for p in range(55, 67)]
    out = tmp_path_factory.mktemp("tiny_extra")
    write_dataset(Dataset(SR, ["sine", "saw"], notes, "synthetic"), out)
    return out


@pytest.mark.slow  # not in make test-fast: a training run
def test_data_extra_adds_training_notes_and_is_logged(tiny_data, extra_velocity_data, tmp_path):
    out = tmp_path / "o"
    r = train("--data", str(tiny_data), "--data-extra", str(extra_velocity_data), "--out", str(out),
              "--config", str(tiny_data / "config.json"), "--max-steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "46 train / 1 eval notes" in r.stdout  # 23 of the main set + 23 of 24 extra (not the eval note's key)
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["options"]["data_extra"] == [str(extra_velocity_data)]
    assert (hist[-1]["options"]["train_notes"], hist[-1]["options"]["eval_notes"]) == (46, 1)
    card = (out / "MODEL.md").read_text()
    assert (f"also trained on {extra_velocity_data} (--data-extra); the latest run's split: 46 training / 1 held-out "
            "notes.") in card


@pytest.mark.slow  # not in make test-fast: a training run
def test_instruments_restricts_training_and_eval_to_them_and_the_card_says_so(tiny_data, tmp_path):
    out = tmp_path / "o"
    r = train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
              "--max-steps", "2", "--instruments", "sine")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "11 train / 1 eval notes" in r.stdout  # the sine's 12 notes, split as the whole set is (eval: sine 65)
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["options"]["instruments"] == ["sine"]
    assert "11 training / 1 held-out notes, sine only (--instruments)." in (out / "MODEL.md").read_text()


def test_only_instruments_keeps_those_notes():
    from models.train import only_instruments

    notes = [Note(np.zeros(8), i, p, 80, 0, 4, True, "") for i in (0, 1, 2) for p in (60, 61)]
    kept = only_instruments(notes, ["c", "a"], ["a", "b", "c"])
    assert [(n.instrument_id, n.pitch) for n in kept] == [(0, 60), (0, 61), (2, 60), (2, 61)]
    assert only_instruments(notes, [], ["a", "b", "c"]) == notes


@pytest.mark.parametrize("names, words", [("square", ["--instruments", "square", "'saw'"]),
                                          ("saw", ["--instruments saw", "12 training / 0 held-out"])])
def test_instruments_unknown_or_without_eval_notes_is_refused(tiny_data, tmp_path, names, words):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--config", str(tiny_data / "config.json"),
              "--max-steps", "1", "--instruments", names)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert all(w in r.stderr for w in words), r.stderr


def test_data_extra_with_other_instruments_is_refused_naming_its_folder(tiny_data, tmp_path):
    other = tmp_path / "other"
    write_dataset(Dataset(SR, ["sine", "square"], [Note(tone("sine", 60), 0, 60, 60, 800, 6400, True, "")],
                          "synthetic"), other)
    r = train("--data", str(tiny_data), "--data-extra", str(other), "--out", str(tmp_path / "o"),
              "--config", str(tiny_data / "config.json"), "--max-steps", "1")
    assert r.returncode == 2 and str(other) in r.stderr and "instruments" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_eval_spread_rises_when_the_network_predicts_more_sharply(tiny_data):
    """eval_spread_db: the variance of a sample drawn at temperature 0.5 against the crops' power; the same
    network with its logits a hundred times as large (a sharper distribution about the same mode) draws
    with less noise."""
    from models.dataset import load_dataset
    from models.train import evaluate

    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig.from_dict(TINY))
    notes = load_dataset(tiny_data).notes
    args = (notes, SR, model.cfg.receptive_field - 1, 512, torch.device("cpu"), 8, 2)
    before = evaluate(model, *args, probes_too=False)
    with torch.no_grad():
        model.out2.weight.mul_(100.0)
        model.out2.bias.mul_(100.0)
    after = evaluate(model, *args, probes_too=False)
    assert set(before) == {"eval_loss", "eval_spread_db"}
    assert after["eval_spread_db"] > before["eval_spread_db"] + 6.0, (before, after)


def rollout_bank(data_dir, path, files=None) -> str:
    """A models.rollouts bank for the tiny notes: each note's rollout its own audio reversed (1,024 samples
    from 1,000 after key-down), the aligned real its audio there."""
    from models.dataset import load_dataset
    from models.rollouts import RolloutBank

    notes = load_dataset(data_dir).notes
    seg = lambda n: n.audio[n.onset + 1000:n.onset + 2024]  # noqa: E731
    files = [n.file for n in notes] if files is None else files
    RolloutBank(np.array([str(data_dir)] * len(files)), np.array(files), np.full(len(files), 1000, np.int64),
                np.stack([seg(notes[i % len(notes)])[::-1] for i in range(len(files))]),
                np.stack([seg(notes[i % len(notes)]) for i in range(len(files))])).save(path)
    return str(path)


@pytest.mark.slow  # not in make test-fast: a training run
def test_rollouts_train_with_the_spectral_loss_and_log_it(tiny_data, tmp_path):
    out = tmp_path / "o"
    bank = rollout_bank(tiny_data, tmp_path / "bank.npz")
    r = train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
              "--max-steps", "3", "--rollouts", bank, "--rollout-share", "0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rollouts: 23 of 24 in" in r.stdout  # the eval note's rollout is not trained on
    opts = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()][-1]["options"]
    assert (opts["rollout_share"], opts["rollout_loss"], opts["rollout_weight"]) == (0.5, "spectral", 0.3)
    assert np.isfinite(opts["rollout_spectral"]) and opts["rollout_spectral"] > 0


@pytest.mark.parametrize("args, message", [
    (["--rollout-share", "1.5"], "--rollout-share 1.5: must be between 0 and 1"),
    (["--self-feed", "0.1"], "--rollouts and --self-feed: use one or the other"),
    (["--unknown-bank"], "none of its 2 rollouts is of a training note"),
])
def test_bad_rollout_options_are_refused(tiny_data, tmp_path, args, message):
    files = ["nowhere.wav", "nothing.wav"] if args == ["--unknown-bank"] else None
    bank = rollout_bank(tiny_data, tmp_path / "bank.npz", files)
    args = [] if args == ["--unknown-bank"] else args
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--config", str(tiny_data / "config.json"),
              "--max-steps", "1", "--rollouts", bank, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
