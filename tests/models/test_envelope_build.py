"""``python -m models.envelope build``: the bank holds the training notes only (the data set's training split and
the extra notes of no held-out instrument and pitch), from a dataset or a user's plain folder of sounds, and the
written model file plays with the lpc-pulse engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_data import SR, TINY, tone

from models.dataset import Dataset, Note, load_dataset, write_dataset
from models.envelope import main
from models.train import extra_train_notes, split_notes
from realtime.engine.pulse_engine import PulseEngine
from realtime.model.config import WaveNetConfig
from realtime.model.model_file import load_model, random_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return random_model(WaveNetConfig.from_dict(TINY)).save(tmp_path_factory.mktemp("m") / "m.npz")


@pytest.fixture(scope="module")
def extra_data(tmp_path_factory) -> Path:
    notes = [Note(tone(k, p), i, p, 60, 800, 6400, True, "") for i, k in enumerate(("sine", "saw"))
             for p in range(55, 67)]
    out = tmp_path_factory.mktemp("extra")
    write_dataset(Dataset(SR, ["sine", "saw"], notes, "synthetic"), out)
    return out


def keys(bank) -> set:
    return set(zip(bank.instrument.tolist(), bank.pitch.tolist(), bank.velocity.tolist()))


@pytest.mark.parametrize("with_extra", [False, True])
def test_the_bank_holds_the_training_notes_only(tiny_data, extra_data, model_path, tmp_path, with_extra):
    out = tmp_path / "out.npz"
    args = ["build", "--data", str(tiny_data), "--model", str(model_path), "--out", str(out)]
    assert main(args + (["--data-extra", str(extra_data)] if with_extra else [])) == 0
    bank = load_model(out).envelopebank
    train, held = split_notes(load_dataset(tiny_data).notes)
    want = {(n.instrument_id, n.pitch, n.velocity) for n in train}
    if with_extra:
        want |= {(n.instrument_id, n.pitch, n.velocity) for n in extra_train_notes(load_dataset(extra_data).notes, held)}
    assert keys(bank) == want and len(bank) == len(want)
    assert not {(n.instrument_id, n.pitch) for n in held} & {(i, p) for i, p, _ in keys(bank)}
    meta = json.loads(np.load(out)["header"].tobytes())["metadata"]["envelope_bank"]
    assert meta["notes"] == len(bank) and meta["hop"] == SR // 100


def test_velocities_can_be_left_out(tiny_data, extra_data, model_path, tmp_path):
    out = tmp_path / "out.npz"
    assert main(["build", "--data", str(tiny_data), "--data-extra", str(extra_data), "--model", str(model_path),
                 "--out", str(out), "--exclude-velocities", "100"]) == 0
    assert set(load_model(out).envelopebank.velocity.tolist()) == {60}


def test_a_plain_folder_of_sounds_gets_a_bank_and_plays(model_path, tmp_path):
    folder = tmp_path / "sounds"
    for name in ("sine", "saw"):
        (folder / name).mkdir(parents=True)
        for p in range(55, 67):
            sf.write(folder / name / f"p{p:03d}_v090.wav", tone(name, p), SR)
    out = tmp_path / "out.npz"
    assert main(["build", "--data", str(folder), "--model", str(model_path), "--out", str(out)]) == 0
    m = load_model(out)
    assert len(m.envelopebank) == 23  # the 11th of the 24 notes held out (split_notes: every 20th)
    e = PulseEngine(m)
    e.set_conditioning(pitch=60, instrument=1, velocity=90)
    e.set_note(gate=1.0, pitch=60.0, glide_s=0.0)
    x = e.generate(4000)
    assert np.all(np.isfinite(x)) and np.sqrt(np.mean(x[1000:] ** 2)) > 0.01


def test_a_bad_input_is_a_one_line_error(tiny_data, tmp_path, capsys):
    assert main(["build", "--data", str(tiny_data), "--model", str(tmp_path / "none.npz"),
                 "--out", str(tmp_path / "o.npz")]) == 2
    assert "envelope: error:" in capsys.readouterr().err


def test_the_banks_split_is_trainings():
    """The bank (models.envelope) and training keep the held-out notes out by one definition, models.splits."""
    import models.splits
    import models.train

    assert models.train.split_notes is models.splits.split_notes
    assert models.train.extra_train_notes is models.splits.extra_train_notes


@pytest.mark.parametrize("n", [5, 20, 47])
def test_the_split_holds_out_every_twentieth_and_its_keys(extra_data, tiny_data, n):
    """Every 20th note (the 11th of each 20) is held out, and no extra note of a held-out (instrument, pitch)
    trains."""
    notes = (load_dataset(tiny_data).notes * 2)[:n]
    train, held = split_notes(notes)
    assert held == [x for i, x in enumerate(notes) if i % 20 == 10] and len(train) + len(held) == n
    keys = {(x.instrument_id, x.pitch) for x in held}
    extra = load_dataset(extra_data).notes
    assert all((x.instrument_id, x.pitch) not in keys for x in extra_train_notes(extra, held))
    assert len(extra_train_notes(extra, held)) == sum((x.instrument_id, x.pitch) not in keys for x in extra)
