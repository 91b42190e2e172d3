"""Detuned training crops (train --detune): the audio is resampled off its MIDI note, the f0 input
follows it and so does the pitch embedding (interpolated) of a pitch_interp model, as a pitch bend
plays; the f0-only probe moves the f0 input alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_train import train
from tiny_data import SR, tone

from models.crops import detuned, make_batch
from models.dataset import Note, estimate_f0
from realtime.model import mulaw
from realtime.model.model_file import load_model

CONTEXT, WINDOW = 255, 4096


def midi_of(f0_hz: float) -> float:
    return 69.0 + 12.0 * np.log2(f0_hz / 440.0)


def notes() -> list[Note]:
    return [Note(tone(k, p, n=16000, release=12000), i, p, 100, 800, 12000, True, "")
            for i, k in enumerate(("sine", "saw")) for p in (57, 62)]


@pytest.mark.parametrize("semitones", [-1.0, -0.3, 0.5, 2.0])
def test_detuned_note_sounds_that_many_semitones_off_and_its_times_scale(semitones):
    n = notes()[1]  # a sine at MIDI 62
    d = detuned(n, semitones, SR)
    r = 2.0 ** (semitones / 12.0)
    f0 = estimate_f0(d.audio[d.onset:d.release], SR)
    assert midi_of(f0) - n.pitch == pytest.approx(semitones, abs=0.02)  # within 2 cents
    assert (d.onset, d.release) == (round(n.onset / r), round(n.release / r))
    assert abs(len(d.audio) - len(n.audio) / r) <= 2
    assert d.pitch == n.pitch and d.level is n.level and n.audio.shape == (16000,)  # the note itself is untouched


@pytest.mark.parametrize("detune", [0.5, 2.0])
@pytest.mark.parametrize("interp", [False, True])
def test_detuned_crops_f0_input_follows_the_audio_and_the_embedding_pitch_follows_if_interpolated(detune, interp):
    ns = notes()
    rng = np.random.default_rng(3)
    b = make_batch(ns, [0, 1, 2, 3] * 3, SR, CONTEXT, WINDOW, rng, detune=detune, pitch_interp=interp)
    offsets = []
    for k in range(len(b.pitch)):
        audio = mulaw.decode(b.targets[k, CONTEXT:])
        f0_audio = midi_of(estimate_f0(audio, SR))
        ph = np.unwrap(np.arctan2(b.local[k, 1, CONTEXT:], b.local[k, 2, CONTEXT:]))  # the f0 input's phase
        f0_input = midi_of((ph[-1] - ph[0]) / (2 * np.pi) / (len(ph) - 1) * SR)
        assert f0_input == pytest.approx(f0_audio, abs=0.03)  # the f0 input says what the audio plays
        note = ns[[0, 1, 2, 3][k % 4]].pitch
        if interp:  # the embedding's pitch is the bent one
            assert b.pitch.dtype == np.float32 and b.pitch[k] == pytest.approx(f0_input, abs=0.03)
        else:  # the MIDI note
            assert b.pitch.dtype == np.int64 and b.pitch[k] == note
        offsets.append(f0_input - note)
    offsets = np.asarray(offsets)
    assert np.all(np.abs(offsets) <= detune + 0.03) and np.ptp(offsets) > detune / 2  # spread within +-detune


def test_f0_shift_probe_moves_the_f0_input_alone():
    ns = notes()
    kw = dict(starts=[4000, 4000])
    plain = make_batch(ns, [1, 3], SR, CONTEXT, WINDOW, np.random.default_rng(0), **kw)
    shifted = make_batch(ns, [1, 3], SR, CONTEXT, WINDOW, np.random.default_rng(0), f0_shift=1.0, **kw)
    assert np.array_equal(plain.inputs, shifted.inputs) and np.array_equal(plain.pitch, shifted.pitch)
    assert np.array_equal(plain.local[:, 0], shifted.local[:, 0])  # the gate
    for b, want in ((plain, 0.0), (shifted, 1.0)):
        ph = np.unwrap(np.arctan2(b.local[0, 1], b.local[0, 2]))
        assert midi_of((ph[-1] - ph[0]) / (2 * np.pi) / (len(ph) - 1) * SR) - 62 == pytest.approx(want, abs=0.01)


@pytest.mark.slow  # not in make test-fast: a training run
def test_train_detune_is_logged_and_its_probe_runs(tiny_data, tmp_path):
    out = tmp_path / "o"
    r = train("--data", str(tiny_data), "--out", str(out), "--config", str(tiny_data / "config.json"),
              "--max-steps", "2", "--detune", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    last = json.loads((out / "history.jsonl").read_text().splitlines()[-1])
    assert last["options"]["detune"] == 1.0 and last["options"]["pitch_interp"] is True
    assert load_model(out / "model.npz").config.conditioning.pitch_interp is True  # bends move its embedding
    assert last["f0_shift_loss"] > 0 and last["f0_shift_loss"] != last["eval_loss"]


def test_train_refuses_a_detune_beyond_two_semitones(tiny_data, tmp_path):
    r = train("--data", str(tiny_data), "--out", str(tmp_path / "o"), "--config", str(tiny_data / "config.json"),
              "--max-steps", "1", "--detune", "3")
    assert r.returncode != 0 and "--detune 3.0: must be between 0 and 2 semitones" in r.stderr
