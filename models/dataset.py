"""Single-note datasets: render them, import them, load them.

Three ways to a :class:`Dataset` (mono float32 audio, one sample rate):

* :func:`build_dataset` (``python -m models.dataset build OUT_DIR``) renders an
  NSynth-style set of single notes from a General MIDI SoundFont through
  FluidSynth: offline, reverb and chorus off, one fixed gain per instrument;
* :func:`load_folder` reads a folder of the user's WAV/FLAC files (label = the
  sub-folder, pitch from the file name or an f0 estimate);
  :func:`import_folder` (``python -m models.dataset import SRC_DIR OUT_DIR``)
  writes one into the on-disk layout;
* :func:`load_dataset` reads the on-disk layout (what training reads)::

    OUT_DIR/dataset.json   {"sample_rate", "instruments", "source", "n_notes", ...}
    OUT_DIR/notes.jsonl    one note per line: file, instrument, instrument_id,
                           pitch, velocity, onset, release, n_samples, tonal
    OUT_DIR/audio/<instrument>/p060_v080.wav      16-bit PCM mono

  The instrument id of a note is its index in ``instruments``.

:func:`estimate_f0` / :func:`f0_track` are a numpy YIN pitch estimator, also
used by the quality evaluation.

Units throughout: positions and lengths in samples, rates and f0 in Hz,
durations in seconds, pitch as a MIDI note number, velocity as MIDI 1..127,
levels in dBFS (0 dB = full scale 1.0).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

import numpy as np
import soundfile as sf

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
#: name -> (bank, program) in the General MIDI SoundFont; bank 128 = percussion kit (non-tonal).
GM_INSTRUMENTS: dict[str, tuple[int, int]] = {
    "piano": (0, 0),       # Acoustic Grand Piano
    "epiano": (0, 4),      # Electric Piano 1
    "marimba": (0, 12),
    "organ": (0, 16),      # Drawbar Organ
    "guitar": (0, 24),     # Nylon String Guitar
    "steel_guitar": (0, 25),
    "bass": (0, 33),       # Electric Bass (finger)
    "cello": (0, 42),
    "strings": (0, 48),    # String Ensemble 1
    "trumpet": (0, 56),
    "brass": (0, 61),      # Brass Section
    "sax": (0, 65),        # Alto Sax
    "flute": (0, 73),
    "square": (0, 80),     # Lead 1 (square)
    "lead": (0, 81),       # Lead 2 (sawtooth)
    "pad": (0, 89),        # Pad 2 (warm)
    "drums": (128, 0),     # Standard drum kit
}
DEFAULT_INSTRUMENTS: tuple[str, ...] = ("piano", "guitar", "strings", "flute", "lead", "bass", "drums")
DEFAULT_PITCHES: tuple[int, ...] = tuple(range(36, 85))
DEFAULT_DRUM_KEYS: tuple[int, ...] = tuple(range(35, 82))   # the GM percussion key map
DEFAULT_VELOCITIES: tuple[int, ...] = (50, 80, 110)
DEFAULT_PITCH_PATTERN = r"(?:^|[_-])p?(\d{2,3})(?:[_-]|$)"
DEFAULT_VELOCITY_PATTERN = r"(?:^|[_-])v(\d{1,3})(?:[_-]|$)"
AUDIO_EXTENSIONS = (".wav", ".flac")
FLUID_BLOCK = 64   # FluidSynth renders in 64-sample blocks; MIDI events land on block starts


class DatasetError(Exception):
    """A dataset cannot be read or written; the message names the offending file or folder."""


@dataclass(eq=False)
class Note:
    """One recorded note.

    ``audio`` is float32 mono in [-1, 1]; ``onset``/``release`` are sample
    indices (key down / key up, or for imported files the first/last sample
    above -40 dB re peak); ``file`` is relative to the dataset (or source) folder.
    """

    audio: np.ndarray
    instrument_id: int
    pitch: int
    velocity: int
    onset: int
    release: int
    tonal: bool
    file: str
    level: np.ndarray | None = None  # fitted loudness-envelope params (realtime.model.level.note_level), on first use

    @property
    def n_samples(self) -> int:
        return int(self.audio.shape[0])


@dataclass(eq=False)
class Dataset:
    """Notes at one ``sample_rate`` (Hz); ``instruments[note.instrument_id]`` is a note's label."""

    sample_rate: int
    instruments: list[str]
    notes: list[Note] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.notes)

    def instrument_of(self, note: Note) -> str:
        return self.instruments[note.instrument_id]

    def check_fits(self, instruments: Sequence[str], sample_rate: int, where: str, model: str) -> None:
        """Raise ValueError naming ``where`` (this dataset's folder) when its instruments or sample rate are not
        ``model``'s (e.g. "the model", a checkpoint path)."""
        if list(instruments) != list(self.instruments):
            raise ValueError(f"{where}: instruments {self.instruments} differ from {model}'s {list(instruments)}")
        if sample_rate != self.sample_rate:
            raise ValueError(f"{where}: sample rate {self.sample_rate} differs from {model}'s {sample_rate}")


# --------------------------------------------------------------------------- pitch

def midi_to_hz(pitch: float) -> float:
    """MIDI note number -> frequency in Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((float(pitch) - 69.0) / 12.0)


def hz_to_midi(f0: float) -> float:
    """Frequency in Hz -> fractional MIDI note number (NaN for NaN or f0 <= 0)."""
    if not np.isfinite(f0) or f0 <= 0:
        return float("nan")
    return 69.0 + 12.0 * math.log2(f0 / 440.0)


@dataclass(frozen=True)
class F0Track:
    """Frame-wise YIN output. ``times`` in seconds (frame centres), ``f0`` in Hz (NaN where
    unvoiced), ``aperiodicity`` = YIN's normalized difference at the chosen lag (0 periodic .. ~1 noise)."""

    times: np.ndarray
    f0: np.ndarray
    aperiodicity: np.ndarray
    voiced: np.ndarray
    active: np.ndarray   # frames above the silence gate
    rms: np.ndarray      # RMS of each frame's integration window (full scale 1.0)


def _yin_frames(frames: np.ndarray, w: int, max_lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference function d, cumulative-mean-normalized d' (lags 0..max_lag) and energy of each frame's window."""
    n_frames, frame = frames.shape
    nfft = 1 << int(math.ceil(math.log2(frame + w)))
    spec_a = np.fft.rfft(frames[:, :w], nfft)
    spec_b = np.fft.rfft(frames, nfft)
    r = np.fft.irfft(np.conj(spec_a) * spec_b, nfft)[:, :max_lag + 1]      # sum_j x[j] x[j+tau]
    sq = np.zeros((n_frames, frame + 1))
    np.cumsum(frames * frames, axis=1, out=sq[:, 1:])
    taus = np.arange(max_lag + 1)
    e0 = sq[:, w]
    d = np.maximum(e0[:, None] + (sq[:, taus + w] - sq[:, taus]) - 2.0 * r, 0.0)
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(cum > 0, d[:, 1:] * taus[1:] / cum, 1.0)
    return d, cmnd, e0


_INTERP_HALF = 16                                  # Lanczos kernel half-width, lags
_INTERP_GRID = np.linspace(-1.0, 1.0, 41)          # fractional offsets searched around the integer lag
_INTERP_TAPS = np.arange(-_INTERP_HALF - 1, _INTERP_HALF + 2)
_INTERP_MATRIX = np.sinc(_INTERP_GRID[:, None] - _INTERP_TAPS[None, :]) * np.sinc(
    (_INTERP_GRID[:, None] - _INTERP_TAPS[None, :]) / _INTERP_HALF)
_INTERP_MATRIX[np.abs(_INTERP_GRID[:, None] - _INTERP_TAPS[None, :]) >= _INTERP_HALF] = 0.0


def _refine_lag(d: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Fractional lag of the minimum of d near integer lag ``best`` (per row).

    d(tau) of a band-limited signal is band-limited in tau, so a parabola through
    three integer lags is biased for bright sounds; instead d is Lanczos-interpolated
    on a 0.05-lag grid over best +- 1 and a parabola is fitted there.
    """
    lags = np.abs(best[:, None] + _INTERP_TAPS[None, :])          # d(-tau) = d(tau): mirror at 0
    local = np.take_along_axis(d, lags, axis=1)
    fine = local @ _INTERP_MATRIX.T                                # (frames, grid)
    i = np.clip(np.argmin(fine, axis=1), 1, _INTERP_GRID.size - 2)
    rows = np.arange(d.shape[0])
    y0, y1, y2 = fine[rows, i - 1], fine[rows, i], fine[rows, i + 1]
    denom = y0 - 2.0 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(denom > 0, 0.5 * (y0 - y2) / denom, 0.0)
    step = _INTERP_GRID[1] - _INTERP_GRID[0]
    return best + _INTERP_GRID[i] + np.clip(delta, -1.0, 1.0) * step


def f0_track(audio: np.ndarray, sample_rate: float, fmin: float = 30.0, fmax: float = 2000.0, *,
             hop: int | None = None, threshold: float = 0.15, silence_db: float = -40.0,
             batch: int = 256) -> F0Track:
    """YIN f0 per frame (de Cheveigne & Kawahara 2002) with sub-sample lag refinement.

    Frames of ``ceil(sr/fmin)`` samples (integration window) plus the maximum lag,
    every ``hop`` samples (default half the window). Per frame the first lag whose
    d' < ``threshold`` (refined to its local minimum) is taken, else the global
    minimum of d'; its lag is refined by :func:`_refine_lag` (interpolation, then a
    parabola). Units: ``fmin``/``fmax`` and the result in Hz, ``hop`` in samples.
    A frame is *active* if its RMS is within ``silence_db`` of the
    loudest frame (and above -100 dBFS), *voiced* if active and d' < ``threshold``.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {x.shape}")
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got {fmin}, {fmax}")
    tau_min = max(2, int(math.floor(sample_rate / fmax)))
    tau_max = max(tau_min + 1, int(math.ceil(sample_rate / fmin)))
    w = tau_max
    max_lag = tau_max + _INTERP_HALF + 1       # lags beyond tau_max feed the interpolation
    frame = w + max_lag
    hop = int(hop) if hop else max(1, w // 2)
    if x.size < frame:
        x = np.pad(x, (0, frame - x.size))
    starts = np.arange(0, x.size - frame + 1, hop)
    windows = np.lib.stride_tricks.sliding_window_view(x, frame)
    f0 = np.empty(starts.size)
    aper = np.empty(starts.size)
    rms = np.empty(starts.size)
    for b0 in range(0, starts.size, batch):
        idx = starts[b0:b0 + batch]
        d, cmnd, e0 = _yin_frames(windows[idx], w, max_lag)
        seg = cmnd[:, tau_min:tau_max + 1]
        below = seg < threshold
        first = np.argmax(below, axis=1)
        stops = (seg <= cmnd[:, tau_min + 1:tau_max + 2]) & (np.arange(seg.shape[1]) >= first[:, None])
        walked = np.where(stops.any(axis=1), np.argmax(stops, axis=1), seg.shape[1] - 1)
        best = np.where(below.any(axis=1), walked, np.argmin(seg, axis=1)) + tau_min
        rows = np.arange(idx.size)
        f0[b0:b0 + idx.size] = sample_rate / _refine_lag(d, best)
        aper[b0:b0 + idx.size] = cmnd[rows, best]
        rms[b0:b0 + idx.size] = np.sqrt(e0 / w)
    gate = max(float(rms.max(initial=0.0)) * 10.0 ** (silence_db / 20.0), 1e-5)
    active = rms > gate
    voiced = active & (aper < threshold)
    times = (starts + frame / 2.0) / sample_rate
    return F0Track(times, np.where(voiced, f0, np.nan), aper, voiced, active, rms)


def estimate_f0(audio: np.ndarray, sample_rate: float, fmin: float = 30.0, fmax: float = 2000.0, *,
                threshold: float = 0.15, min_voiced: float = 0.25, octave_support: float = 0.2) -> float:
    """Overall f0 of a note in Hz; NaN when unvoiced.

    The RMS-weighted median of the YIN f0 of voiced frames (weighting keeps the
    loud, fundamental-rich part of a note in charge). If at least
    ``octave_support`` of that weight sits an octave below (+-50 cents), that is
    taken instead: samples whose loops lose the fundamental read an octave up
    frame by frame, YIN's usual error. NaN if fewer than ``min_voiced`` of the
    active (non-silent) frames are voiced, e.g. for noise, most drums or silence.
    """
    tr = f0_track(audio, sample_rate, fmin, fmax, threshold=threshold)
    n_voiced = int(tr.voiced.sum())
    if n_voiced == 0 or n_voiced < min_voiced * int(tr.active.sum()):
        return float("nan")
    f0, weight = tr.f0[tr.voiced], tr.rms[tr.voiced]
    est = weighted_median(f0, weight)
    below = np.abs(np.log2(f0 / (0.5 * est))) < 50.0 / 1200.0
    if weight[below].sum() >= octave_support * weight.sum():
        est = weighted_median(f0[below], weight[below])
    return est


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the cumulative weight of the sorted values reaches half the total."""
    order = np.argsort(values)
    v, cw = np.asarray(values)[order], np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    return float(v[np.searchsorted(cw, 0.5 * cw[-1])])


def find_onset_release(audio: np.ndarray, threshold_db: float = -40.0) -> tuple[int, int]:
    """(first, last) sample index whose |x| is within ``threshold_db`` of the peak; (0, 0) for silence."""
    mag = np.abs(np.asarray(audio))
    peak = float(mag.max(initial=0.0))
    if peak <= 0.0:
        return 0, 0
    above = np.flatnonzero(mag >= peak * 10.0 ** (threshold_db / 20.0))
    return int(above[0]), int(above[-1])


# --------------------------------------------------------------------------- audio files

def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    """Read a mono audio file as float32; DatasetError (naming the file) if unreadable or not mono."""
    try:
        with sf.SoundFile(str(path)) as f:
            if f.channels != 1:
                raise DatasetError(f"{path}: {f.channels} channels, expected mono")
            audio = f.read(dtype="float32", always_2d=True)[:, 0]
            return np.ascontiguousarray(audio), int(f.samplerate)
    except DatasetError:
        raise
    except Exception as e:  # libsndfile raises several types for broken files
        raise DatasetError(f"{path}: unreadable audio ({_one_line(e)})") from e


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 with the same scale soundfile uses when reading (x * 32768), clipped."""
    return np.clip(np.rint(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, int(sample_rate), subtype="PCM_16", format="WAV")


# --------------------------------------------------------------------------- on-disk layout

def _note_record(file: str, instrument: str, instrument_id: int, pitch: int, velocity: int,
                 onset: int, release: int, n_samples: int, tonal: bool) -> dict[str, Any]:
    return {"file": file, "instrument": instrument, "instrument_id": int(instrument_id), "pitch": int(pitch),
            "velocity": int(velocity), "onset": int(onset), "release": int(release),
            "n_samples": int(n_samples), "tonal": bool(tonal)}


def _write_index(out: Path, sample_rate: int, instruments: Sequence[str], source: str,
                 records: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    """Write notes.jsonl then dataset.json (written last: its presence marks a complete dataset)."""
    with open(out / "notes.jsonl", "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    meta = {"sample_rate": int(sample_rate), "instruments": list(instruments), "source": source,
            "n_notes": len(records), **(extra or {})}
    (out / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def _audio_name(note: Note, instrument: str, used: set[str]) -> str:
    """audio/<instrument>/<file's path below its instrument folder>.wav, made unique."""
    parts = list(PurePosixPath(note.file).parts) or ["note"]
    if parts[0] == "audio" and len(parts) > 1:
        parts = parts[1:]
    if parts[0] != instrument or len(parts) == 1:
        parts = [instrument] + parts
    rel = PurePosixPath("audio", *parts).with_suffix(".wav")
    name, k = str(rel), 2
    while name in used:
        name = str(rel.with_name(f"{rel.stem}_{k}.wav"))
        k += 1
    used.add(name)
    return name


def write_dataset(dataset: Dataset, out_dir: str | Path, source: str | None = None) -> Path:
    """Write ``dataset`` in the on-disk layout (16-bit WAVs, clipped to [-1, 1]); returns OUT_DIR."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    records = []
    for note in dataset.notes:
        instrument = dataset.instruments[note.instrument_id]
        name = _audio_name(note, instrument, used)
        _write_wav(out / name, _to_pcm16(note.audio), dataset.sample_rate)
        records.append(_note_record(name, instrument, note.instrument_id, note.pitch, note.velocity,
                                    note.onset, note.release, note.n_samples, note.tonal))
    _write_index(out, dataset.sample_rate, dataset.instruments, source if source is not None else dataset.source,
                 records)
    return out


_REQUIRED_KEYS = {"file": str, "instrument_id": int, "pitch": int, "velocity": int, "onset": int, "release": int}


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing (not a dataset folder? build one with `python -m models.dataset build`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: bad JSON ({_one_line(e)})") from e
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    sr, instruments = meta.get("sample_rate"), meta.get("instruments")
    if not isinstance(sr, int) or sr <= 0:
        raise DatasetError(f"{path}: 'sample_rate' must be a positive integer, got {sr!r}")
    if not isinstance(instruments, list) or not instruments or not all(isinstance(i, str) for i in instruments):
        raise DatasetError(f"{path}: 'instruments' must be a non-empty list of names, got {instruments!r}")
    return meta


def _parse_record(line: str, where: str, n_instruments: int) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: bad JSON ({_one_line(e)})") from e
    if not isinstance(rec, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    for key, typ in _REQUIRED_KEYS.items():
        if key not in rec:
            raise DatasetError(f"{where}: missing key {key!r}")
        if not isinstance(rec[key], typ) or isinstance(rec[key], bool):
            raise DatasetError(f"{where}: {key!r} must be {typ.__name__}, got {rec[key]!r}")
    if not 0 <= rec["instrument_id"] < n_instruments:
        raise DatasetError(f"{where}: instrument_id {rec['instrument_id']} out of range (dataset has {n_instruments})")
    return rec


def load_dataset(path: str | Path) -> Dataset:
    """Load the on-disk layout (dataset.json, notes.jsonl, audio/) into memory.

    Raises :class:`DatasetError` naming the file for a missing index, a bad JSON
    line (with its line number), a missing or unreadable audio file, a wrong
    sample rate, more than one channel or inconsistent labels.
    """
    root = Path(path)
    meta_path, notes_path = root / "dataset.json", root / "notes.jsonl"
    meta = _read_meta(meta_path)
    sr, instruments = int(meta["sample_rate"]), list(meta["instruments"])
    if not notes_path.is_file():
        raise DatasetError(f"{notes_path}: missing")
    notes: list[Note] = []
    with open(notes_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{notes_path}:{lineno}"
            rec = _parse_record(line, where, len(instruments))
            if "instrument" in rec and rec["instrument"] != instruments[rec["instrument_id"]]:
                raise DatasetError(f"{where}: instrument {rec['instrument']!r} but instrument_id "
                                   f"{rec['instrument_id']} is {instruments[rec['instrument_id']]!r}")
            audio_path = root / rec["file"]
            if not audio_path.is_file():
                raise DatasetError(f"{audio_path}: missing audio file (listed in {where})")
            audio, file_sr = _read_mono(audio_path)
            if file_sr != sr:
                raise DatasetError(f"{audio_path}: sample rate {file_sr} Hz, expected {sr} Hz")
            n = audio.shape[0]
            if rec.get("n_samples", n) != n:
                raise DatasetError(f"{audio_path}: {n} samples but {where} says {rec['n_samples']}")
            if not 0 <= rec["onset"] <= rec["release"] <= n:
                raise DatasetError(f"{where}: need 0 <= onset <= release <= {n}, got {rec['onset']}, {rec['release']}")
            notes.append(Note(audio, rec["instrument_id"], rec["pitch"], rec["velocity"], rec["onset"],
                              rec["release"], bool(rec.get("tonal", True)), rec["file"]))
    if "n_notes" in meta and meta["n_notes"] != len(notes):
        raise DatasetError(f"{meta_path}: n_notes is {meta['n_notes']} but {notes_path} lists {len(notes)}")
    if not notes:
        raise DatasetError(f"{notes_path}: no notes")
    return Dataset(sr, instruments, notes, str(meta.get("source", "")))


# --------------------------------------------------------------------------- user folders

def _match_int(pattern: re.Pattern[str], stem: str, lo: int, hi: int) -> int | None:
    m = pattern.search(stem)
    if m is None:
        return None
    v = int(m.group(1))
    return v if lo <= v <= hi else None


def _folder_note(path: Path, rel: PurePosixPath, instrument_id: int, sample_rate: int,
                 pitch_re: re.Pattern[str], velocity_re: re.Pattern[str]) -> Note:
    audio, file_sr = _read_mono(path)
    if file_sr != sample_rate:
        import soxr
        audio = soxr.resample(audio, file_sr, sample_rate, quality="VHQ").astype(np.float32)
    if not np.any(audio):
        raise DatasetError(f"{path}: digital silence, nothing to learn from")
    onset, release = find_onset_release(audio)
    f0 = estimate_f0(audio, sample_rate)
    pitch = _match_int(pitch_re, rel.stem, 0, 127)
    if pitch is None:
        pitch = int(np.clip(round(hz_to_midi(f0)), 0, 127)) if np.isfinite(f0) else 60
    velocity = _match_int(velocity_re, rel.stem, 1, 127) or 100
    return Note(audio, instrument_id, pitch, velocity, onset, release, bool(np.isfinite(f0)), str(rel))


def load_folder(path: str | Path, sample_rate: int = 16000, pitch_pattern: str = DEFAULT_PITCH_PATTERN,
                velocity_pattern: str = DEFAULT_VELOCITY_PATTERN, progress: bool = False) -> Dataset:
    """Load a folder of mono WAV/FLAC notes (searched recursively, hidden files skipped).

    Label = the file's top-level sub-folder ("default" for files in the root).
    Pitch = the MIDI number matched by ``pitch_pattern`` in the file stem, else
    the rounded :func:`estimate_f0` (60 if unvoiced); ``tonal`` = the f0 estimate
    is voiced. Velocity from ``velocity_pattern`` (e.g. ``_v080``), else 100.
    onset/release = first/last sample within -40 dB of the peak. Files at other
    rates are resampled to ``sample_rate`` (Hz) with soxr.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DatasetError(f"{root}: no WAV/FLAC files found")
    rels = [PurePosixPath(r) for r, _ in files]
    labels = [r.parts[0] if len(r.parts) > 1 else "default" for r in rels]
    instruments = sorted(set(labels))
    pitch_re, velocity_re = re.compile(pitch_pattern), re.compile(velocity_pattern)
    notes = []
    from tqdm import tqdm
    for (_, p), rel, label in tqdm(list(zip(files, rels, labels)), desc="load", unit="file", disable=not progress):
        notes.append(_folder_note(p, rel, instruments.index(label), sample_rate, pitch_re, velocity_re))
    return Dataset(int(sample_rate), instruments, notes, f"folder:{root.resolve()}")


def import_folder(src: str | Path, out_dir: str | Path, sample_rate: int = 16000,
                  pitch_pattern: str = DEFAULT_PITCH_PATTERN, progress: bool = True) -> Dataset:
    """:func:`load_folder` ``src`` and write it to ``out_dir`` in the on-disk layout."""
    ds = load_folder(src, sample_rate, pitch_pattern, progress=progress)
    write_dataset(ds, out_dir)
    return ds


# --------------------------------------------------------------------------- FluidSynth rendering

@dataclass(frozen=True)
class InstrumentSpec:
    """A SoundFont preset to render: ``bank`` 128 is a percussion kit (non-tonal, keys from the drum map)."""

    name: str
    bank: int
    program: int

    @property
    def tonal(self) -> bool:
        return self.bank != 128


def parse_instrument(text: str) -> InstrumentSpec:
    """``piano`` (a :data:`GM_INSTRUMENTS` name), ``NAME=PROGRAM`` or ``NAME=BANK:PROGRAM``."""
    name, _, preset = text.strip().partition("=")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ValueError(f"bad instrument name {name!r}")
    if not preset:
        if name not in GM_INSTRUMENTS:
            raise ValueError(f"unknown instrument {name!r}; known: {', '.join(GM_INSTRUMENTS)} (or NAME=PROGRAM)")
        return InstrumentSpec(name, *GM_INSTRUMENTS[name])
    bank, _, program = preset.rpartition(":")
    return InstrumentSpec(name, int(bank or 0), int(program))


def parse_int_list(text: str, lo: int = 0, hi: int = 127) -> list[int]:
    """``"36-84"``, ``"50,80,110"`` or a mix like ``"36-48,60"`` -> sorted unique ints in [lo, hi]."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        a, sep, b = part.partition("-")
        rng = range(int(a), int(b) + 1) if sep else range(int(a), int(a) + 1)
        if not rng or rng[0] < lo or rng[-1] > hi:
            raise ValueError(f"{part!r}: expected values in {lo}..{hi}")
        values.update(rng)
    if not values:
        raise ValueError(f"{text!r}: empty list")
    return sorted(values)


@dataclass(frozen=True)
class NoteTiming:
    """Where a rendered note starts and ends, in samples at the output rate (block-aligned)."""

    onset: int
    release: int
    n_samples: int

    @classmethod
    def from_seconds(cls, sample_rate: int, onset_s: float, hold_s: float, seconds: float) -> "NoteTiming":
        snap = lambda t: FLUID_BLOCK * int(round(t * sample_rate / FLUID_BLOCK))  # noqa: E731
        timing = cls(snap(onset_s), snap(onset_s + hold_s), int(round(seconds * sample_rate)))
        if not 0 <= timing.onset < timing.release < timing.n_samples:
            raise ValueError(f"need 0 <= onset < onset + hold < seconds; got onset {onset_s} s, hold {hold_s} s, "
                             f"length {seconds} s")
        return timing


class FluidRenderer:
    """Offline FluidSynth (no audio driver, reverb/chorus off, synth gain 1) rendering single notes.

    Renders float32 at ``sample_rate * oversample`` Hz (less aliasing from
    FluidSynth's sample interpolation), mixes to mono and resamples with soxr.
    """

    MELODIC_CHANNEL, DRUM_CHANNEL = 0, 9

    def __init__(self, soundfont: str | Path, sample_rate: int, oversample: int = 3) -> None:
        try:
            import fluidsynth
        except (ImportError, OSError) as e:   # OSError: libfluidsynth missing
            raise DatasetError(f"pyfluidsynth/libfluidsynth unavailable ({_one_line(e)}); "
                               "pip install pyfluidsynth and apt install fluidsynth") from e
        self.sample_rate = int(sample_rate)
        self.oversample = max(1, min(int(oversample), 96000 // self.sample_rate))  # FluidSynth caps at 96 kHz
        self.render_rate = self.sample_rate * self.oversample
        if not Path(soundfont).is_file():
            raise DatasetError(f"{soundfont}: SoundFont not found")
        self.synth = fluidsynth.Synth(gain=1.0, samplerate=float(self.render_rate),
                                      **{"synth.reverb.active": 0, "synth.chorus.active": 0})
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid < 0:
            raise DatasetError(f"{soundfont}: FluidSynth could not load it")
        # pyfluidsynth only wraps the int16 writer, which adds dither noise (no exact silence) and clips.
        self._write_float = fluidsynth.cfunc(
            "fluid_synth_write_float", ctypes.c_int, ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1),
            ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
            ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1))
        self._spec: InstrumentSpec | None = None

    def close(self) -> None:
        self.synth.delete()

    def __enter__(self) -> "FluidRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _channel(self, spec: InstrumentSpec) -> int:
        chan = self.MELODIC_CHANNEL if spec.tonal else self.DRUM_CHANNEL
        if spec != self._spec:
            if self.synth.program_select(chan, self.sfid, spec.bank, spec.program) != 0:
                raise DatasetError(f"SoundFont has no preset bank {spec.bank} program {spec.program} ({spec.name})")
            self._spec = spec
        return chan

    def _render(self, n: int) -> np.ndarray:
        """Next ``n`` (multiple of 64) samples at the render rate, mono float32 (mean of L and R)."""
        buf = np.zeros((n, 2), dtype=np.float32)
        if n:
            ptr = buf.ctypes.data
            if self._write_float is None:   # very old libfluidsynth: int16 path (dithered)
                buf[:] = self.synth.get_samples(n).reshape(n, 2) / 32768.0
            elif self._write_float(self.synth.synth, n, ptr, 0, 2, ptr, 1, 2) != 0:
                raise RuntimeError("fluid_synth_write_float failed")
        return buf.mean(axis=1, dtype=np.float32)

    def render(self, spec: InstrumentSpec, key: int, velocity: int, timing: NoteTiming) -> np.ndarray:
        """One note at the render rate (not resampled, synth gain 1): key down at ``timing.onset``, up at ``release``."""
        k = self.oversample
        chan = self._channel(spec)
        self.synth.all_sounds_off(chan)           # cut the previous note's tail
        n_total = -(-timing.n_samples * k // FLUID_BLOCK) * FLUID_BLOCK
        parts = [self._render(timing.onset * k)]
        self.synth.noteon(chan, int(key), int(velocity))
        parts.append(self._render((timing.release - timing.onset) * k))
        self.synth.noteoff(chan, int(key))
        parts.append(self._render(n_total - timing.release * k))
        return np.concatenate(parts)

    def to_output_rate(self, audio: np.ndarray, n_samples: int) -> np.ndarray:
        """Render-rate audio -> ``n_samples`` at the output rate (soxr VHQ)."""
        if self.oversample > 1:
            import soxr
            audio = soxr.resample(audio, self.render_rate, self.sample_rate, quality="VHQ")
        out = np.zeros(n_samples, dtype=np.float32)
        m = min(n_samples, audio.shape[0])
        out[:m] = audio[:m]
        return out


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else float("-inf")


@dataclass
class BuildSummary:
    """What :func:`build_dataset` wrote. Peaks in dBFS, gains in dB, times in seconds."""

    n_notes: int = 0
    n_samples: int = 0
    n_zero: int = 0
    sample_rate: int = 16000
    seconds: float = 0.0
    render_rate: int = 0
    gain_db: dict[str, float] = field(default_factory=dict)
    peak_db: dict[str, tuple[float, float, float]] = field(default_factory=dict)   # min, median, max over notes
    clipped_guard: list[str] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return self.n_samples / self.sample_rate / 60.0

    @property
    def silence_fraction(self) -> float:
        return self.n_zero / max(1, self.n_samples)

    def report(self) -> str:
        lines = [f"{self.n_notes} notes, {self.minutes:.1f} min of audio at {self.sample_rate} Hz "
                 f"(rendered at {self.render_rate} Hz) in {self.seconds:.1f} s "
                 f"({1000 * self.seconds / max(1, self.n_notes):.1f} ms/note); "
                 f"exact digital silence: {100 * self.silence_fraction:.1f} % of samples"]
        for name, (lo, med, hi) in self.peak_db.items():
            lines.append(f"  {name:<14} gain {self.gain_db[name]:+6.1f} dB   note peaks {lo:6.1f} / {med:6.1f} / "
                         f"{hi:6.1f} dBFS (min / median / max)")
        if self.clipped_guard:
            lines.append(f"  gain lowered to avoid clipping: {', '.join(self.clipped_guard)}")
        return "\n".join(lines)


def _calibration_gain(renderer: FluidRenderer, spec: InstrumentSpec, timing: NoteTiming, peak_db: float) -> float:
    """Fixed linear gain putting the loudest velocity-127 note of the default key range at ``peak_db``."""
    keys = DEFAULT_PITCHES if spec.tonal else DEFAULT_DRUM_KEYS
    peak = max(float(np.abs(renderer.render(spec, k, 127, timing)).max()) for k in keys)
    if peak <= 0:
        raise DatasetError(f"instrument {spec.name} (bank {spec.bank} program {spec.program}) renders silence")
    return 10.0 ** (peak_db / 20.0) / peak


def build_dataset(out_dir: str | Path, *, instruments: Sequence[str | InstrumentSpec] = DEFAULT_INSTRUMENTS,
                  pitches: Iterable[int] = DEFAULT_PITCHES, drum_keys: Iterable[int] = DEFAULT_DRUM_KEYS,
                  velocities: Iterable[int] = DEFAULT_VELOCITIES, sample_rate: int = 16000, seconds: float = 2.0,
                  hold: float = 1.5, onset: float = 0.02, soundfont: str | Path = DEFAULT_SOUNDFONT,
                  oversample: int = 3, peak_db: float = -1.0, progress: bool = True) -> BuildSummary:
    """Render every (instrument, pitch, velocity) note from ``soundfont`` into ``out_dir``.

    Each clip is ``seconds`` long: key down at ``onset`` s, key up ``hold`` s
    later (both rounded to 64-sample blocks), release tail kept. Tonal
    instruments play ``pitches``, percussion kits ``drum_keys``. Each
    instrument gets one fixed gain (calibrated so its loudest velocity-127 note
    over the default key range peaks at ``peak_db`` dBFS; lowered if a chosen
    note would otherwise exceed it), so velocity and pitch dynamics are kept.
    Deterministic: same arguments, same bytes.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    specs = [s if isinstance(s, InstrumentSpec) else parse_instrument(s) for s in instruments]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate instrument names in {names}")
    pitches, drum_keys, velocities = sorted(set(pitches)), sorted(set(drum_keys)), sorted(set(velocities))
    if not all(1 <= v <= 127 for v in velocities) or not velocities:
        raise ValueError(f"velocities must be in 1..127, got {velocities}")
    timing = NoteTiming.from_seconds(sample_rate, onset, hold, seconds)
    out = Path(out_dir)
    summary = BuildSummary(sample_rate=int(sample_rate))
    records: list[dict[str, Any]] = []
    n_total = sum(len(pitches if s.tonal else drum_keys) * len(velocities) for s in specs)
    target = 10.0 ** (peak_db / 20.0)
    with FluidRenderer(soundfont, sample_rate, oversample) as renderer, \
            tqdm(total=n_total, desc="render", unit="note", disable=not progress) as bar:
        summary.render_rate = renderer.render_rate
        out.mkdir(parents=True, exist_ok=True)
        for iid, spec in enumerate(specs):
            bar.set_postfix_str(spec.name)
            gain = _calibration_gain(renderer, spec, timing, peak_db)
            batch = []
            for key in (pitches if spec.tonal else drum_keys):
                for vel in velocities:
                    audio = renderer.to_output_rate(renderer.render(spec, key, vel, timing), timing.n_samples)
                    batch.append((key, vel, audio))
                    bar.update(1)
            loudest = max(float(np.abs(a).max()) for _, _, a in batch) * gain
            if loudest > target:
                gain *= target / loudest
                summary.clipped_guard.append(spec.name)
            peaks = []
            for key, vel, audio in batch:
                pcm = _to_pcm16(audio * gain)
                name = f"audio/{spec.name}/p{key:03d}_v{vel:03d}.wav"
                _write_wav(out / name, pcm, sample_rate)
                records.append(_note_record(name, spec.name, iid, key, vel, timing.onset, timing.release,
                                            timing.n_samples, spec.tonal))
                peaks.append(_db(float(np.abs(pcm.astype(np.int32)).max()) / 32768.0))
                summary.n_samples += pcm.size
                summary.n_zero += int(np.count_nonzero(pcm == 0))
            summary.gain_db[spec.name] = round(_db(gain), 2)
            summary.peak_db[spec.name] = (min(peaks), float(np.median(peaks)), max(peaks))
    summary.n_notes = len(records)
    extra = {"render": {"soundfont": Path(soundfont).name, "render_rate": summary.render_rate,
                        "presets": {s.name: [s.bank, s.program] for s in specs}, "gain_db": summary.gain_db,
                        "onset_s": onset, "hold_s": hold, "seconds": seconds, "peak_db": peak_db}}
    _write_index(out, sample_rate, names, Path(soundfont).name, records, extra)
    summary.seconds = time.perf_counter() - t_start
    return summary


def dataset_stats(ds: Dataset) -> str:
    """One-line summary of a loaded dataset: notes, minutes, exact-silence fraction, peak."""
    n = sum(x.n_samples for x in ds.notes)
    zeros = sum(int(np.count_nonzero(x.audio == 0)) for x in ds.notes)
    peak = max(float(np.abs(x.audio).max(initial=0.0)) for x in ds.notes)
    return (f"{len(ds.notes)} notes, {len(ds.instruments)} instruments ({', '.join(ds.instruments)}), "
            f"{n / ds.sample_rate / 60:.1f} min at {ds.sample_rate} Hz; exact digital silence "
            f"{100 * zeros / max(1, n):.1f} % of samples; peak {_db(peak):.1f} dBFS")


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.dataset", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render single notes from a GM SoundFont with FluidSynth")
    b.add_argument("out_dir")
    b.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    b.add_argument("--instruments", default=",".join(DEFAULT_INSTRUMENTS),
                   help=f"comma list of {', '.join(GM_INSTRUMENTS)} or NAME=PROGRAM / NAME=BANK:PROGRAM "
                        f"(default {','.join(DEFAULT_INSTRUMENTS)})")
    b.add_argument("--pitches", default="36-84", help="MIDI keys for tonal instruments, e.g. 36-84 or 48,60,72")
    b.add_argument("--drum-keys", default="35-81", help="MIDI keys for percussion kits (GM map 35-81)")
    b.add_argument("--velocities", default=",".join(map(str, DEFAULT_VELOCITIES)), help="MIDI velocities")
    b.add_argument("--seconds", type=float, default=2.0, help="clip length in s (default 2.0)")
    b.add_argument("--hold", type=float, default=1.5, help="key held for this many s (default 1.5)")
    b.add_argument("--onset", type=float, default=0.02, help="key down at this time in s (default 0.02)")
    b.add_argument("--soundfont", default=DEFAULT_SOUNDFONT)
    b.add_argument("--oversample", type=int, default=3, help="render at this multiple of the rate (default 3)")
    b.add_argument("--peak-db", type=float, default=-1.0, help="calibrated peak of each instrument, dBFS")
    i = sub.add_parser("import", help="convert a folder of WAV/FLAC notes (sub-folder = label) to the layout")
    i.add_argument("src_dir")
    i.add_argument("out_dir")
    i.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    i.add_argument("--pitch-pattern", default=DEFAULT_PITCH_PATTERN, help="regex; group 1 = MIDI pitch in file stem")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            summary = build_dataset(
                a.out_dir, instruments=[s for s in a.instruments.split(",") if s.strip()],
                pitches=parse_int_list(a.pitches), drum_keys=parse_int_list(a.drum_keys),
                velocities=parse_int_list(a.velocities, 1, 127), sample_rate=a.sample_rate, seconds=a.seconds,
                hold=a.hold, onset=a.onset, soundfont=a.soundfont, oversample=a.oversample, peak_db=a.peak_db)
            print(summary.report())
        else:
            ds = import_folder(a.src_dir, a.out_dir, a.sample_rate, a.pitch_pattern)
            print(dataset_stats(ds))
        print(f"wrote {Path(a.out_dir) / 'dataset.json'}")
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
