"""Fractional pitch (bends, glides) for models trained with detuned crops (``pitch_interp``): the two
nearest pitch embeddings interpolated, the same in training (torch) and in the engines (numpy); the
pitch wheel moves a voice's embedding then, and only then."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from wnl_testutil import small_model

from models.wavenet import interpolated_rows
from realtime.control.controller import Controller
from realtime.control.presets import Preset
from realtime.engine.base import pitch_row
from realtime.engine.numba_engine import NumbaEngine
from realtime.model import local_cond
from realtime.model.model_file import ModelFileError, load_model
from realtime.offline.render import Session
from realtime.sound.output_stage import OutputStage

TABLE = np.random.default_rng(0).standard_normal((128, 8)).astype(np.float32)


def interp_model(on: bool, seed: int = 1):
    m = small_model(seed=seed)
    m.config = replace(m.config, conditioning=replace(m.config.conditioning, pitch_interp=on))
    return m


@pytest.mark.parametrize("pitch", [0.0, 60.0, 60.25, 60.5, 61.999, 127.0, 127.5, -3.0])
def test_training_and_engines_read_the_same_interpolated_row(pitch):
    want = interpolated_rows(torch.from_numpy(TABLE), torch.tensor([pitch], dtype=torch.float32))[0].numpy()
    got = pitch_row(TABLE, pitch, interp=True)
    assert np.array_equal(got, want)  # float32 throughout: the same bits
    lo = int(np.clip(np.floor(pitch), 0, 127))
    f = float(np.clip(pitch, 0, 127)) - lo
    assert np.allclose(got, (1 - f) * TABLE[lo] + f * TABLE[min(lo + 1, 127)], atol=1e-6)
    if f == 0:  # a whole pitch reads its own row, bit for bit, in both
        assert np.array_equal(got, TABLE[lo]) and np.array_equal(want, TABLE[lo])


def test_a_model_without_interp_reads_the_nearest_row():
    assert np.array_equal(pitch_row(TABLE, 60.4, interp=False), TABLE[60])
    assert np.array_equal(pitch_row(TABLE, 60.6, interp=False), TABLE[61])


def bias_for(e, pitch: float) -> np.ndarray:
    return e.layer_bias(e.global_vector(pitch, e.instrument, e.velocity, e.morph))


@pytest.mark.parametrize("interp", [False, True])
def test_the_pitch_wheel_moves_the_embedding_only_of_a_model_trained_for_it(interp):
    e = NumbaEngine(interp_model(interp))
    c = Controller(e, OutputStage(e.sample_rate), Preset())
    c.note_on(60, 100)
    at_note = e.bias_target.copy()
    c.pitch_bend(4096)  # +1 semitone with the default 2-semitone range
    assert e.ctrl[local_cond.PITCH_TARGET] == pytest.approx(61.0)  # the f0 input bends either way
    if interp:
        assert np.array_equal(e.bias_target, bias_for(e, 61.0)) and not np.array_equal(e.bias_target, at_note)
        c.pitch_bend(2048)  # +0.5: halfway between the two notes' embeddings
        assert np.array_equal(e.bias_target, bias_for(e, 60.5))
    else:
        assert np.array_equal(e.bias_target, at_note)
    c.note_on(64, 100)  # a new note while the wheel is held: the embedding starts bent
    assert np.array_equal(e.bias_target, bias_for(e, 64.5 if interp else 64.0))


@pytest.mark.parametrize("interp", [False, True])
def test_poly_voices_bend_their_embeddings_too(interp):
    preset = Preset()
    preset = replace(preset, sound=replace(preset.sound, voices=2))
    s = Session.open(preset, interp_model(interp))
    s.apply_midi(bytes([0x90, 60, 100]))
    s.apply_midi(bytes([0x90, 67, 100]))
    v = {s.controller.alloc.voices[k].note: s.controller.poly.voice(k) for k in s.controller.alloc.busy()}
    s.apply_midi(bytes([0xE0, 0, 96]))  # 96 << 7 = 12288: +1 semitone
    for note, e in v.items():
        assert np.array_equal(e.bias_target, bias_for(e, note + 1.0 if interp else float(note)))


def test_the_flag_round_trips_through_the_model_file_and_old_files_read_it_as_off(tmp_path):
    assert load_model(interp_model(True).save(tmp_path / "on.npz")).config.conditioning.pitch_interp is True
    arrays = dict(np.load(small_model().save(tmp_path / "off.npz")))
    header = json.loads(arrays["header"].tobytes())
    del header["config"]["conditioning"]["pitch_interp"]  # as written before the flag existed
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    assert load_model(tmp_path / "old.npz").config.conditioning.pitch_interp is False
    header["config"]["conditioning"]["pitch_interp"] = "yes"
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"bad.npz: config.conditioning.pitch_interp: expected true or false"):
        load_model(tmp_path / "bad.npz")
