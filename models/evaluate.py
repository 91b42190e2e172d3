"""Quality evaluator: generate notes through the real engine and measure pitch, timbre and stability.

    python -m models.evaluate [--model PATH] [--data DIR] [--json] [--quick] [--png PATH] [--engine NAME]
                              [--seed N] [--temperature T] [--period-noise RHO] [--log FILE]

- pitch: held 2 s notes on a grid of (tonal instrument, MIDI pitch), generated
  with the preset's re-priming mode as the render command plays them (1024-sample
  blocks, the watchdog's recoveries between blocks), and with re-priming off as the
  network alone (one block: no watchdog, no seed bank at all); f0 by YIN on the
  sounding part; |cents| vs the MIDI pitch (unvoiced notes count as 1200 cents);
  per note (signed cents), per instrument, and the count of octave errors;
- pitch bend: notes on 3 pitches per tonal instrument whose pitch wheel moves +1, -1 or +0.5
  semitone 0.5 s after key-down; the f0 over 1-2 s against the same note unbent (same seed), in cents
  against the intended bend (does the network follow its f0 input, or its interpolated embedding?);
- level against time (with a dataset): each pitch-grid note's dB envelope against
  its real note's over the 1.5 s key-down, as a shape error with the output gain
  removed, per instrument, with median curves (does a held note decay like the real
  one, or hold, or die away?);
- noise floor (``hnr``): the harmonic-to-noise ratio (dB; Boersma's autocorrelation method at the played f0,
  models.audio_features.harmonic_to_noise_db) of each pitch-grid note over its sounding part, median over the
  notes and per instrument, against the real notes' (velocity nearest 90; also mu-law coded: the codec's own floor);
- timbre: a 1-nearest-neighbour classifier on log-mel statistics of the real
  notes, mu-law coded as the model learns them, names the instrument of each
  generated note (with a confusion table; the figure against the clean real notes
  too, which also counts the codec's noise floor against the network); and a noise-robust
  figure: the same classifier with each reference note also at white noise 30, 25, 20 and 15 dB
  below it, which names the real notes (another velocity) with such noise too, so it tells
  a wrong spectral shape from a broadband noise floor; and both classifiers on the real notes of
  another velocity re-drawn one sample at a time from the network's distribution given the real
  samples before it (teacher-forced, the preset's temperature: ``timbre.resynthesis``), which
  splits what the per-sample noise costs from what the free-running trajectory's drift costs; and the
  plain classifier's figure with each half of its descriptor alone (``timbre.by_half``: the spectrum's
  mean shape, or its variation over time);
- stability: 60 s per instrument of 1.5 s held notes with 0.5 s gaps; fraction
  of 100 ms windows while a note is held that are silent (< -50 dBFS at the network's
  own scale, as the real notes are: before the output stage's gain; ``_at_output``: after it) or
  noise-like (spectral flatness > 0.4; white noise ~0.56), NaN count; silence
  also counted only over the windows where the real note (dataset) still sounds,
  since a drum or a plucked string decays to silence within a held note;
- teacher-forced NLL (nats/sample) of real notes through the same engine: deterministic, the
  sensitive check of a reduced precision (the free-running figures move by several points
  from one sampler seed to the next; ``--seed`` shows how much);
- teacher-forced sampling spread (dB below the real notes' power, per instrument, at the
  temperature): the white noise every drawn sample carries even when fed the real note;
- a PNG sheet of spectrograms, real vs generated.

``--engine`` (default: the preset's) compares precisions: a reduced precision
(e.g. ``numba-int8dot`` vs ``numba``) should keep the pitch and timbre figures
within 2 points (one note of the 54-55 is ~1.8 points), but on a model that is not
pitched yet those figures move by up to ~7 points between sampler seeds, so the
teacher-forced NLL is the sharper test. ``auto`` is resolved once. ``lpc-pulse`` plays the model file's
envelope bank with a pulse train plus noise and no network (realtime/engine/pulse_engine.py: the source-filter
ceiling); it has no teacher-forced figures (NLL, spread, resynthesis: None). ``--temperature``
replaces the preset's sampling temperature for every generated note (NLL does not depend on it);
``--period-noise`` the preset's sampler-noise correlation one f0 period back (0: independent;
realtime/kernel/period_noise.py), to measure the network with and without it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.audio_features import (
    NearestNeighbour,
    harmonic_to_noise_db,
    logmel_stats,
    mel_points_hz,
    window_db,
    window_flatness,
    with_white_noise,
)
from models.dataset import midi_to_hz
from realtime.control.presets import ENGINES, REFERENCE_ENGINES

PITCH_GRID = (40, 45, 50, 55, 60, 65, 70, 75, 80)
#: a 100 ms window below this RMS level (dBFS) is silent
SILENT_DB = -50.0
ENVELOPE_S = 1.5           # the dataset holds every note 1.5 s: compare levels over that key-down time
ENVELOPE_FLOOR_DB = -60.0
QUICK_GRID = (48, 60, 72)
PLAY_BLOCK = 1024            # the preset's notes play in render's blocks (samples), the watchdog between them
STAB_VELOCITY = 90           # the stability run's notes (MIDI velocity)
REF_VELOCITY = 80            # the timbre classifiers' reference notes (dataset velocity)
BEND_PITCHES = (60, 70, 80)  # the pitch-wheel bends on these notes (where the model holds pitch best)
BEND_AT_S = 0.5             # the wheel moves this long after key-down; the move is measured over 1.0-2.0 s
BEND_SEMITONES = (1.0, -1.0, 0.5)  # a whole step to the neighbouring notes, and halfway (between two embeddings)


def note_session(preset, model, instrument: int, seed: int, reprime: str | None = None):
    """A Session (engine + controller + output stage) with ``instrument`` selected, this sampler seed and
    (optionally) re-priming mode, and no preset program map: where the evaluator's notes are played."""
    from realtime.offline.render import Session

    p = replace(preset, model=replace(preset.model, seed=seed, **({"reprime": reprime} if reprime else {})),
                midi=replace(preset.midi, programs={}))
    s = Session.open(p, model)
    s.controller.program_change(instrument)
    return s


def generate_note(preset, model, instrument: int, pitch: int, seconds: float, velocity: int = 90,
                  reprime: str | None = None, seed: int = 0, block: int | None = None) -> np.ndarray:
    """One held note through Session (engine + controller + output stage), as a musician would play it:
    in ``block``-sample blocks (the watchdog recovers between blocks, as in render and live), or in one
    block (None: the watchdog only looks once the note is done, so it never steps in)."""
    s = note_session(preset, model, instrument, seed, reprime)
    n = int(seconds * model.config.sample_rate)
    if block is not None:
        from realtime.offline.render import render_timeline

        return render_timeline(s, [(0, bytes([0x90, pitch, velocity]))], n, block)
    s.apply_midi(bytes([0x90, pitch, velocity]))
    return s.generate(np.zeros(n, np.float32))


def bent_note(preset, model, instrument: int, pitch: int, semitones: float, seconds: float = 2.0,
              at_s: float = BEND_AT_S, seed: int = 0) -> np.ndarray:
    """A held note (velocity 90) whose pitch wheel moves by ``semitones`` ``at_s`` seconds after key-down
    (0: no bend, the same samples until then); MIDI events at exact samples through Session."""
    from realtime.offline.render import render_timeline

    s = note_session(preset, model, instrument, seed)
    tl = [(0, bytes([0x90, pitch, 90]))]
    if semitones:
        v = int(np.clip(round(8192 + semitones / preset.sound.bend_range * 8192), 0, 16383))
        tl.append((int(at_s * model.config.sample_rate), bytes([0xE0, v & 0x7F, v >> 7])))
    return render_timeline(s, tl, int(seconds * model.config.sample_rate))


def bend_figures(moves: list[tuple[float, float | None]]) -> dict:
    """(intended bend in cents, measured move in cents or None when either note is unvoiced) ->
    {n, voiced, median |error| cents, fraction within 25 cents of the intended bend, median move per bend}."""
    ok = [(want, got) for want, got in moves if got is not None]
    err = np.asarray([abs(got - want) for want, got in ok])
    per = {f"{want:+.0f}": round(float(np.median([g for w, g in ok if w == want])), 1)
           for want in sorted({w for w, _ in ok})}
    return {"n": len(moves), "voiced": len(ok),
            "median_abs_error_cents": round(float(np.median(err)), 1) if ok else None,
            "within_25_cents": round(float(np.mean(err <= 25)), 4) if ok else 0.0,
            "median_move_cents": per}


def signed_cents(f0: float, pitch: int) -> float | None:
    """Cents from a MIDI pitch to an f0 (Hz), positive when sharp; None when unvoiced (NaN or <= 0)."""
    if not np.isfinite(f0) or f0 <= 0:
        return None
    return float(1200.0 * np.log2(f0 / midi_to_hz(pitch)))


def cents_error(f0: float, pitch: int) -> float:
    """|cents| between an f0 (Hz) and a MIDI pitch; 1200 when unvoiced (NaN)."""
    c = signed_cents(f0, pitch)
    return 1200.0 if c is None else abs(c)


def pitch_figures(errors: list[float]) -> dict:
    e = np.asarray(errors)
    return {"n": int(e.size), "median_abs_cents": round(float(np.median(e)), 2),
            "within_50_cents": round(float(np.mean(e <= 50)), 4), "unvoiced": int(np.sum(e >= 1200))}


def pitch_detail(rows: list[tuple[str, int, float]]) -> dict:
    """Where the pitch errors lie. ``rows``: (instrument name, MIDI pitch, estimated f0 in Hz, NaN when
    unvoiced). Returns the notes with signed cents (None when unvoiced), the count of octave errors
    (voiced, more than 50 cents off, but within 50 cents of one or two octaves off) and, per instrument,
    the fraction within 50 cents and the unvoiced count."""
    notes, per = [], {}
    octave = 0
    for name, pitch, f0 in rows:
        c = signed_cents(f0, pitch)
        c = None if c is None else round(c, 1)
        notes.append({"instrument": name, "pitch": int(pitch), "f0_hz": None if c is None else round(float(f0), 2),
                      "cents": c})
        if c is not None and abs(c) > 50 and min(abs(c - 1200 * k) for k in (-2, -1, 1, 2)) <= 50:
            octave += 1
        d = per.setdefault(name, {"n": 0, "within_50": 0, "unvoiced": 0})
        d["n"] += 1
        d["within_50"] += int(c is not None and abs(c) <= 50)
        d["unvoiced"] += int(c is None)
    return {"octave_errors": octave,
            "per_instrument": {k: {"within_50_cents": round(v["within_50"] / v["n"], 4), "unvoiced": v["unvoiced"]}
                               for k, v in per.items()},
            "notes": notes}


def confusion(true: list[str], predicted: list[str]) -> dict[str, dict[str, int]]:
    """How often each conditioning instrument (outer key) was recognised as each instrument (inner key)."""
    out: dict[str, dict[str, int]] = {}
    for t, p in zip(true, predicted):
        out.setdefault(t, {})
        out[t][p] = out[t].get(p, 0) + 1
    return out


def half_accuracies(x_ref: np.ndarray, y_ref: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Which half of the timbre descriptor (:func:`logmel_stats`: the level-free log-mel spectrum's mean over
    time, then its standard deviation over time) names the notes ``x`` (rows, instruments ``y``): the
    accuracy of a 1-NN fitted on ``x_ref`` / ``y_ref`` with each half alone. The shape of the spectrum
    against its course over time. Pure."""
    k = x_ref.shape[1] // 2
    return {name: round(float(np.mean(NearestNeighbour().fit(x_ref[:, cut], y_ref).predict(x[:, cut]) == y)), 4)
            for name, cut in (("mean", slice(0, k)), ("std", slice(k, None)))}


def without_notes(res: dict) -> dict:
    """An evaluation result without its per-note lists and level curves: the figures alone (for the history
    and the card)."""
    return {k: ({kk: vv for kk, vv in v.items() if kk not in ("notes", "curves")} if isinstance(v, dict) else v)
            for k, v in res.items()}


def level_envelope(audio: np.ndarray, sr: int, seconds: float = ENVELOPE_S, window_s: float = 0.1) -> np.ndarray:
    """Level (dBFS) of each ``window_s`` window of the first ``seconds``, floored at ENVELOPE_FLOOR_DB
    (digital silence and a collapse alike), silence-padded when the audio is shorter."""
    n = int(round(seconds * sr))
    a = np.zeros(n, np.float32)
    a[:min(n, len(audio))] = audio[:n]
    return np.maximum(window_db(a, sr, window_s), ENVELOPE_FLOOR_DB)


def envelope_shape_error(generated_db: np.ndarray, real_db: np.ndarray) -> float:
    """Mean |difference| (dB) of two level envelopes, each less its own mean, over the windows where the real
    note sounds (>= SILENT_DB): how far the generated note's rise and decay are from the real note's,
    whatever the output gain. NaN when the real note never sounds."""
    sounds = real_db >= SILENT_DB
    if not sounds.any():
        return float("nan")
    g, r = generated_db[sounds], real_db[sounds]
    return float(np.mean(np.abs((g - g.mean()) - (r - r.mean()))))


def envelope_figures(rows: list[tuple[str, np.ndarray, np.ndarray]], window_s: float = 0.1) -> dict:
    """Level against time. ``rows``: (instrument name, generated envelope, real envelope), dB per window.
    Returns the median shape error (dB) over all notes and per instrument, and each instrument's median
    generated and real envelopes (``curves``)."""
    errs: dict[str, list[float]] = {}
    gen: dict[str, list[np.ndarray]] = {}
    real: dict[str, list[np.ndarray]] = {}
    for name, g, r in rows:
        errs.setdefault(name, []).append(envelope_shape_error(g, r))
        gen.setdefault(name, []).append(g)
        real.setdefault(name, []).append(r)
    every = [e for v in errs.values() for e in v if np.isfinite(e)]
    return {"window_s": window_s,
            "shape_error_db": round(float(np.median(every)), 2) if every else None,
            "per_instrument": {k: round(float(np.nanmedian(v)), 2) if np.isfinite(v).any() else None
                               for k, v in errs.items()},
            "curves": {k: {"generated_db": np.round(np.median(gen[k], axis=0), 1).tolist(),
                           "real_db": np.round(np.median(real[k], axis=0), 1).tolist()} for k in errs}}


def note_hnr_db(audio: np.ndarray, pitch: int, sr: int) -> float:
    """A note's harmonic-to-noise ratio (dB; models.audio_features.harmonic_to_noise_db at the f0 of MIDI
    ``pitch``) over the sounding part of a held note (:func:`held_part`, from key-down)."""
    return harmonic_to_noise_db(np.asarray(audio)[held_part(sr)], sr, midi_to_hz(pitch))


def hnr_figures(generated: dict, data, names: list[str], sr: int) -> dict:
    """The noise floor against the real notes': each generated note's harmonic-to-noise ratio (:func:`note_hnr_db`;
    ``generated[(instrument, pitch)]``, from key-down) and, with a dataset, the real note's of that instrument and
    pitch (the velocity nearest 90, from its key-down), clean and 8-bit mu-law coded (the floor the codec alone
    sets). Medians (dB) over the notes (an unvoiced note, NaN, counts as the lowest) and per instrument; real
    minus generated (``gap_db``)."""
    from realtime.model import mulaw

    def med(v: list[float]) -> float | None:  # None when most notes are unvoiced
        m = float(np.median([x if np.isfinite(x) else -np.inf for x in v])) if v else np.nan
        return round(m, 2) if np.isfinite(m) else None

    gen: dict[str, list[float]] = {}
    real: dict[str, list[float]] = {}
    coded: dict[str, list[float]] = {}
    notes = []
    for (i, p), a in generated.items():
        g = note_hnr_db(a, p, sr)
        gen.setdefault(names[i], []).append(g)
        row = {"instrument": names[i], "pitch": int(p), "generated_db": round(g, 2) if np.isfinite(g) else None}
        n = real_note(data, i, p) if data is not None else None
        if n is not None:
            r, c = (note_hnr_db(x[n.onset:], p, sr) for x in (n.audio, mulaw.roundtrip(n.audio)))
            real.setdefault(names[i], []).append(r)
            coded.setdefault(names[i], []).append(c)
            row |= {"real_db": round(r, 2) if np.isfinite(r) else None}
        notes.append(row)
    every = lambda d: [x for v in d.values() for x in v]  # noqa: E731
    out = {"generated_median_db": med(every(gen)), "real_median_db": med(every(real)),
           "real_mulaw_median_db": med(every(coded)),
           "per_instrument": {k: {"generated_db": med(v), "real_db": med(real.get(k, []))} for k, v in gen.items()},
           "notes": notes}
    if out["generated_median_db"] is not None and out["real_median_db"] is not None:
        out["gap_db"] = round(out["real_median_db"] - out["generated_median_db"], 2)
    return out


NOISE_SNRS_DB = (30.0, 25.0, 20.0, 15.0)  # the noise-robust timbre reference: each real note also this far over noise
NOISY_TEST_SNR_DB = 25.0  # the real notes of other velocities, this far over noise, test both classifiers
PROFILE_BANDS_HZ = (0.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)  # the spectral profile's bands (edges, Hz)
DEFAULT_DATA = "data/gm"  # where `make data` renders the training set


def tonal_instruments(model, data) -> list[int]:
    names = model.config.conditioning.instruments
    if data is not None:
        tonal = {n.instrument_id for n in data.notes if n.tonal}
        return [i for i in range(len(names)) if i in tonal]
    return [i for i, n in enumerate(names) if n != "drums"]


def real_note(data, instrument: int, pitch: int, velocity: int = 90, exclude: int | None = None):
    """The real note of this instrument and pitch with the velocity nearest ``velocity`` (not of velocity
    ``exclude``); None without one."""
    notes = [n for n in data.notes if n.instrument_id == instrument and n.pitch == pitch
             and n.velocity != exclude] if data is not None else []
    return min(notes, key=lambda n: abs(n.velocity - velocity)) if notes else None


def real_sounding(data, instrument: int, pitch: int, sr: int, seconds: float, velocity: int = 90,
                  window_s: float = 0.1) -> np.ndarray | None:
    """Per ``window_s`` window of the first ``seconds`` after key-down: does the real note (this instrument and
    pitch, the velocity nearest ``velocity``) sound (>= -50 dBFS)? None without such a note in ``data``."""
    n = real_note(data, instrument, pitch, velocity)
    if n is None:
        return None
    return window_db(n.audio[n.onset:n.onset + int(seconds * sr)], sr, window_s) >= SILENT_DB


def note_power(audio: np.ndarray, onset: int, sr: int) -> float:
    """Mean square of a note's first second after ``onset`` (samples): the level its added noise is set against."""
    x = np.asarray(audio[onset:onset + sr], np.float64)
    return float(np.mean(x ** 2)) if len(x) else 0.0


def noisy_logmel(notes, sr: int, snrs_db, seed: int, clean_too: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel statistics (rows) and instrument ids of ``notes`` (dataset notes; their first 2 s), mu-law
    coded as the model hears them: each note clean (``clean_too``) and with white noise at each of
    ``snrs_db`` below its sounding power. Deterministic for a ``seed``."""
    from realtime.model import mulaw

    rng = np.random.default_rng(seed)
    x, y = [], []
    for n in notes:
        a = np.asarray(n.audio[: int(2.0 * sr)], np.float64)
        p = note_power(n.audio, n.onset, sr)
        versions = ([mulaw.roundtrip(a)] if clean_too else []) + \
            [mulaw.roundtrip(with_white_noise(a, s, p, rng)) for s in snrs_db]
        x += [logmel_stats(v, sr) for v in versions]
        y += [n.instrument_id] * len(versions)
    return np.stack(x), np.asarray(y)


def noise_robust_classifier(ref_notes, sr: int) -> NearestNeighbour:
    """The 1-NN whose references are ``ref_notes`` (dataset notes) clean and at white noise
    ``NOISE_SNRS_DB`` below them (:func:`noisy_logmel`, fixed seed)."""
    return NearestNeighbour().fit(*noisy_logmel(ref_notes, sr, NOISE_SNRS_DB, seed=0))


def noise_robust_timbre(ref_notes, other_notes, xg: np.ndarray, yg: np.ndarray, names: list[str], sr: int,
                        plain: NearestNeighbour, robust: NearestNeighbour | None = None) -> dict:
    """Is it the broadband noise floor the timbre classifier hears, or the spectral shape? A classifier
    whose references are ``ref_notes`` clean and over noise (``robust``, or :func:`noise_robust_classifier`)
    names the generated notes (features ``xg``, instrument ids ``yg``); ``other_notes`` (unseen
    velocities) at ``NOISY_TEST_SNR_DB`` show what noise does to it and to the ``plain`` classifier."""
    robust = robust or noise_robust_classifier(ref_notes, sr)
    pred = robust.predict(xg)
    out = {"accuracy_generated_noise_robust": round(float(np.mean(pred == yg)), 4),
           "confusion_noise_robust": confusion([names[i] for i in yg], [names[i] for i in pred])}
    if other_notes:
        xo, yo = noisy_logmel(other_notes, sr, (NOISY_TEST_SNR_DB,), seed=1, clean_too=False)
        out["real_over_noise"] = {"snr_db": NOISY_TEST_SNR_DB, "n": int(len(yo)),
                                  "accuracy": round(float(np.mean(plain.predict(xo) == yo)), 4),
                                  "accuracy_noise_robust": round(float(np.mean(robust.predict(xo) == yo)), 4)}
    return out


def resynthesis_timbre(model, data, engine: str, keys, temperature: float, seed: int,
                       classifiers: dict[str, NearestNeighbour], seconds: float = 2.0) -> dict | None:
    """The timbre figure without exposure bias: for each (instrument, pitch) of ``keys``, the real note of
    the velocity nearest ``STAB_VELOCITY`` that is not a classifier reference (``REF_VELOCITY``),
    :func:`resynthesized` at ``temperature`` (uniforms from ``seed``; independent, no period noise), named
    by each of ``classifiers``: {"n", "temperature", "notes": {instrument: count}, "accuracy_<name>",
    "right_<name>": {instrument: count}}. What this misses, the per-sample noise alone costs; what the
    free-running figure loses beyond it, the trajectory's drift. None when ``data`` has no such notes."""
    from realtime.offline.render import make_engine

    names = model.config.conditioning.instruments
    sr = model.config.sample_rate
    notes = [n for i, p in keys if (n := real_note(data, i, p, exclude=REF_VELOCITY)) is not None]
    if not notes:
        return None
    e = make_engine(engine, model)
    rng = np.random.default_rng(seed)
    x = np.stack([logmel_stats(resynthesized(e, n, temperature, rng, seconds, sr), sr) for n in notes])
    y = np.asarray([n.instrument_id for n in notes])
    out: dict = {"n": len(notes), "temperature": temperature,
                 "notes": {names[i]: int(np.sum(y == i)) for i in sorted(set(y.tolist()))}}
    for label, clf in classifiers.items():
        pred = clf.predict(x)
        out[f"accuracy_{label}"] = round(float(np.mean(pred == y)), 4)
        out[f"right_{label}"] = {names[i]: int(np.sum((pred == i) & (y == i))) for i in sorted(set(y.tolist()))}
    return out


def held_part(sr: int) -> slice:
    """The sounding part of a 2 s held note scored for pitch and spectral shape: 0.15-1.9 s after key-down (samples)."""
    return slice(int(0.15 * sr), int(1.9 * sr))


def profile_excess_db(pairs, sr: int, edges_hz=PROFILE_BANDS_HZ) -> list[float]:
    """How much brighter or duller generated notes are than real ones: the mean over ``pairs`` of
    (generated, real) audio of the difference of their level-normalised log-mel profiles (dB re each
    frame's loudest band, over the loud frames: the mean half of :func:`logmel_stats`), averaged over
    the mel bands whose centres fall in each band of ``edges_hz``. Positive: more energy there. Pure."""
    n_mels = 40
    centres = mel_points_hz(sr, n_mels)[1:-1]
    diff = np.mean([logmel_stats(g, sr, n_mels)[:n_mels] - logmel_stats(r, sr, n_mels)[:n_mels]
                    for g, r in pairs], axis=0)
    return [round(float(diff[(centres >= lo) & (centres < hi)].mean()), 1)
            for lo, hi in zip(edges_hz[:-1], edges_hz[1:])]


def spectral_profile(generated: dict, data, names: list[str], sr: int) -> dict:
    """:func:`profile_excess_db` per instrument: each generated note (``generated[(instrument, pitch)]``,
    from key-down, velocity 90) against the real note of that instrument and pitch with the velocity
    nearest 90, mu-law coded as the model learns it, both over the sounding part (:func:`held_part`)."""
    from realtime.model import mulaw

    cut = held_part(sr)
    by: dict[str, list] = {}
    for (i, p), a in generated.items():
        n = real_note(data, i, p)
        if n is not None:
            by.setdefault(names[i], []).append((a[cut], mulaw.roundtrip(n.audio[n.onset:][cut])))
    return {"bands_hz": list(PROFILE_BANDS_HZ),
            "per_instrument": {k: profile_excess_db(v, sr) for k, v in by.items()}}


def note_logits(e, note, seconds: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, logits (n, 256) float32): the first ``seconds`` after key-down of dataset ``note``
    (mu-law classes) run teacher-forced through engine ``e``, reset and conditioned on the note (no
    seed-bank priming). Deterministic."""
    from realtime.model import mulaw

    e.reset()
    e.set_conditioning(pitch=note.pitch, instrument=note.instrument_id, velocity=note.velocity)
    e.set_note(gate=1.0, pitch=float(note.pitch))
    e.play_level(note.instrument_id, note.pitch, note.velocity)
    x = mulaw.encode(note.audio[note.onset:note.onset + int(seconds * sample_rate)])
    return x, e.teacher_force(np.concatenate(([mulaw.SILENCE], x[:-1])))


def teacher_forced_logits(model, data, engine: str, every: int = 15, seconds: float = 0.75):
    """Yield (note, classes, logits (n, 256) float64) for every ``every``-th note of ``data``
    (:func:`note_logits`). Deterministic."""
    from realtime.offline.render import make_engine

    e = make_engine(engine, model)  # one engine, reset per note: as good as a fresh one, without the packing
    for note in data.notes[::every]:
        x, logits = note_logits(e, note, seconds, model.config.sample_rate)
        yield note, x, logits.astype(np.float64)


def draw_classes(logits: np.ndarray, temperature: float, uniforms: np.ndarray) -> np.ndarray:
    """One class per row of ``logits`` (n, 256) float32, drawn by the engines' own sampler
    (realtime.kernel.generate.sample_from_logits: softmax(logits / temperature), inverse CDF at ``uniforms``;
    argmax at 0; -1 where a row is not finite). int64 (n,)."""
    from realtime.kernel.generate import POW2_NEG, sample_from_logits

    lg = np.ascontiguousarray(logits, np.float32)
    probs = np.empty(lg.shape[1], np.float32)
    return np.asarray([sample_from_logits(lg[t], np.float32(temperature), np.float32(uniforms[t]), probs, POW2_NEG)
                       for t in range(len(lg))], np.int64)


def resynthesized(e, note, temperature: float, rng: np.random.Generator, seconds: float,
                  sample_rate: int) -> np.ndarray:
    """Dataset ``note`` re-drawn one sample at a time: each sample drawn (:func:`draw_classes`, at
    ``temperature``) from the network's distribution given the *real* samples before it
    (:func:`note_logits`), so its errors never feed back. Decoded float32, from key-down. Set against
    the free-running notes, it splits what the per-sample noise costs from what the drifting trajectory
    costs."""
    from realtime.model import mulaw

    x, logits = note_logits(e, note, seconds, sample_rate)
    k = draw_classes(logits, temperature, rng.random(len(x)))
    return mulaw.decode(np.where(k < 0, mulaw.SILENCE, k))  # a non-finite row: silence


def sampling_spread(logits: np.ndarray, targets: np.ndarray, temperature: float) -> tuple[float, float]:
    """(signal power, mean sampling variance) of a teacher-forced run, both in linear amplitude squared:
    the mean square of the decoded ``targets`` and the mean variance of the decoded sample drawn from
    softmax(logits / temperature) (the engine's sampler; argmax at 0: no spread). Pure."""
    from realtime.model import mulaw

    amp = mulaw.decode(np.arange(logits.shape[1])).astype(np.float64)
    signal = float(np.mean(amp[targets] ** 2))
    if temperature <= 0:
        return signal, 0.0
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    mean = p @ amp
    return signal, float(np.mean(np.maximum(p @ amp ** 2 - mean ** 2, 0.0)))


def teacher_forced_figures(model, data, engine: str, temperature: float, every: int = 15,
                           seconds: float = 0.75) -> tuple[float | None, dict[str, float | None] | None]:
    """One teacher-forced pass (:func:`teacher_forced_logits`), two figures: the mean negative
    log-likelihood (nats/sample) and, per instrument, how far (dB) below the real notes' power the
    sampler's own spread at ``temperature`` lies (None per instrument at argmax: no spread).
    (None, None) without a dataset."""
    if data is None:
        return None, None
    names = model.config.conditioning.instruments
    total, count = 0.0, 0
    sums: dict[str, list[float]] = {}
    for note, x, logits in teacher_forced_logits(model, data, engine, every, seconds):
        top = logits.max(axis=1)
        lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        total += float((lse - logits[np.arange(len(x)), x]).sum())
        count += len(x)
        signal, spread = sampling_spread(logits, x, temperature)
        acc = sums.setdefault(names[note.instrument_id], [0.0, 0.0])
        acc[0] += signal * len(x)
        acc[1] += spread * len(x)
    spread_db = {k: float(round(10.0 * np.log10(sig / var), 2)) if var > 0 else None
                 for k, (sig, var) in sums.items()}
    return (total / count if count else None), spread_db


def teacher_forced_nll(model, data, engine: str, every: int = 15, seconds: float = 0.75) -> float | None:
    """Mean negative log-likelihood (nats/sample) of real notes (every ``every``-th note of ``data``, its
    first ``seconds`` after key-down) under ``engine``'s logits, teacher-forced: deterministic, so it
    shows a reduced precision's cost where the free-running figures, which differ by several points
    from one sampler seed to the next, cannot. None without a dataset."""
    return teacher_forced_figures(model, data, engine, 1.0, every, seconds)[0]


def teacher_forced_spread_db(model, data, engine: str, temperature: float, every: int = 15,
                             seconds: float = 0.75) -> dict[str, float | None] | None:
    """Per instrument: how far (dB) below the real notes' power the sampler's own spread lies when the
    network is fed the real note (teacher-forced, as :func:`teacher_forced_nll`). Every drawn sample
    carries that much white noise even before its errors feed back: the floor under the harmonics
    that the timbre classifier hears. None without a dataset."""
    return teacher_forced_figures(model, data, engine, temperature, every, seconds)[1]


def evaluate(model_path: str, data_dir: str | None, quick: bool = False, png: str | None = None,
             log=print, engine: str | None = None, seed: int = 0, temperature: float | None = None,
             period_noise: float | None = None, loop_lowpass: float | None = None,
             prob_floor: float | None = None) -> dict:
    """All the figures as one dict. ``seed`` seeds every generated note's sampler: two seeds give the
    figures' own noise, against which to judge a difference between engines. ``temperature`` replaces
    the preset's sampling temperature (to compare temperatures), ``period_noise`` its sampler-noise
    correlation one period back, ``loop_lowpass`` its low-pass inside the feedback loop, ``prob_floor`` its
    probability floor (LPCNet's: each class's probability lowered by it before the draw)."""
    from models.dataset import estimate_f0, load_dataset
    from realtime.control.presets import load_preset
    from realtime.kernel.loop_lowpass import check_amount
    from realtime.kernel.period_noise import check_rho
    from realtime.model.model_file import load_model
    from realtime.offline.render import resolve_engine

    t0 = time.time()
    model = load_model(model_path)
    sr = model.config.sample_rate
    preset = load_preset()
    if temperature is not None and not temperature >= 0:  # the preset's and the engine's bound
        raise ValueError(f"--temperature {temperature}: must be >= 0 (0 = argmax)")
    if period_noise is not None:
        period_noise = check_rho(period_noise)
    preset = replace(preset, model=replace(preset.model, seed=seed, temperature=(
        preset.model.temperature if temperature is None else float(temperature)), period_noise=(
        preset.model.period_noise if period_noise is None else period_noise), loop_lowpass=(
        preset.model.loop_lowpass if loop_lowpass is None else check_amount(loop_lowpass)), prob_floor=(
        preset.model.prob_floor if prob_floor is None else float(prob_floor))))
    if not 0.0 <= preset.model.prob_floor <= 0.01:
        raise ValueError(f"--prob-floor {preset.model.prob_floor}: must be within 0-0.01")
    # auto probed once here, not once per generated note
    engine = resolve_engine(engine or preset.model.engine, model, preset.model.compute, log)
    preset = replace(preset, model=replace(preset.model, engine=engine))
    network_less = engine in REFERENCE_ENGINES  # no network: nothing to teacher-force
    data = load_dataset(data_dir) if data_dir else None
    names = list(model.config.conditioning.instruments)
    tonal = tonal_instruments(model, data)
    grid = QUICK_GRID if quick else PITCH_GRID
    held = held_part(sr)
    res: dict = {"model": str(model_path), "engine": preset.model.engine, "preset_reprime": preset.model.reprime,
                 "seed": seed, "temperature": preset.model.temperature, "period_noise": preset.model.period_noise,
                 "loop_lowpass": preset.model.loop_lowpass, "prob_floor": preset.model.prob_floor}

    # pitch, with and without seed-bank priming
    generated: dict[tuple[int, int], np.ndarray] = {}
    modes = {"preset": preset.model.reprime, "no_seedbank": "off"}
    for label, mode in modes.items():
        rows = []
        for i in tonal:
            for p in grid:
                a = generate_note(preset, model, i, p, 2.0, reprime=mode, seed=seed,
                                  block=PLAY_BLOCK if label == "preset" else None)
                if label == "preset":
                    generated[(i, p)] = a
                rows.append((names[i], p, estimate_f0(a[held], sr)))
        figures = pitch_figures([cents_error(f0, p) for _, p, f0 in rows])
        log(f"pitch ({label}, reprime={mode}): {figures}")
        res[f"pitch_{label}"] = figures | pitch_detail(rows)
    # pitch bend: does the pitch wheel (+1, -1, +0.5 semitone: the f0 input, and for a pitch_interp model
    # the embedding) move the generated pitch by as much? Measured against the same note unbent (same seed)
    late = slice(int(1.0 * sr), int(2.0 * sr))
    moves = []
    for i in tonal:
        for p in BEND_PITCHES:
            f_ref = estimate_f0(bent_note(preset, model, i, p, 0.0, seed=seed)[late], sr)
            for semis in BEND_SEMITONES:
                f = estimate_f0(bent_note(preset, model, i, p, semis, seed=seed)[late], sr)
                voiced = f_ref > 0 and f > 0 and np.isfinite(f_ref) and np.isfinite(f)
                moves.append((100.0 * semis, float(1200.0 * np.log2(f / f_ref)) if voiced else None))
    res["bend"] = bend_figures(moves)
    log(f"bend: {res['bend']}")
    if data is not None:  # the estimator on the real notes, for reference
        real = [n for n in data.notes if n.tonal and n.pitch in grid and n.velocity == REF_VELOCITY]
        if real:  # (a user's dataset may have no velocity-80 notes)
            res["pitch_real_notes"] = pitch_figures([cents_error(estimate_f0(n.audio[held], sr), n.pitch) for n in real])
        # level against time: does a held note rise and decay like the real one (velocity 90, as generated)?
        rows = [(names[i], level_envelope(a, sr), level_envelope(r.audio[r.onset:], sr))
                for (i, p), a in generated.items() if (r := real_note(data, i, p)) is not None]
        if rows:
            res["envelope"] = envelope_figures(rows)
            log(f"envelope: {without_notes({'e': res['envelope']})['e']}")
    # the noise floor: harmonic-to-noise ratio of the generated notes against the real ones'
    res["hnr"] = hnr_figures(generated, data, names, sr)
    log(f"hnr: {without_notes({'h': res['hnr']})['h']}")

    # timbre: classifier fitted on the real notes as the model is trained to reproduce them, through
    # 8-bit mu-law (a classifier fitted on the clean float notes hears the codec's noise floor as timbre:
    # it recognises only about two thirds of the real notes themselves once they are mu-law coded); the
    # clean-reference figure is kept for the curve. Without a dataset: the seed bank (already mu-law).
    from realtime.model import mulaw

    ref_notes = [n for n in data.notes if n.velocity == REF_VELOCITY] if data is not None else []
    if data is not None:
        clean_ref = [(n.instrument_id, n.audio[: int(2.0 * sr)]) for n in ref_notes]
        ref = [(i, mulaw.roundtrip(a)) for i, a in clean_ref]
    else:
        sb = model.seedbank
        clean_ref = []
        ref = [(int(i), mulaw.decode(s)) for i, s in zip(sb.instrument, sb.snippets)] if sb is not None else []
    if ref:
        y = np.asarray([i for i, _ in ref])
        x_ref = np.stack([logmel_stats(a, sr) for _, a in ref])
        clf = NearestNeighbour().fit(x_ref, y)
        gen_items = list(generated.items())
        for i in range(len(names)):  # drums too
            if i not in tonal:
                gen_items.append(((i, 38), generate_note(preset, model, i, 38, 2.0, seed=seed, block=PLAY_BLOCK)))
        xg = np.stack([logmel_stats(a, sr) for _, a in gen_items])
        yg = np.asarray([k[0] for k, _ in gen_items])
        pred = clf.predict(xg)
        res["timbre"] = {"reference": "mulaw", "accuracy_generated": round(float(np.mean(pred == yg)), 4),
                         "accuracy_real_leave_one_out": round(clf.leave_one_out_accuracy(), 4), "n": int(len(yg)),
                         "confusion": confusion([names[i] for i in yg], [names[i] for i in pred]),
                         "by_half": half_accuracies(x_ref, y, xg, yg)}
        if clean_ref:
            clean = NearestNeighbour().fit(np.stack([logmel_stats(a, sr) for _, a in clean_ref]), y)
            res["timbre"]["accuracy_generated_clean_reference"] = round(float(np.mean(clean.predict(xg) == yg)), 4)
            robust = noise_robust_classifier(ref_notes, sr)
            res["timbre"] |= noise_robust_timbre(ref_notes, [n for n in data.notes if n.velocity != REF_VELOCITY],
                                                 xg, yg, names, sr, clf, robust)
            res["timbre"]["resynthesis"] = None if network_less else resynthesis_timbre(
                model, data, preset.model.engine, [k for k, _ in gen_items], preset.model.temperature, seed,
                {"generated": clf, "generated_noise_robust": robust})
            res["timbre"]["profile_excess_db"] = spectral_profile(dict(gen_items), data, names, sr)
        log(f"timbre: {res['timbre']}")

    # stability: 1.5 s held notes, 0.5 s gaps. Silence is judged at the network's own scale, as the real
    # notes are: -50 dBFS before the output stage's gain (the preset's gain and velocity level), which
    # is a volume setting, not the network; "_at_output" keeps the figures of the output as it leaves
    from realtime.control.controller import stage_gain_db

    stage_db = stage_gain_db(preset.sound, STAB_VELOCITY)
    stab_s = 10.0 if quick else 60.0
    per = {}
    silent_all, silent_real, noise_all, nan_total = [], [], [], 0
    out_all, out_real = [], []
    for i in range(len(names)):
        from realtime.offline.render import render_timeline

        s = note_session(preset, model, i, preset.model.seed)
        tl, gate = [], np.zeros(int(stab_s * sr), bool)
        n = int(0.1 * sr)
        real = np.ones(len(gate) // n, bool)  # windows where the real note sounds (unknown: assume it does)
        rng = np.random.default_rng(i)
        t = 0.0
        while t + 2.0 <= stab_s:
            p = int(rng.choice(grid)) if i in tonal else 38
            tl += [(int(t * sr), bytes([0x90, p, STAB_VELOCITY])), (int((t + 1.5) * sr), bytes([0x80, p, 0]))]
            gate[int((t + 0.05) * sr):int((t + 1.5) * sr)] = True
            ref = real_sounding(data, i, p, sr, 1.5, velocity=STAB_VELOCITY)
            if ref is not None:
                w0 = int(round(t * sr)) // n
                real[w0:w0 + len(ref)] = ref[: len(real) - w0]
            t += 2.0
        audio = render_timeline(s, tl, len(gate))
        nan_total += int(np.count_nonzero(~np.isfinite(audio))) + s.engine.nonfinite_count
        win_held = gate[: len(gate) // n * n].reshape(-1, n).all(axis=1)
        db, flat = window_db(audio, sr), window_flatness(audio, sr)
        silent = db[win_held] < SILENT_DB + stage_db
        at_output = db[win_held] < SILENT_DB
        noisy = (flat[win_held] > 0.4) & ~silent
        sounds = real[: len(win_held)][win_held]
        known = data is not None and sounds.any()  # without the real notes there is nothing to compare with
        out_all.append(at_output)
        if known:
            out_real.append(at_output[sounds])
        per[names[i]] = {"silent": round(float(silent.mean()), 4), "noise_like": round(float(noisy.mean()), 4),
                         "silent_where_real_sounds": round(float(silent[sounds].mean()), 4) if known else None,
                         "silent_where_real_sounds_at_output": round(float(at_output[sounds].mean()), 4) if known else None,
                         "real_silent": round(float(1.0 - sounds.mean()), 4) if data is not None else None,
                         "watchdog_recoveries": s.watchdog.total if s.watchdog is not None else 0}
        silent_all.append(silent)
        if known:
            silent_real.append(silent[sounds])
        if i in tonal:
            noise_all.append(noisy)
    res["stability"] = {
        "seconds_per_instrument": stab_s,
        "stage_gain_db": round(stage_db, 2),
        "silent_fraction": round(float(np.concatenate(silent_all).mean()), 4),
        # the same, counting only windows where the real instrument still sounds (a snare or a plucked
        # string decays to silence within a 1.5 s held note; there silence is right, not a collapse)
        "silent_where_real_sounds": (round(float(np.concatenate(silent_real).mean()), 4)
                                     if sum(map(len, silent_real)) else None),
        "silent_fraction_at_output": round(float(np.concatenate(out_all).mean()), 4),
        "silent_where_real_sounds_at_output": (round(float(np.concatenate(out_real).mean()), 4)
                                               if sum(map(len, out_real)) else None),
        "noise_like_fraction_tonal": round(float(np.concatenate(noise_all).mean()), 4) if noise_all else None,
        "nan_count": nan_total, "per_instrument": per}
    log(f"stability: {res['stability']}")
    if png:
        write_sheet(png, model, data, generated, names, sr)
        res["png"] = png
    nll, res["teacher_forced_spread_db"] = (None, None) if network_less else teacher_forced_figures(
        model, data, preset.model.engine, preset.model.temperature)
    res["teacher_forced_nll"] = round(nll, 5) if nll is not None else None
    log(f"teacher-forced NLL of real notes: {res['teacher_forced_nll']} nats/sample")
    log(f"teacher-forced sampling spread below the real notes (dB, at {preset.model.temperature}): "
        f"{res['teacher_forced_spread_db']}")
    res["seconds"] = round(time.time() - t0, 1)
    return res


def write_sheet(path: str, model, data, generated, names, sr: int) -> None:
    """Spectrograms of real (left) and generated (right) notes at MIDI 60 for up to four instruments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in generated if k[1] == 60][:4] or list(generated)[:4]
    fig, axes = plt.subplots(len(keys), 2, figsize=(10, 2.4 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        real = None
        if data is not None:
            cands = [n for n in data.notes if n.instrument_id == key[0] and n.pitch == key[1]]
            real = min(cands, key=lambda n: abs(n.velocity - 90)).audio[: 2 * sr] if cands else None
        for col, (title, a) in enumerate((("real", real), ("generated", generated[key]))):
            ax = axes[row][col]
            if a is not None:
                ax.specgram(a + 1e-9, NFFT=512, Fs=sr, noverlap=384, cmap="magma", vmin=-120)
            ax.set_title(f"{names[key[0]]} MIDI {key[1]}: {title}", fontsize=9)
            ax.set_ylim(0, 4000)
    fig.tight_layout()
    fig.savefig(path, dpi=55)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(Path(__file__).resolve().parent / "default" / "model.npz"))
    ap.add_argument("--data", default=None,
                    help=f"dataset with the real notes (default: {DEFAULT_DATA} when it exists; without one, no "
                         "timbre reference from real notes, no NLL, no silent-where-real-sounds)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="3 pitches, 10 s stability")
    ap.add_argument("--png", default=None, help="spectrogram sheet (default: next to the model)")
    ap.add_argument("--engine", choices=ENGINES, help="engine to generate with (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed of the generated notes (the figures' noise)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="sampling temperature of the generated notes, >= 0, 0 = argmax (default: the preset's)")
    ap.add_argument("--period-noise", type=float, default=None, metavar="RHO",
                    help="sampler noise correlated one f0 period back, 0-0.95, 0 = independent (default: the preset's)")
    ap.add_argument("--loop-lowpass", type=float, default=None, metavar="A",
                    help="low-pass inside the feedback loop for pitched instruments, 0-0.5, 0 = off "
                         "(default: the preset's; realtime/kernel/loop_lowpass.py)")
    ap.add_argument("--prob-floor", type=float, default=None, metavar="P",
                    help="LPCNet's probability floor: each class's probability lowered by P before the draw, 0-0.01, "
                         "0 = off (default: the preset's)")
    ap.add_argument("--log", default=None,
                    help="append a JSON line (training steps/hours + figures) to this file: the quality curve")
    a = ap.parse_args(argv)
    from models.dataset import DatasetError
    from realtime.model.model_file import ModelFileError

    data = a.data if a.data is not None else DEFAULT_DATA if Path(DEFAULT_DATA, "dataset.json").is_file() else None

    png = a.png or str(Path(a.model).with_name("eval_spectrograms.png"))
    try:
        res = evaluate(a.model, data, a.quick, png, log=(lambda *x: None) if a.json else print, engine=a.engine,
                       seed=a.seed, temperature=a.temperature, period_noise=a.period_noise,
                       loop_lowpass=a.loop_lowpass, prob_floor=a.prob_floor)
    except (ModelFileError, DatasetError, ValueError, OSError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))
    if a.log:
        from realtime.model.model_file import load_model

        tr = load_model(a.model).metadata.get("training", {})
        figures = without_notes(res)  # the curve keeps the figures; the per-note lists stay in the result
        with open(a.log, "a") as fh:
            fh.write(json.dumps({"steps": tr.get("steps"), "hours": tr.get("hours"),
                                 "core_hours": tr.get("core_hours", tr.get("hours")), "quick": a.quick,
                                 **figures}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
