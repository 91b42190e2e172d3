"""Tests for models.dataset: f0 estimation, folder import, the on-disk layout, errors, FluidSynth rendering."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models import dataset as D
from models.dataset import DatasetError, estimate_f0, load_dataset, load_folder

SR = 16000
LEAD_S, TONE_S, TAIL_S, FADE_S = 0.1, 0.5, 0.2, 0.005


def midi_hz(p: float) -> float:
    return 440.0 * 2.0 ** ((p - 69.0) / 12.0)


def cents(f: float, ref: float) -> float:
    return 1200.0 * math.log2(f / ref)


def wave(kind: str, f0: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """Band-limited sine or sawtooth (no aliasing, so the true f0 is exact)."""
    t = np.arange(int(round(seconds * sr))) / sr
    if kind == "sine":
        x = np.sin(2 * np.pi * f0 * t)
    else:
        ks = np.arange(1, int((sr / 2 - 1) // f0) + 1)
        x = (np.sin(2 * np.pi * f0 * t[:, None] * ks) / ks).sum(axis=1) * (2 / np.pi)
    return (amp * x / np.abs(x).max()).astype(np.float32)


def note_clip(kind: str, pitch: float, sr: int = SR) -> np.ndarray:
    """LEAD_S silence, a TONE_S tone with FADE_S linear fades, TAIL_S silence."""
    tone = wave(kind, midi_hz(pitch), TONE_S, sr)
    nf = int(FADE_S * sr)
    env = np.ones(tone.size, np.float32)
    env[:nf] = np.linspace(0, 1, nf, endpoint=False)
    env[-nf:] = np.linspace(1, 0, nf, endpoint=False)
    return np.concatenate([np.zeros(int(LEAD_S * sr), np.float32), tone * env,
                           np.zeros(int(TAIL_S * sr), np.float32)])


# file (relative), kind, true pitch, file rate, expected label, pitch, velocity
FOLDER = [
    ("saw/lead_p57.wav", "saw", 57, SR, "saw", 57, 100),        # pitch named
    ("saw/a_tone.wav", "saw", 45, SR, "saw", 45, 100),          # pitch estimated (110 Hz)
    ("saw/named_72.wav", "saw", 60, SR, "saw", 72, 100),        # the name wins over the estimate
    ("sine/tone-64-v90.flac", "sine", 64, SR, "sine", 64, 90),  # FLAC, named pitch and velocity
    ("sine/unnamed.wav", "sine", 69, 22050, "sine", 69, 100),   # resampled, estimated
    ("sine/deep/low.wav", "sine", 33, SR, "sine", 33, 100),     # nested: label = top sub-folder; 55 Hz
    ("loose.wav", "sine", 76, SR, "default", 76, 100),          # root file -> "default"
]


@pytest.fixture()
def tone_folder(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel, kind, pitch, sr, *_ in FOLDER:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), note_clip(kind, pitch, sr), sr, subtype="PCM_16")
    (root / "saw" / "README.txt").write_text("not audio")
    (root / "sine" / ".hidden.wav").write_bytes(b"junk, skipped because hidden")
    return root


# --------------------------------------------------------------------------- f0


@pytest.mark.parametrize("kind", ["sine", "saw"])
@pytest.mark.parametrize("f0", [55.0, 220.0, 440.0, 1000.0, 987.77])
def test_estimate_f0_accuracy(kind: str, f0: float) -> None:
    est = estimate_f0(wave(kind, f0, 1.0), SR)
    assert abs(cents(est, f0)) < 10.0, est


def test_estimate_f0_other_rate() -> None:
    est = estimate_f0(wave("saw", 220.0, 0.5, sr=44100), 44100)
    assert abs(cents(est, 220.0)) < 10.0


@pytest.mark.parametrize("signal", ["white", "silence", "short_silence"])
def test_estimate_f0_unvoiced_is_nan(signal: str) -> None:
    x = {"white": np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.3,
         "silence": np.zeros(SR, np.float32),
         "short_silence": np.zeros(100, np.float32)}[signal]
    assert math.isnan(estimate_f0(x, SR))


def test_estimate_f0_ignores_silent_padding_and_weak_tail() -> None:
    # octave-up tail (fundamental gone) shorter and quieter than the true note
    x = np.concatenate([np.zeros(SR // 2, np.float32), wave("saw", 110.0, 0.8),
                        0.3 * wave("sine", 220.0, 0.7)])
    assert abs(cents(estimate_f0(x, SR), 110.0)) < 10.0


def test_estimate_f0_fundamental_that_fades() -> None:
    # like some SoundFont loops: a short full note, then a long stretch with only even harmonics,
    # which YIN reads an octave up frame by frame; the note's f0 is still the fundamental
    x = np.concatenate([wave("saw", 110.0, 0.3), 0.6 * wave("sine", 220.0, 1.0)])
    assert abs(cents(estimate_f0(x, SR), 110.0)) < 10.0


def test_f0_track_shapes() -> None:
    tr = D.f0_track(wave("sine", 440.0, 0.5), SR)
    assert tr.f0.shape == tr.times.shape == tr.voiced.shape == tr.aperiodicity.shape
    assert tr.voiced.all() and np.all(np.diff(tr.times) > 0)
    assert np.allclose(tr.f0, 440.0, rtol=1e-3)


def test_find_onset_release() -> None:
    x = note_clip("sine", 60)
    onset, release = D.find_onset_release(x)
    assert abs(onset - LEAD_S * SR) <= 0.003 * SR
    assert abs(release - (LEAD_S + TONE_S) * SR) <= 0.003 * SR
    assert D.find_onset_release(np.zeros(10)) == (0, 0)


# --------------------------------------------------------------------------- folders


def test_load_folder_labels_pitch_and_timing(tone_folder: Path) -> None:
    ds = load_folder(tone_folder, sample_rate=SR)
    assert ds.sample_rate == SR
    assert ds.instruments == ["default", "saw", "sine"]
    assert ds.source.startswith("folder:")
    by_file = {n.file: n for n in ds.notes}
    assert sorted(by_file) == sorted(rel for rel, *_ in FOLDER)
    for rel, kind, true_pitch, sr, label, pitch, velocity in FOLDER:
        n = by_file[rel]
        assert ds.instruments[n.instrument_id] == label, rel
        assert (n.pitch, n.velocity, n.tonal) == (pitch, velocity, True), rel
        assert n.audio.dtype == np.float32 and n.audio.ndim == 1
        assert n.audio.size == pytest.approx((LEAD_S + TONE_S + TAIL_S) * SR, abs=2), rel
        assert abs(n.onset - LEAD_S * SR) <= 0.003 * SR, (rel, n.onset)
        assert abs(n.release - (LEAD_S + TONE_S) * SR) <= 0.003 * SR, (rel, n.release)
        if kind == "sine" and sr == SR:   # audio untouched (16-bit file read back as float)
            assert np.array_equal(n.audio, sf.read(str(tone_folder / rel), dtype="float32")[0])


def test_load_folder_unpitched_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros(800), rng.standard_normal(8000) * 0.2 * np.exp(-np.arange(8000) / 2000)])
    (tmp_path / "hits").mkdir()
    sf.write(str(tmp_path / "hits" / "snare.wav"), x, SR, subtype="PCM_16")
    (n,) = load_folder(tmp_path).notes
    assert (n.pitch, n.tonal, n.velocity) == (60, False, 100)
    assert n.onset == pytest.approx(800, abs=5)


def test_load_folder_custom_pitch_pattern(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "C4 note (m61).wav"), note_clip("sine", 50), SR)
    (n,) = load_folder(tmp_path, pitch_pattern=r"\(m(\d+)\)").notes
    assert n.pitch == 61


def test_import_round_trip(tone_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "layout"
    assert D.main(["import", str(tone_folder), str(out)]) == 0
    src = load_folder(tone_folder, SR)
    ds = load_dataset(out)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["sample_rate"] == SR and meta["n_notes"] == len(src.notes)
    assert meta["instruments"] == src.instruments and meta["source"].startswith("folder:")
    assert ds.sample_rate == SR and ds.instruments == src.instruments
    assert len(ds.notes) == len(src.notes)
    for a, b in zip(src.notes, ds.notes):
        assert b.file.startswith(f"audio/{ds.instruments[b.instrument_id]}/") and b.file.endswith(".wav")
        assert (a.instrument_id, a.pitch, a.velocity, a.onset, a.release, a.tonal) == \
               (b.instrument_id, b.pitch, b.velocity, b.onset, b.release, b.tonal)
        assert b.audio.dtype == np.float32 and b.audio.shape == a.audio.shape
        assert np.max(np.abs(a.audio - b.audio)) <= 1.0 / 32768 + 1e-7
        info = sf.info(str(out / b.file))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    rec = json.loads((out / "notes.jsonl").read_text().splitlines()[0])
    assert set(rec) == {"file", "instrument", "instrument_id", "pitch", "velocity", "onset", "release",
                        "n_samples", "tonal"}


def test_write_dataset_unique_names(tmp_path: Path) -> None:
    x = note_clip("sine", 60)
    (tmp_path / "src" / "a").mkdir(parents=True)
    sf.write(str(tmp_path / "src" / "a" / "n.wav"), x, SR)
    sf.write(str(tmp_path / "src" / "a" / "n.flac"), x, SR)
    D.import_folder(tmp_path / "src", tmp_path / "out", progress=False)
    files = [n.file for n in load_dataset(tmp_path / "out").notes]
    assert len(set(files)) == 2 and all(f.startswith("audio/a/n") for f in files)


# --------------------------------------------------------------------------- errors


def test_error_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(DatasetError, match="no WAV/FLAC") as e:
        load_folder(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)


def test_error_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        load_folder(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


@pytest.mark.parametrize("case", ["stereo", "corrupt", "silent"])
def test_error_bad_file_in_folder(tmp_path: Path, case: str) -> None:
    good = tmp_path / "inst" / "good.wav"
    good.parent.mkdir()
    sf.write(str(good), note_clip("sine", 60), SR)
    bad = tmp_path / "inst" / "bad.wav"
    if case == "stereo":
        sf.write(str(bad), np.stack([note_clip("sine", 60)] * 2, axis=1), SR)
    elif case == "corrupt":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    else:
        sf.write(str(bad), np.zeros(1000), SR)
    with pytest.raises(DatasetError) as e:
        load_folder(tmp_path)
    msg = str(e.value)
    assert str(bad) in msg and "\n" not in msg
    if case == "stereo":
        assert msg == f"{bad}: 2 channels, expected mono"


@pytest.fixture()
def layout(tone_folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "layout"
    D.import_folder(tone_folder, out, progress=False)
    return out


def _second_file(out: Path) -> Path:
    return out / json.loads((out / "notes.jsonl").read_text().splitlines()[1])["file"]


def _break(out: Path, case: str) -> tuple[str, str]:
    """Damage the layout; return (text that must be in the message, a hint that must be too)."""
    notes = out / "notes.jsonl"
    if case == "no_meta":
        (out / "dataset.json").unlink()
        return str(out / "dataset.json"), "missing"
    if case == "no_notes":
        notes.unlink()
        return str(notes), "missing"
    if case == "bad_json_line":
        lines = notes.read_text().splitlines()
        lines[2] = lines[2][:-5]
        notes.write_text("\n".join(lines) + "\n")
        return f"{notes}:3", "bad JSON"
    if case == "missing_key":
        lines = notes.read_text().splitlines()
        rec = json.loads(lines[1])
        del rec["pitch"]
        lines[1] = json.dumps(rec)
        notes.write_text("\n".join(lines) + "\n")
        return f"{notes}:2", "pitch"
    target = _second_file(out)
    if case == "missing_audio":
        target.unlink()
        return str(target), "missing audio"
    if case == "corrupt_audio":
        target.write_bytes(b"RIFF" + bytes(range(256)) * 4)
        return str(target), "unreadable"
    if case == "wrong_rate":
        x, _ = sf.read(str(target))
        sf.write(str(target), x, 22050, subtype="PCM_16")
        return str(target), "22050"
    if case == "stereo_audio":
        x, _ = sf.read(str(target))
        sf.write(str(target), np.stack([x, x], axis=1), SR, subtype="PCM_16")
        return str(target), "2 channels, expected mono"
    if case == "wrong_count":
        meta = json.loads((out / "dataset.json").read_text())
        meta["n_notes"] += 1
        (out / "dataset.json").write_text(json.dumps(meta))
        return str(out / "dataset.json"), "n_notes"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["no_meta", "no_notes", "bad_json_line", "missing_key", "missing_audio",
                                  "corrupt_audio", "wrong_rate", "stereo_audio", "wrong_count"])
def test_load_dataset_errors(layout: Path, case: str) -> None:
    load_dataset(layout)   # intact first
    where, hint = _break(layout, case)
    with pytest.raises(DatasetError) as e:
        load_dataset(layout)
    msg = str(e.value)
    assert where in msg and hint in msg and "\n" not in msg, msg


def test_cli_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert D.main(["import", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err


# --------------------------------------------------------------------------- helpers


def test_parse_helpers() -> None:
    assert D.parse_int_list("36-38,60, 38") == [36, 37, 38, 60]
    with pytest.raises(ValueError):
        D.parse_int_list("0-200")
    assert D.parse_instrument("piano") == D.InstrumentSpec("piano", 0, 0)
    assert D.parse_instrument("drums").tonal is False
    assert D.parse_instrument("cello=42") == D.InstrumentSpec("cello", 0, 42)
    assert D.parse_instrument("kit=128:16") == D.InstrumentSpec("kit", 128, 16)
    with pytest.raises(ValueError):
        D.parse_instrument("kazoo")


def test_default_note_timing() -> None:
    t = D.NoteTiming.from_seconds(16000, 0.02, 1.5, 2.0)
    assert (t.onset, t.release, t.n_samples) == (320, 24320, 32000)
    with pytest.raises(ValueError):
        D.NoteTiming.from_seconds(16000, 0.02, 2.0, 2.0)   # release must be inside the clip


def test_default_instrument_set() -> None:
    specs = [D.parse_instrument(n) for n in D.DEFAULT_INSTRUMENTS]
    assert sum(s.tonal for s in specs) >= 6 and any(not s.tonal for s in specs)
    assert len({s.program for s in specs if s.tonal}) == sum(s.tonal for s in specs)


# --------------------------------------------------------------------------- FluidSynth


def _need_fluidsynth() -> None:
    pytest.importorskip("fluidsynth")
    if not Path(D.DEFAULT_SOUNDFONT).is_file():
        pytest.skip(f"{D.DEFAULT_SOUNDFONT} not installed")


@pytest.mark.slow
def test_build_tiny_fluidsynth_set(tmp_path: Path) -> None:
    _need_fluidsynth()
    kw = dict(instruments=["piano", "drums"], pitches=[60, 69], drum_keys=[36, 38], velocities=[100],
              progress=False)
    summary = D.build_dataset(tmp_path / "a", **kw)
    assert summary.n_notes == 4 and 0.0 < summary.silence_fraction < 1.0
    meta = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert (meta["sample_rate"], meta["instruments"], meta["source"], meta["n_notes"]) == \
           (16000, ["piano", "drums"], "FluidR3_GM.sf2", 4)
    recs = [json.loads(line) for line in (tmp_path / "a" / "notes.jsonl").read_text().splitlines()]
    assert [(r["file"], r["instrument"], r["instrument_id"], r["pitch"], r["velocity"], r["tonal"]) for r in recs] == [
        ("audio/piano/p060_v100.wav", "piano", 0, 60, 100, True),
        ("audio/piano/p069_v100.wav", "piano", 0, 69, 100, True),
        ("audio/drums/p036_v100.wav", "drums", 1, 36, 100, False),
        ("audio/drums/p038_v100.wav", "drums", 1, 38, 100, False)]
    assert all((r["onset"], r["release"], r["n_samples"]) == (320, 24320, 32000) for r in recs)

    ds = load_dataset(tmp_path / "a")
    for n in ds.notes:
        a = n.audio
        peak = float(np.abs(a).max())
        assert 10 ** (-30 / 20) < peak <= 10 ** (-1 / 20) + 1e-4          # audible, never clipping
        assert np.abs(a[:n.onset - 16]).max() < 1e-3                       # silent before the key goes down
        assert np.abs(a[n.onset:n.onset + 1600]).max() > 0.3 * peak        # sound right after it
        assert np.all(a[:n.onset - 128] == 0)                               # exact silence (no dither)
    piano = {n.pitch: n for n in ds.notes if n.instrument_id == 0}
    assert abs(cents(estimate_f0(piano[69].audio, 16000), 440.0)) < 30.0
    assert abs(cents(estimate_f0(piano[60].audio, 16000), midi_hz(60))) < 30.0
    a, r = piano[60].audio, piano[60].release
    rms = lambda x: float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))  # noqa: E731
    assert rms(a[-1600:]) < 0.1 * rms(a[r - 1600:r])                       # the key-up damps the note
    # deterministic: a second build writes the same bytes
    D.build_dataset(tmp_path / "b", **kw)
    for rec in recs:
        assert (tmp_path / "a" / rec["file"]).read_bytes() == (tmp_path / "b" / rec["file"]).read_bytes()
    assert (tmp_path / "a" / "notes.jsonl").read_bytes() == (tmp_path / "b" / "notes.jsonl").read_bytes()
    shutil.rmtree(tmp_path / "b")
